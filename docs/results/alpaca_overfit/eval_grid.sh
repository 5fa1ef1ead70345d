#!/usr/bin/env bash
# Evaluate every finished run of the alpaca_overfit grid as soon as it finishes (one thread,
# beside the two training chains), until all the runs of the four main methods have an
# evaluation. Per run: the per-example clean held-out loss (the 64 held-out rows training
# used), 100 AlpacaEval prompts answered greedily (length, repetition) and the synthetic
# held-out split (exact answers, 120 items; seed 0 only, below); at most 128 new tokens
# per answer. No judge: the only offline judge measured as not usable (README, judge
# check). Resumable: eval skips the steps it has already done.
#   bash docs/results/alpaca_overfit/eval_grid.sh            # from the repository root
set -u
ROOT=${ROOT:-/work/runs/alpaca_overfit}
PROMPTS=${PROMPTS:-../shared/data/alpaca_eval_805.json}
SYMNOISE=${SYMNOISE:-symnoise}
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
# What the grid trained (run_grid.sh): the four main methods at seeds 0, 1, 2. The synthetic exact-answer step runs on seed 0 only:
# every seed-0 model scored at the floor there (4.2%, 5 of 120, none and NEFTune alike),
# and its 1.8 min per run went to the training budget instead.
RUNS="smollm2-alpaca80-none-s0 smollm2-alpaca80-uniform-a5-s0 smollm2-alpaca80-symnoise-a5-s0"
RUNS="$RUNS smollm2-alpaca80-symnoise-a5-nm0-s0" FAILED=""
for s in 1 2; do
  for m in none uniform-a5 symnoise-a5 symnoise-a5-nm0; do RUNS="$RUNS smollm2-alpaca80-$m-s$s"; done
done
status() { python -c "import json,sys; print(json.load(open(sys.argv[1])).get('status'))" "$1/run.json" 2>/dev/null; }
while :; do
  left=0
  for r in $RUNS; do
    [[ -f $ROOT/$r/eval/summary.json || " $FAILED " == *" $r "* ]] && continue
    left=$((left + 1))
    [[ $(status "$ROOT/$r") == completed ]] || continue
    echo "$(date -u +%T) eval $r"
    synthetic=--no-synthetic; [[ $r == *-s0 ]] && synthetic=--synthetic
    $SYMNOISE eval "$ROOT/$r" --prompts "$PROMPTS" --n-prompts 100 --max-new-tokens 128 \
      $synthetic --synthetic-n-prompts 120 --no-progress \
      || { echo "$(date -u +%T) FAILED $r"; FAILED="$FAILED $r"; }
  done
  [[ $left == 0 ]] && break
  sleep 60
done
echo "$(date -u +%T) all evaluated"
