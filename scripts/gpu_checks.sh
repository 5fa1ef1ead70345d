#!/usr/bin/env bash
# The checks that need a CUDA GPU, in one go, each stage under its own time limit:
#   1. the GPU-only tests (tests/test_distributed.py: FSDP 1/2 through the Trainer in both
#      SymNoise modes, the noise generator following the model to the GPU and back);
#   2. the training-step overhead of each method (benchmarks/train_overhead.py, bf16 autocast)
#      on random models of SmolLM2-135M's and of a 1B Llama's shape (timing needs shapes,
#      not weights, so no download);
#   3. batched versus one-at-a-time generation (benchmarks/generate_throughput.py);
#   4. the whole test suite with the GPU visible (--device auto then picks cuda).
# Usage: [BUDGET_S=540] bash scripts/gpu_checks.sh TOKENIZER_DIR OUT_DIR  (logs: OUT_DIR/<stage>.log)
# Needs the project's dependencies and pytest-xdist, pytest-timeout on the machine.
set -uo pipefail
tok=${1:?a saved tokenizer folder}
out=${2:?an output folder}
mkdir -p "$out"
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1
py=${PYTHON:-python3}
models=${TMPDIR:-/tmp}/symnoise-gpu-models

stages=" ${STAGES:-gpu_tests overhead_135m overhead_1b generate suite} "  # a subset to rerun
wants() { [[ $stages == *" $1 "* ]]; }
stage() {  # stage NAME SECONDS COMMAND...
    local name=$1 limit=$2; shift 2
    wants "$name" || return 0
    if (( limit < 30 )); then echo "== $name: skipped, ${limit}s left"; return 0; fi
    echo "== $name (limit ${limit}s): $*"
    local t0=$SECONDS
    timeout "$limit" "$@" >"$out/$name.log" 2>&1
    local rc=$?
    echo "== $name: exit $rc after $((SECONDS - t0))s"
    tail -n 40 "$out/$name.log"
}

{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
  "$py" -c "import torch, transformers, peft, accelerate, trl; print('torch', torch.__version__,
'cuda', torch.version.cuda, '| transformers', transformers.__version__, '| peft',
peft.__version__, '| accelerate', accelerate.__version__, '| trl', trl.__version__)"
} 2>&1 | tee "$out/env.log"

stage gpu_tests "${GPU_TESTS_S:-240}" "$py" -m pytest -q -rs -p no:cacheprovider tests/test_distributed.py
model() {  # model SHAPE FOLDER: a random model of that shape (its log joins env.log)
    "$py" benchmarks/random_model.py --shape "$1" --tokenizer "$tok" --out "$models/$2" \
        >>"$out/env.log" 2>&1
}
{ wants overhead_135m || wants generate; } && model smollm2-135m m135
wants overhead_1b && model llama-1b m1b
stage overhead_135m "${OVERHEAD_S:-120}" "$py" benchmarks/train_overhead.py --model "$models/m135" \
    --device cuda --bf16 --batch 8 --length 512 --reps 7
stage overhead_1b "${OVERHEAD_S:-150}" "$py" benchmarks/train_overhead.py --model "$models/m1b" \
    --device cuda --bf16 --batch 8 --length 1024 --reps 7
stage generate "${GENERATE_S:-90}" "$py" benchmarks/generate_throughput.py --model "$models/m135" \
    --device cuda --dtype bfloat16 --n-prompts "${GEN_PROMPTS:-32}" --batch-size 16 --max-new-tokens 32
# the suite gets what is left of BUDGET_S (when set), at most SUITE_S
suite_s=${SUITE_S:-240}
left=$(( ${BUDGET_S:-1000000} - SECONDS - 15 ))
(( left < suite_s )) && suite_s=$left
stage suite "$suite_s" "$py" -m pytest -q -rfE -p no:cacheprovider -n "${WORKERS:-8}" \
    --timeout 200
