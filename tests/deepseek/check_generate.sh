#!/usr/bin/env bash
# check_generate.sh TROUPE FIXTURE_DIR
# `troupe generate` end to end on a Kimi-format checkpoint directory (tests/fixtures/deepseek/kimi_chat:
# tiny INT4 model + tiktoken tokenizer): the prompt goes through Kimi's chat template and tiktoken,
# the routed experts run on expert-shard actors, and the greedy bytes printed must equal what HF
# transformers + tiktoken + the real Jinja template produced (generate_expected.bin). Also: with the
# experts on the kernel threads instead, and a directory without a tokenizer is refused clearly.
set -uo pipefail
troupe=$1 dir=$2
prompt=$(cat "$dir/generate_prompt.txt")
for shards in 2 0; do
  "$troupe" generate -m "$dir" -n 16 --expert-shards "$shards" "$prompt" > /tmp/troupe_ds_generate.$$ 2>/tmp/troupe_ds_generate_err.$$
  rc=$?
  if [[ $rc -ne 0 ]] || ! cmp -s /tmp/troupe_ds_generate.$$ "$dir/generate_expected.bin"; then
    echo "troupe generate --expert-shards $shards: exit $rc"
    echo "--- got:"; od -c /tmp/troupe_ds_generate.$$ | head -20
    echo "--- expected:"; od -c "$dir/generate_expected.bin" | head -20
    cat /tmp/troupe_ds_generate_err.$$
    rm -f /tmp/troupe_ds_generate.$$ /tmp/troupe_ds_generate_err.$$
    exit 1
  fi
done
rm -f /tmp/troupe_ds_generate.$$ /tmp/troupe_ds_generate_err.$$
tmp=$(mktemp -d)
cp "$dir/config.json" "$dir/model.safetensors" "$tmp/"
err=$("$troupe" generate -m "$tmp" x 2>&1 >/dev/null)
rc=$?
rm -rf "$tmp"
if [[ $rc -ne 2 || $err != *"tiktoken.model"* ]]; then
  printf 'a checkpoint without tokenizer: exit %s, stderr: %s\n' "$rc" "$err"
  exit 1
fi
echo "troupe generate: Kimi-format checkpoint output matches $dir/generate_expected.bin"
