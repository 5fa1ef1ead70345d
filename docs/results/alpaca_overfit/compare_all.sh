#!/usr/bin/env bash
# `symnoise compare` for every pair of the four main methods of the alpaca_overfit grid
# (paired by seed, bootstrap over examples/prompts stratified by seed), text and JSON into
# compare/, then the table of differences and smallest detectable effects (--common-seeds:
# pair the seeds both sides have, should a run be missing). Exact-answer accuracy was scored
# on seed 0 only: compare/seed0/ holds every pair over seed 0 (exact answers included).
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
declare -A SEED0=(
  [none]="$ROOT/smollm2-alpaca80-none-s0"
  [neftune]="$ROOT/smollm2-alpaca80-uniform-a5-s0"
  [symnoise]="$ROOT/smollm2-alpaca80-symnoise-a5-s0"
  [symnoise_nm0]="$ROOT/smollm2-alpaca80-symnoise-a5-nm0-s0"
)
ORDER=(none neftune symnoise symnoise_nm0)
for ((i = 0; i < ${#ORDER[@]}; i++)); do
  for ((j = i + 1; j < ${#ORDER[@]}; j++)); do
    a=${ORDER[i]} b=${ORDER[j]}
    for where in "" seed0/; do
      out="$HERE/compare/$where${b}_minus_${a}" A=${SIDE[$a]} B=${SIDE[$b]}
      [[ -n $where ]] && A=${SEED0[$a]} B=${SEED0[$b]}
      mkdir -p "$(dirname "$out")"
      $SYMNOISE compare "$A" "$B" --common-seeds > "$out.txt"
      $SYMNOISE compare "$A" "$B" --common-seeds --json > "$out.json"
      echo "== $where$b − $a"; tail -n +9 "$out.txt" | grep -v skipped
    done
  done
done
for where in "" seed0/; do
  python "$HERE/detectable.py" "$HERE/compare/$where" > "$HERE/compare/${where}summary.md"
  cat "$HERE/compare/${where}summary.md"
done
