#!/usr/bin/env bash
# check_chat.sh TROUPE EXPECTED
# `troupe chat` end to end through the engine actor: each answer equals `troupe generate`'s greedy
# text for the same message (EXPECTED), /reset forgets the conversation (the same question gives
# the same answer again), --stop ends an answer before its stop string, and a missing model file
# is refused with exit status 2.
# Exits 77 (skipped) when the model is not installed.
set -uo pipefail
troupe=$1 expected=$2
model="${TROUPE_MODEL_DIR:-$HOME/.cache/troupe/models}/SmolLM2-135M-Instruct.Q4_1.gguf"
if [[ ! -f $model ]]; then
  echo "skipped: $model is not installed (scripts/install-deps installs it)"
  exit 77
fi
q="What is the capital of France?"
out=$(printf '%s\n/reset\n%s\n' "$q" "$q" | "$troupe" chat -n 16 2>&1)
rc=$?
want=$(printf '%s\n(conversation forgotten)\n%s' "$(cat "$expected")" "$(cat "$expected")")
if [[ $rc -ne 0 || "$out" != "$want" ]]; then
  printf 'troupe chat: exit %s\n--- got:\n%s\n--- expected:\n%s\n' "$rc" "$out" "$want"
  exit 1
fi
# --stop: the answer ends before the stop string, in the engine as in `troupe generate`.
out=$(printf '%s\n' "$q" | "$troupe" chat -n 16 --stop Marseillaise 2>&1)
rc=$?
want="$(cat "$expected")"
want="${want%%Marseillaise*}"
if [[ $rc -ne 0 || "$out" != "$want" ]]; then
  printf 'troupe chat --stop: exit %s\n--- got:\n%s\n--- expected:\n%s\n' "$rc" "$out" "$want"
  exit 1
fi
err=$(echo hi | "$troupe" chat -m /nonexistent/model.gguf 2>&1 >/dev/null)
rc=$?
if [[ $rc -ne 2 || $err != *"/nonexistent/model.gguf does not exist"* ]]; then
  printf 'a missing model file: exit %s, stderr: %s\n' "$rc" "$err"
  exit 1
fi
echo "troupe chat: answers match $expected"
