#!/usr/bin/env bash
# Train the alpaca_overfit grid as two chains in parallel, each seed-major (seed 0 of every
# method, then seed 1, then seed 2), so that a partial grid stays balanced across methods.
# SymNoise costs two forwards per step, the others one: chain A = none + SymNoise without
# norm matching, chain B = SymNoise + NEFTune (3 units of work per seed each); Gaussian and
# Bernoulli (the optional part of the grid) come after the four main methods' 3 seeds.
# Resumable: a rerun skips finished points (the sweep's plan) and retrains interrupted ones
# (save_steps 0: no checkpoints, an interrupted point starts again).
# One thread per process: on the shared 2-core machine under load, a process with 2
# OpenMP threads ran ~4x slower per step (spin contention) than one with one thread.
#   bash docs/results/alpaca_overfit/run_grid.sh [A|B]      # from the repository root
# (A or B: that chain only; default both)
set -u
EXP=docs/results/alpaca_overfit/experiment.yaml
SYMNOISE=${SYMNOISE:-symnoise}
LOG_DIR=${LOG_DIR:-.}
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
CHAINS=${1:-AB}
run() { $SYMNOISE sweep "$EXP" --only "$1"; }
[[ $CHAINS == *A* ]] && {
  for s in 0 1 2; do run "alpaca80-none-s$s,alpaca80-symnoise-a5-nm0-s$s"; done
  run "alpaca80-gaussian-a5-s"
} > "$LOG_DIR/alpaca_overfit_chainA.log" 2>&1 &
[[ $CHAINS == *B* ]] && {
  for s in 0 1 2; do run "alpaca80-uniform-a5-s$s,alpaca80-symnoise-a5-s$s"; done
  run "alpaca80-bernoulli-a5-s"
} > "$LOG_DIR/alpaca_overfit_chainB.log" 2>&1 &
wait
