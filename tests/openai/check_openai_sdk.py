#!/usr/bin/env python3
"""The official `openai` Python client against `troupe serve` on the embedded model.

check_openai_sdk.py TROUPE EXPECTED_TEXT

Starts `troupe serve --port 0` (127.0.0.1, a free port; the server prints its base URL once it
listens), then through the SDK: lists the models, asks for a greedy completion (whose text must
equal EXPECTED_TEXT, the committed `troupe generate` output that matches llama.cpp), streams the
same request (same text, usage chunk with all but two prompt tokens from the prefix cache, finish
reason), sends requests with tools (a named
tool_choice must yield a get_weather call with a city, plain and streamed by index), checks that
bad requests raise the SDK's NotFoundError / BadRequestError with OpenAI's error fields, and runs
a `troupe run` fan-out with backend = "openai" against the same server. Exits 77
(skipped) when the model or the `openai` package is not installed.
"""
import os
import select
import json
import signal
import subprocess
import sys
import tempfile
import time

MODEL_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
PROMPT = "What is the capital of France?"
SECRET = "sk-troupe-test-do-not-log-3141592653"


def skip(why):
    print(f"skipped: {why}")
    sys.exit(77)


def fail(why):
    print(f"FAILED: {why}")
    sys.exit(1)


def check(cond, what):
    if not cond:
        fail(what)
    print(f"ok: {what}")


def read_base_url(proc, limit_s=120):
    """The first stdout line of `troupe serve`, waiting at most limit_s (the model loads first)."""
    deadline = time.monotonic() + limit_s
    line = b""
    while not line.endswith(b"\n"):
        left = deadline - time.monotonic()
        if left <= 0 or proc.poll() is not None:
            err = proc.stderr.read().decode(errors="replace") if proc.poll() is not None else ""
            fail(f"troupe serve did not print its URL within {limit_s} s: {err}")
        ready, _, _ = select.select([proc.stdout], [], [], left)
        if ready:
            byte = os.read(proc.stdout.fileno(), 1)
            if not byte:
                continue
            line += byte
    return line.decode().strip()


