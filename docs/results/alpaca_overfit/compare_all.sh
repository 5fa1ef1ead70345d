#!/usr/bin/env bash
# `symnoise compare` for every pair of the four main methods of the alpaca_overfit grid
# (3 seeds each, paired by seed, bootstrap over examples/prompts stratified by seed), text
# and JSON into compare/, then the table of differences and smallest detectable effects.
#   bash docs/results/alpaca_overfit/compare_all.sh          # from the repository root
set -eu
ROOT=${ROOT:-/work/runs/alpaca_overfit}
HERE=$(dirname "$0")
SYMNOISE=${SYMNOISE:-symnoise}
declare -A SIDE=(
  [none]="$ROOT/smollm2-alpaca80-none-s*"
  [neftune]="$ROOT/smollm2-alpaca80-uniform-a5-s*"
  [symnoise]="$ROOT/smollm2-alpaca80-symnoise-a5-s[0-9]"
  [symnoise_nm0]="$ROOT/smollm2-alpaca80-symnoise-a5-nm0-s*"
)
ORDER=(none neftune symnoise symnoise_nm0)
for ((i = 0; i < ${#ORDER[@]}; i++)); do
  for ((j = i + 1; j < ${#ORDER[@]}; j++)); do
    a=${ORDER[i]} b=${ORDER[j]}
    out="$HERE/compare/${b}_minus_${a}"
    $SYMNOISE compare "${SIDE[$a]}" "${SIDE[$b]}" > "$out.txt"
    $SYMNOISE compare "${SIDE[$a]}" "${SIDE[$b]}" --json > "$out.json"
    echo "== $b − $a"; cat "$out.txt"
  done
done
python "$HERE/detectable.py" "$HERE/compare" > "$HERE/compare/summary.md"
cat "$HERE/compare/summary.md"
