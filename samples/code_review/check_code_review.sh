#!/usr/bin/env bash
# check_code_review.sh CODE_REVIEW: reviews samples/code_review/project with the embedded model and
# checks the merged report: all four files, report.py (which has a syntax error) first and flagged
# by the sandboxed compile check, the others compiling, and the closing count.
# Exits 77 (skipped) when the model is not installed.
set -uo pipefail
model="${TROUPE_MODEL_DIR:-$HOME/.cache/troupe/models}/SmolLM2-135M-Instruct.Q4_1.gguf"
if [[ ! -f $model ]]; then
  echo "skipped: $model is not installed (scripts/install-deps installs it)"
  exit 77
fi
out=$("$1" 2>&1)
rc=$?
printf '%s\n' "$out"
[[ $rc -eq 0 ]] || { echo "code_review exited with $rc"; exit 1; }
files=$(grep '^== ' <<<"$out" | tr '\n' ' ')
[[ $files == "== report.py == checkout.py == inventory.py == prices.py " ]] ||
  { echo "unexpected files or order: $files"; exit 1; }
grep -q '^   compiles: NO, SyntaxError at line 7' <<<"$out" || { echo "report.py not flagged"; exit 1; }
[[ $(grep -c '^   compiles: yes' <<<"$out") -eq 3 ]] || { echo "expected 3 compiling files"; exit 1; }
[[ $(grep -c '^   summary: .' <<<"$out") -eq 4 ]] || { echo "expected 4 summaries"; exit 1; }
grep -q '^4 files reviewed, 1 do not compile$' <<<"$out" || { echo "no closing count"; exit 1; }
echo "code_review: report complete"
