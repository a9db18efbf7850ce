#!/usr/bin/env bash
# check_generate.sh TROUPE EXPECTED
# `troupe generate` end to end with the embedded model: greedy output equals the committed text
# (the forward pass is bit-exact with llama.cpp, see test_llama_forward), and a file that is not a
# GGUF model is refused with a clear message; --stop ends the output before a stop string.
# Exits 77 (skipped) when the model is not installed.
set -uo pipefail
troupe=$1 expected=$2
model="${TROUPE_MODEL_DIR:-$HOME/.cache/troupe/models}/SmolLM2-135M-Instruct.Q4_1.gguf"
if [[ ! -f $model ]]; then
  echo "skipped: $model is not installed (scripts/install-deps installs it)"
  exit 77
fi
out=$("$troupe" generate -n 16 "What is the capital of France?" 2>/dev/null)
rc=$?
if [[ $rc -ne 0 || "$out" != "$(cat "$expected")" ]]; then
  printf 'troupe generate: exit %s\n--- got:\n%s\n--- expected:\n%s\n' "$rc" "$out" "$(cat "$expected")"
  exit 1
fi
# Stop strings: the earliest one found ends the output, which holds no part of it.
want="$(cat "$expected")"
want="${want%%Marseillaise*}"
out=$("$troupe" generate -n 16 --stop femme --stop Marseillaise "What is the capital of France?" 2>/dev/null)
rc=$?
if [[ $rc -ne 0 || "$out" != "$want" ]]; then
  printf 'troupe generate --stop: exit %s\n--- got:\n%s\n--- expected:\n%s\n' "$rc" "$out" "$want"
  exit 1
fi
err=$("$troupe" generate -m "$expected" x 2>&1 >/dev/null)
rc=$?
if [[ $rc -ne 2 || $err != *"not a GGUF file"* ]]; then
  printf 'a non-GGUF model file: exit %s, stderr: %s\n' "$rc" "$err"
  exit 1
fi
echo "troupe generate: output matches $expected"
