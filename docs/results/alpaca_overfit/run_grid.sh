#!/usr/bin/env bash
# Train the alpaca_overfit grid as two chains in parallel (one thread each), seed-major.
# What was run (2026-11-23/24): none, NEFTune (uniform α5), SymNoise α5 norm-matched and
# SymNoise α5 without norm matching (nm0) at seeds 0, 1, 2 (nm0 seeds 1-2 last, after the
# first result was written up). On this machine a SymNoise run (two forwards per step,
# concat) takes ~20-30 min beside the other chain, a one-forward run ~13 min. EXTRA=1 adds the
# rest of experiment.yaml's grid (Gaussian, Bernoulli), not run. The chains:
#   A: none-s0, symnoise-nm0-s0, none-s1, symnoise-s1, none-s2, symnoise-nm0-s1
#   B: uniform-s0, symnoise-s0, uniform-s1, uniform-s2, symnoise-s2, symnoise-nm0-s2
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
  run "alpaca80-symnoise-a5-nm0-s1"
  [[ ${EXTRA:-0} == 1 ]] && run "alpaca80-gaussian-a5-s"
} >> "$LOG_DIR/alpaca_overfit_chainA.log" 2>&1 &
[[ $CHAINS == *B* ]] && {
  run "alpaca80-uniform-a5-s0,alpaca80-symnoise-a5-s0"
  run "alpaca80-uniform-a5-s1,alpaca80-uniform-a5-s2"
  run "alpaca80-symnoise-a5-s2"
  run "alpaca80-symnoise-a5-nm0-s2"
  [[ ${EXTRA:-0} == 1 ]] && run "alpaca80-bernoulli-a5-s"
} >> "$LOG_DIR/alpaca_overfit_chainB.log" 2>&1 &
wait
