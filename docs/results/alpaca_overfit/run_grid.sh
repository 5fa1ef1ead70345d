#!/usr/bin/env bash
# Train the alpaca_overfit grid as two chains in parallel (one thread each), seed-major.
# What was run (2026-11-23/24): none, NEFTune (uniform α5), SymNoise α5 norm-matched and
# SymNoise α5 without norm matching (nm0) at seeds 0, 1, 2 (nm0 seeds 1-2 last, after the
# first result was written up). On this machine a SymNoise run (two forwards per step,
# concat) takes ~20-30 min beside the other chain, a one-forward run ~13 min. Chains C and D
# (Gaussian and Bernoulli, norm-matched, alpha 5) were run on 2026-12-04 from commit 47f1efc
# (`bash run_grid.sh CD`). The chains:
#   A: none-s0, symnoise-nm0-s0, none-s1, symnoise-s1, none-s2, symnoise-nm0-s1
#   B: uniform-s0, symnoise-s0, uniform-s1, uniform-s2, symnoise-s2, symnoise-nm0-s2
#   C: gaussian-s0, gaussian-s1, gaussian-s2
#   D: bernoulli-s0, bernoulli-s1, bernoulli-s2
# Resumable: a rerun skips finished points (the sweep's plan) and retrains interrupted ones
# (save_steps 0: no checkpoints, an interrupted point starts again).
#   bash docs/results/alpaca_overfit/run_grid.sh [A|B|C|D...]      # from the repository root
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
} >> "$LOG_DIR/alpaca_overfit_chainA.log" 2>&1 &
[[ $CHAINS == *B* ]] && {
  run "alpaca80-uniform-a5-s0,alpaca80-symnoise-a5-s0"
  run "alpaca80-uniform-a5-s1,alpaca80-uniform-a5-s2"
  run "alpaca80-symnoise-a5-s2"
  run "alpaca80-symnoise-a5-nm0-s2"
} >> "$LOG_DIR/alpaca_overfit_chainB.log" 2>&1 &
for chain in C D; do
  [[ $CHAINS == *$chain* ]] || continue
  method=$([[ $chain == C ]] && echo gaussian || echo bernoulli)
  for s in 0 1 2; do run "alpaca80-$method-a5-s$s"; done \
    >> "$LOG_DIR/alpaca_overfit_chain$chain.log" 2>&1 &
done
wait
