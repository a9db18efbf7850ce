#!/usr/bin/env bash
# check_wide_search.sh WIDE_SEARCH: runs the sample on six packages with the embedded model and
# checks its report: a table row per package, the accuracy line with an F1 in [0, 1], and the
# comparison with the single-agent run. Exits 77 (skipped) when the model is not installed.
set -uo pipefail
model="${TROUPE_MODEL_DIR:-$HOME/.cache/troupe/models}/SmolLM2-135M-Instruct.Q4_1.gguf"
if [[ ! -f $model ]]; then
  echo "skipped: $model is not installed (scripts/install-deps installs it)"
  exit 77
fi
out=$("$1" --count 6 2>&1)
rc=$?
printf '%s\n' "$out"
[[ $rc -eq 0 ]] || { echo "wide_search exited with $rc"; exit 1; }
rows=$(grep -cE '^(libcaf-dev|cmake|ninja-build|ccache|libsimdjson-dev|libfmt-dev) ' <<<"$out")
[[ $rows -eq 6 ]] || { echo "expected 6 table rows, got $rows"; exit 1; }
grep -qE '^accuracy: precision [01]\.[0-9]+, recall [01]\.[0-9]+, F1 [01]\.[0-9]+' <<<"$out" ||
  { echo "no accuracy line"; exit 1; }
grep -qE '^swarm vs single agent: [0-9.]+x faster' <<<"$out" || { echo "no comparison line"; exit 1; }
echo "wide_search: report complete"
