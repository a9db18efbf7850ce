#!/usr/bin/env bash
# check_wide_search.sh WIDE_SEARCH: runs the sample on six packages with the embedded model and
# checks its report: a table row per package, the accuracy line with an F1 in [0, 1], and the
# comparison with the single-agent run, and the trace of both runs. Exits 77 (skipped) when the model is not installed.
set -uo pipefail
model="${TROUPE_MODEL_DIR:-$HOME/.cache/troupe/models}/SmolLM2-135M-Instruct.Q4_1.gguf"
if [[ ! -f $model ]]; then
  echo "skipped: $model is not installed (scripts/install-deps installs it)"
  exit 77
fi
trace=$(mktemp --suffix=.json)
trap 'rm -f "$trace"' EXIT
out=$("$1" --count 6 --trace "$trace" 2>&1)
rc=$?
printf '%s\n' "$out"
[[ $rc -eq 0 ]] || { echo "wide_search exited with $rc"; exit 1; }
rows=$(grep -cE '^(libcaf-dev|cmake|ninja-build|ccache|libsimdjson-dev|libfmt-dev) ' <<<"$out")
[[ $rows -eq 6 ]] || { echo "expected 6 table rows, got $rows"; exit 1; }
grep -qE '^accuracy: precision [01]\.[0-9]+, recall [01]\.[0-9]+, F1 [01]\.[0-9]+' <<<"$out" ||
  { echo "no accuracy line"; exit 1; }
grep -qE '^swarm vs single agent: [0-9.]+x faster' <<<"$out" || { echo "no comparison line"; exit 1; }
# The trace: valid Chrome trace JSON with a track (thread) per agent and per tool call.
python3 - "$trace" <<'PY' || exit 1
import json, sys
events = json.load(open(sys.argv[1]))["traceEvents"]
names = {e["args"]["name"] for e in events if e.get("ph") == "M" and e.get("name") == "thread_name"}
agents = [e for e in events if e.get("ph") == "X" and e["name"].startswith("invoke_agent")]
tools = [e for e in events if e.get("ph") == "X" and e["name"].startswith("execute_tool")]
# 6 finders + the desk; 2 tool calls per package in each run.
assert len(agents) >= 7, f"{len(agents)} agent spans"
assert len(tools) >= 24, f"{len(tools)} tool spans"
assert len(names) >= 7, f"{len(names)} named tracks"
print(f"trace: {len(events)} events, {len(agents)} agent spans, {len(tools)} tool spans, {len(names)} tracks")
PY
echo "wide_search: report complete"
