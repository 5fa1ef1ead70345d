#!/usr/bin/env bash
# Install symnoise with everything it uses into ./.venv (CPU PyTorch pinned).
#   bash scripts/install.sh            # full install: default model, judge server, harness
#   SYMNOISE_MINIMAL=1 bash scripts/install.sh   # library + CLI only
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -d .venv ] || "$PY" -m venv .venv
. .venv/bin/activate
python -m pip install --quiet --upgrade pip
# The CPU wheel of torch 2.13.0 (any other spec pulls several GB of CUDA packages here).
python -m pip install --quiet "torch==2.13.0"
if [ "${SYMNOISE_MINIMAL:-0}" = "1" ]; then
  python -m pip install --quiet -e ".[dev]"
  exit 0
fi
# llama-cpp-python compiles from source (4-5 min on 2 cores). A -march=native build emits
# AMX kernels that crash on some CPUs (segfault in ggml_backend_amx_mul_mat), so build a
# portable AVX2 binary instead; --no-cache-dir keeps pip from reusing a native wheel.
if ! python -c "import llama_cpp" >/dev/null 2>&1; then
  CMAKE_ARGS="-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON -DGGML_AMX_INT8=OFF -DGGML_AMX_TILE=OFF -DGGML_AMX_BF16=OFF" \
  CMAKE_BUILD_PARALLEL_LEVEL="$(nproc)" \
    python -m pip install --quiet --no-cache-dir "llama-cpp-python[server]>=0.3,<0.4"
fi
python -m pip install --quiet -e ".[dev,default-model,judge,server,harness,ray]"
echo "symnoise installed in $(pwd)/.venv"
