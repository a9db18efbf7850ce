#!/usr/bin/env python3
"""The live view of `troupe run`, seen the way a person sees it.

Runs `troupe run TASK` under a pseudo-terminal, replays what it wrote on a small screen model
(cursor up, erase line, erase below; colours ignored) and checks the final screen: one table
redrawn in place (not a scroll of copies), a row per agent in its final state, the totals, and the
result after it. Also checks that the table was live (states other than the final ones appeared),
that NO_COLOR removes colour but not the redraws, that --quiet shows nothing, and that without a
terminal the progress is plain lines with no escape sequences.

Usage: live_view_pty.py TROUPE_BINARY TASK_FILE   (e.g. samples/hello_swarm/task.toml)
Exit status 0 when every check passes; each failure is printed.
"""

import fcntl
import os
import pty
import re
import struct
import subprocess
import sys
import termios
import time

COLUMNS, ROWS = 100, 50
TIMEOUT_S = 120
CSI = re.compile(rb"\x1b\[([0-9;?]*)([@-~])")

failures = []


def check(ok, what):
    if not ok:
        failures.append(what)
        print(f"FAIL: {what}", file=sys.stderr)


def env_with(**changes):
    env = dict(os.environ)
    for key, value in changes.items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = value
    return env


def run_in_pty(argv, env):
    """Runs argv with stdin/stdout/stderr on a pseudo-terminal; returns (exit code, bytes)."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", ROWS, COLUMNS, 0, 0))
    proc = subprocess.Popen(argv, stdin=slave, stdout=slave, stderr=slave, env=env,
                            close_fds=True)
    os.close(slave)
    out = bytearray()
    deadline = time.monotonic() + TIMEOUT_S
    while True:
        if time.monotonic() > deadline:
            proc.kill()
            check(False, f"{argv} did not finish in {TIMEOUT_S} s")
            break
        try:
            chunk = os.read(master, 65536)
        except OSError:  # EIO: every writer closed the terminal.
            break
        if not chunk:
            break
        out += chunk
    os.close(master)
    return proc.wait(), bytes(out)


def screen(data):
    """The final screen after replaying `data`: a list of text lines."""
    lines = [[]]
    row = col = 0
    i = 0
    while i < len(data):
        m = CSI.match(data, i)
        if m:
            arg, op = m.group(1).decode(), m.group(2)
            n = int(arg) if arg.isdigit() else 1
            if op == b"A":
                row = max(0, row - n)
            elif op == b"K":
                lines[row] = [] if arg == "2" else lines[row][:col]
            elif op == b"J":
                lines[row] = lines[row][:col]
                del lines[row + 1:]
            i = m.end()
            continue
        ch = data[i:i + 1]
        if ch == b"\r":
            col = 0
        elif ch == b"\n":
            row += 1
            if row == len(lines):
                lines.append([])
        else:
            # Keep UTF-8 sequences whole: one column per code point.
            j = i + 1
            while j < len(data) and (data[j] & 0xC0) == 0x80:
                j += 1
            cell = data[i:j]
            i = j - 1
            line = lines[row]
            while len(line) < col:
                line.append(b" ")
            if col < len(line):
                line[col] = cell
            else:
                line.append(cell)
            col += 1
        i += 1
    return [b"".join(line).decode("utf-8", "replace").rstrip() for line in lines]


def plain(data):
    return CSI.sub(b"", data).decode("utf-8", "replace")


def main():
    if len(sys.argv) != 3:
        print(__doc__, file=sys.stderr)
        return 2
    troupe, task = sys.argv[1], sys.argv[2]

    # 1. A terminal: the live table, redrawn in place, then the result.
    code, raw = run_in_pty([troupe, "run", task], env_with(TERM="xterm-256color", NO_COLOR=None))
    check(code == 0, f"troupe run on a terminal exited with {code}")
    text = plain(raw)
    final = screen(raw)
    shown = "\n".join(final)
    check(re.search(rb"\x1b\[\d+A", raw) is not None, "no cursor movement: the table was not redrawn")
    check(re.search(rb"\x1b\[[0-9;]*m", raw) is not None, "no colour on a terminal without NO_COLOR")
    check(sum("AGENT" in line and "STATE" in line for line in final) == 1,
          "the final screen does not show exactly one table header:\n" + shown)
    for name in ("orchestrator#", "checker#", "worker#"):
        check(any(line.startswith(name) and " done " in line for line in final),
              f"no '{name}' row in state 'done' on the final screen:\n" + shown)
    check(sum(line.startswith("worker#") for line in final) == 3,
          "the final screen does not show three worker rows:\n" + shown)
    # 10 calls: 7 routed to tools (the run report's budgeted count) + 3 orchestration calls.
    check(any(re.search(r"0 live agents, 5 done \| 0 tool calls in flight, 10 done \| 838 tokens, "
                        r"\d+ tok/s \| \d+\.\d+s", line) for line in final),
          "no totals line for the finished run on the final screen:\n" + shown)
    check(any(w in text for w in (" thinking ", " tools ", " waiting ")),
          "no live state (thinking/tools/waiting) was ever shown")
    check("All greeted." in shown, "the result is not on the final screen:\n" + shown)
    header = next((k for k, line in enumerate(final) if "AGENT" in line), len(final))
    result = next((k for k, line in enumerate(final) if "All greeted." in line), -1)
    check(result > header, "the result is not below the final table:\n" + shown)
    check(re.search(r"\[\s*\d+\.\d+s\] orchestrator#\d+ started", text) is None,
          "plain progress lines were printed on a terminal")

    # 2. NO_COLOR: the same table, without colour.
    code, raw = run_in_pty([troupe, "run", task], env_with(TERM="xterm-256color", NO_COLOR="1"))
    check(code == 0, f"troupe run with NO_COLOR exited with {code}")
    check(re.search(rb"\x1b\[[0-9;]*m", raw) is None, "colour despite NO_COLOR")
    check(re.search(rb"\x1b\[\d+A", raw) is not None, "no redraws with NO_COLOR")
    check("AGENT" in plain(raw), "no table with NO_COLOR")

    # 3. --quiet on a terminal: the result only.
    code, raw = run_in_pty([troupe, "run", "--quiet", task], env_with(TERM="xterm-256color"))
    check(code == 0, f"troupe run --quiet exited with {code}")
    check(b"\x1b[" not in raw and b"AGENT" not in raw, "--quiet still drew something")
    check(b"All greeted." in raw, "--quiet lost the result")

    # 4. No terminal: plain progress lines on stderr, the result on stdout, no escapes anywhere.
    proc = subprocess.run([troupe, "run", task], capture_output=True, timeout=TIMEOUT_S,
                          stdin=subprocess.DEVNULL, env=env_with(TERM="xterm-256color"))
    check(proc.returncode == 0, f"troupe run without a terminal exited with {proc.returncode}")
    err = proc.stderr.decode("utf-8", "replace")
    check(b"\x1b" not in proc.stderr and b"\x1b" not in proc.stdout,
          "escape sequences without a terminal")
    check(re.search(r"^\[\s*\d+\.\d+s\] orchestrator#\d+ started$", err, re.M) is not None,
          "no plain 'orchestrator#N started' line without a terminal:\n" + err)
    check(len(re.findall(r"^\[\s*\d+\.\d+s\] worker#\d+ completed after", err, re.M)) == 3,
          "not three plain 'worker#N completed' lines without a terminal:\n" + err)
    check("AGENT" not in err, "the live table was drawn without a terminal")
    check(proc.stdout.decode().startswith("All greeted."), "the result is not on stdout")

    print(f"live_view_pty: {'FAILED' if failures else 'ok'} ({len(failures)} failures)")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
