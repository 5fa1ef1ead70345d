#!/usr/bin/env bash
# Train the alpaca_overfit grid as two chains in parallel, each seed-major (every method's
# seed 0, then seed 1, then seed 2), so that a partial grid stays balanced across methods.
# Chain A: none, NEFTune, Gaussian, Bernoulli (one forward per step); chain B: SymNoise
# norm-matched and not (two forwards per step): about the same work per seed.
# Resumable: a rerun skips finished points (the sweep's plan) and retrains interrupted ones.
# One thread per process: on the shared 2-core machine, 2 OpenMP threads per process under
# load ran ~4x slower per step (spin contention) than one.
#   bash docs/results/alpaca_overfit/run_grid.sh            # from the repository root
set -u
EXP=docs/results/alpaca_overfit/experiment.yaml
SYMNOISE=${SYMNOISE:-symnoise}
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
chain() {
  for seed in 0 1 2; do
    for method in "$@"; do
      $SYMNOISE sweep "$EXP" --only "smollm2-alpaca80-$method-s$seed"
    done
  done
}
chain none uniform-a5 gaussian-a5 bernoulli-a5 > "${LOG_DIR:-.}/alpaca_overfit_chainA.log" 2>&1 &
chain symnoise-a5 symnoise-a5-nm0 > "${LOG_DIR:-.}/alpaca_overfit_chainB.log" 2>&1 &
wait