def main():
    if len(sys.argv) != 3:
        print(__doc__)
        sys.exit(2)
    troupe, expected_file = sys.argv[1], sys.argv[2]
    model_dir = os.environ.get("TROUPE_MODEL_DIR", os.path.expanduser("~/.cache/troupe/models"))
    if not os.path.isfile(os.path.join(model_dir, MODEL_FILE)):
        skip(f"{os.path.join(model_dir, MODEL_FILE)} is not installed (scripts/install-deps installs it)")
    try:
        import openai
    except ImportError:
        skip("the Python package 'openai' is not installed (scripts/install-deps installs it)")
    with open(expected_file, encoding="utf-8") as f:
        expected = f.read().rstrip("\n")

    proc = subprocess.Popen([troupe, "serve", "--port", "0", "-m", "smollm2", "--max-tokens", "32"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        base_url = read_base_url(proc)
        check(base_url.startswith("http://127.0.0.1:") and base_url.endswith("/v1"),
              f"troupe serve listens on loopback: {base_url}")
        client = openai.OpenAI(base_url=base_url, api_key="not-needed", max_retries=0, timeout=120)

        ids = [m.id for m in client.models.list()]
        check(ids == ["smollm2"], f"models.list() lists the served model: {ids}")
        check(client.models.retrieve("smollm2").owned_by == "troupe", "models.retrieve()")

        messages = [{"role": "user", "content": PROMPT}]
        plain = client.chat.completions.create(model="smollm2", messages=messages, max_tokens=16,
                                               temperature=0)
        choice = plain.choices[0]
        check(plain.object == "chat.completion" and plain.id.startswith("chatcmpl-"),
              "a chat.completion with an id")
        check(choice.message.role == "assistant", "the message is the assistant's")
        check(choice.message.content == expected,
              f"greedy text equals troupe generate's (and llama.cpp's): {choice.message.content!r}")
        check(choice.finish_reason == "length", f"finish_reason length: {choice.finish_reason}")
        u = plain.usage
        check(u.completion_tokens == 16 and u.prompt_tokens > 0 and
              u.total_tokens == u.prompt_tokens + u.completion_tokens, f"usage adds up: {u}")
        check(u.prompt_tokens_details is not None and u.prompt_tokens_details.cached_tokens == 0,
              f"nothing came from the prefix cache yet: {u.prompt_tokens_details}")

        stream = client.chat.completions.create(model="smollm2", messages=messages, max_tokens=16,
                                                temperature=0, stream=True,
                                                stream_options={"include_usage": True})
        pieces, finish, usage, chunk_ids, roles = [], None, None, set(), []
        for chunk in stream:
            chunk_ids.add(chunk.id)
            if chunk.usage is not None:
                usage = chunk.usage
            for c in chunk.choices:
                if c.delta.role:
                    roles.append(c.delta.role)
                if c.delta.content:
                    pieces.append(c.delta.content)
                if c.finish_reason:
                    finish = c.finish_reason
        check("".join(pieces) == expected, f"the streamed text is the same: {''.join(pieces)!r}")
        check(len(pieces) > 1, f"it came in {len(pieces)} pieces")
        check(roles == ["assistant"], f"the first chunk carries the role: {roles}")
        check(finish == "length", "the stream ends with finish_reason length")
        check(usage is not None and usage.completion_tokens == 16 and
              usage.prompt_tokens == u.prompt_tokens, f"the usage chunk: {usage}")
        check(usage.prompt_tokens_details is not None and
              usage.prompt_tokens_details.cached_tokens == u.prompt_tokens - 2,
              f"the same prompt again came from the prefix cache but its last two tokens: {usage}")
        check(len(chunk_ids) == 1, "every chunk has the same id")

        # Stop strings: the answer ends before the earliest one, streamed or not, with no part of
        # it shown; the penalties reach the sampler (greedy text changes, OpenAI's ranges hold).
        before = expected.split("Marseillaise")[0]
        check(before != expected, f"the expected text holds the stop string: {expected!r}")
        stopped = client.chat.completions.create(model="smollm2", messages=messages, max_tokens=16,
                                                 temperature=0, stop=["femme", "Marseillaise"])
        check(stopped.choices[0].message.content == before and
              stopped.choices[0].finish_reason == "stop",
              f"stop ends the answer before 'Marseillaise': {stopped.choices[0].message.content!r}"
              f", {stopped.choices[0].finish_reason}")
        pieces = []
        for chunk in client.chat.completions.create(model="smollm2", messages=messages,
                                                    max_tokens=16, temperature=0,
                                                    stop="Marseillaise", stream=True):
            for c in chunk.choices:
                if c.delta.content:
                    pieces.append(c.delta.content)
                if c.finish_reason:
                    finish = c.finish_reason
        check("".join(pieces) == before and finish == "stop",
              f"streamed with stop: {''.join(pieces)!r}, {finish}")
        penalised = client.chat.completions.create(model="smollm2", messages=messages,
                                                   max_tokens=16, temperature=0,
                                                   presence_penalty=1.2)
        check(penalised.choices[0].message.content != expected,
              f"presence_penalty changes the greedy text: {penalised.choices[0].message.content!r}")
        # Log-probabilities: one per generated token, whose bytes make up the text; greedy tokens
        # are their step's most likely.
        lp = client.chat.completions.create(model="smollm2", messages=messages, max_tokens=16,
                                            temperature=0, logprobs=True, top_logprobs=3)
        content = lp.choices[0].logprobs.content
        check(len(content) == lp.usage.completion_tokens and
              b"".join(bytes(t.bytes) for t in content).decode("utf-8") ==
              lp.choices[0].message.content,
              f"logprobs: one per token, their bytes are the text: {len(content)} tokens")
        check(all(len(t.top_logprobs) == 3 and t.top_logprobs[0].token == t.token and
                  t.top_logprobs[0].logprob == t.logprob <= 0 for t in content),
              "each greedy token is its step's most likely, with three alternatives")
        check(lp.choices[0].message.content == expected, "asking for logprobs changes no token")
        try:
            client.chat.completions.create(model="smollm2", messages=messages, frequency_penalty=3)
            fail("frequency_penalty 3 was accepted")
        except openai.BadRequestError as e:
            check("frequency_penalty" in str(e), f"frequency_penalty out of range: {e}")

        tools = [{"type": "function", "function": {
            "name": "get_weather", "description": "Current weather of a city.",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                           "required": ["city"]}}}]
        with_tools = client.chat.completions.create(
            model="smollm2", max_tokens=24, temperature=0, tools=tools, tool_choice="auto",
            messages=[{"role": "user", "content": "What is the weather in Paris?"}])
        tc = with_tools.choices[0]
        check(tc.finish_reason in ("stop", "length", "tool_calls"),
              f"a request with tools is answered: finish_reason {tc.finish_reason}")
        for call in tc.message.tool_calls or []:
            check(call.type == "function" and call.function.name and call.id,
                  f"a well-formed tool call: {call}")
        check(bool(tc.message.content) or bool(tc.message.tool_calls), "it says something")

        # A named tool_choice: the engine must call that tool with arguments that fit its schema,
        # in one piece and (streamed) assembled by index.
        forced = {"type": "function", "function": {"name": "get_weather"}}
        weather = [{"role": "user", "content": "What is the weather in Paris?"}]
        named = client.chat.completions.create(model="smollm2", max_tokens=48, temperature=0,
                                               tools=tools, tool_choice=forced, messages=weather)
        nc = named.choices[0]
        calls = nc.message.tool_calls or []
        check(nc.finish_reason == "tool_calls" and len(calls) >= 1,
              f"tool_choice get_weather gives tool calls: {nc.finish_reason}, {calls}")
        args = json.loads(calls[0].function.arguments)
        check(calls[0].function.name == "get_weather" and isinstance(args.get("city"), str),
              f"get_weather is called with a city: {calls[0].function.arguments}")
        streamed = client.chat.completions.create(model="smollm2", max_tokens=48, temperature=0,
                                                  tools=tools, tool_choice=forced, messages=weather,
                                                  stream=True)
        parts, sfinish = {}, None
        for chunk in streamed:
            for c in chunk.choices:
                sfinish = c.finish_reason or sfinish
                for d in c.delta.tool_calls or []:
                    slot = parts.setdefault(d.index, {"name": "", "args": ""})
                    if d.function and d.function.name:
                        slot["name"] += d.function.name
                    if d.function and d.function.arguments:
                        slot["args"] += d.function.arguments
        check(sfinish == "tool_calls" and parts.get(0, {}).get("name") == "get_weather" and
              json.loads(parts[0]["args"]) == args,
              f"the streamed call assembled by index is the same: {parts}")

        try:
            client.chat.completions.create(model="gpt-4o", messages=messages)
            fail("an unknown model was accepted")
        except openai.NotFoundError as e:
            check(e.status_code == 404 and e.code == "model_not_found" and e.param == "model",
                  f"an unknown model raises NotFoundError: {e.message}")
        try:
            client.chat.completions.create(model="smollm2", messages=messages, temperature=9)
            fail("temperature 9 was accepted")
        except openai.BadRequestError as e:
            check(e.status_code == 400 and e.param == "temperature",
                  f"temperature 9 raises BadRequestError on param temperature: {e.message}")
        try:
            client.chat.completions.create(model="smollm2", messages=[])
            fail("an empty messages array was accepted")
        except openai.BadRequestError as e:
            check(e.param == "messages", "empty messages raise BadRequestError on messages")

        # `troupe run` with backend = "openai" against the same server: a fan-out whose answers
        # come over HTTP; the API key (from the variable the file names) appears in no output.
        with tempfile.TemporaryDirectory() as tmp:
            def run_task(model, items):
                task = os.path.join(tmp, "task.toml")
                with open(task, "w", encoding="utf-8") as f:
                    f.write(f"""[task]
prompt_template = "In one short sentence, what is {{{{item}}}}?"
items = {json.dumps(items)}
[worker]
system_prompt = "You are a concise assistant."
[model]
backend = "openai"
base_url = "{base_url}"
model = "{model}"
api_key_env = "TROUPE_TEST_KEY"
max_retries = 0
timeout_s = 120
""")
                env = dict(os.environ, TROUPE_TEST_KEY=SECRET)
                return subprocess.run([troupe, "run", task], env=env, capture_output=True,
                                      text=True, timeout=240)
            run = run_task("smollm2", ["a lighthouse", "a violin"])
            check(run.returncode == 0, f"troupe run on backend = openai exits 0: {run.stderr[-500:]}")
            results = json.loads(run.stdout)
            check([r["outcome"] for r in results] == ["completed", "completed"] and
                  all(r["result"] for r in results), f"both sub-agents answered over HTTP: {results}")
            check(SECRET not in run.stdout + run.stderr, "the API key appears in no output")
            bad = run_task("no-such-model", ["x"])
            out = bad.stdout + bad.stderr
            check("does not exist here" in out and "404" in out and SECRET not in out,
                  f"a wrong model name is reported with the server's 404: {out.strip()[-300:]}")
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                rc = proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                fail("troupe serve did not stop within 60 s of SIGTERM")
        else:
            rc = proc.returncode
        err = proc.stderr.read().decode(errors="replace")
    check(rc == 0, f"troupe serve stopped cleanly on SIGTERM (exit {rc}); stderr: {err.strip()}")
    print("openai SDK against troupe serve: all checks passed")


if __name__ == "__main__":
    main()
