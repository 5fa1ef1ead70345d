#!/usr/bin/env bash
# Train the alpaca_overfit grid as two chains in parallel (one thread each), seed-major.
# What was run (2026-11-23, second session): none, NEFTune (uniform α5) and SymNoise α5
# norm-matched at seeds 0, 1, 2, and SymNoise α5 without norm matching at seed 0 only.
# The budget did not allow more: on this machine a SymNoise run (two forwards per step,
# concat) takes ~30 min beside the other chain, a one-forward run ~13 min. EXTRA=1 adds the
# rest of experiment.yaml's grid (SymNoise nm0 seeds 1-2, Gaussian, Bernoulli), not run.
# The chains are balanced in work (~60 min each on an idle 2-core machine):
#   A: none-s0, symnoise-nm0-s0, none-s1, symnoise-s1, none-s2
#   B: uniform-s0, symnoise-s0, uniform-s1, uniform-s2, symnoise-s2
# Resumable: a rerun skips finished points (the sweep's plan) and retrains interrupted ones
# (save_steps 0: no checkpoints, an interrupted point starts again).
#   bash docs/results/alpaca_overfit/run_grid.sh [A|B]      # from the repository root
set -u
EXP=docs/results/alpaca_overfit/experiment.yaml
SYMNOISE=${SYMNOISE:-symnoise}
LOG_DIR=${LOG_DIR:-.}
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
CHAINS=${1:-AB}
run() { $SYMNOISE sweep "$EXP" --only "$1"; }
[[ $CHAINS == *A* ]] && {
  run "alpaca80-none-s0,alpaca80-symnoise-a5-nm0-s0"
  run "alpaca80-none-s1,alpaca80-symnoise-a5-s1"
  run "alpaca80-none-s2"
  [[ ${EXTRA:-0} == 1 ]] && run "alpaca80-symnoise-a5-nm0-s,alpaca80-gaussian-a5-s"
} >> "$LOG_DIR/alpaca_overfit_chainA.log" 2>&1 &
[[ $CHAINS == *B* ]] && {
  run "alpaca80-uniform-a5-s0,alpaca80-symnoise-a5-s0"
  run "alpaca80-uniform-a5-s1,alpaca80-uniform-a5-s2"
  run "alpaca80-symnoise-a5-s2"
  [[ ${EXTRA:-0} == 1 ]] && run "alpaca80-bernoulli-a5-s"
} >> "$LOG_DIR/alpaca_overfit_chainB.log" 2>&1 &
wait
