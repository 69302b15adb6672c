#!/usr/bin/env bash
# The GPU check (<= 8 minutes on one GPU, offline): device tests in bf16, the paper-scale step
# benchmark, 20 steps each of FSDP and DeepSpeed ZeRO-3, `decovlm demo --quick`, the relevance
# benchmark; writes the `gpu` section of benchmarks/RESULTS.md. See benchmarks/gpu_check.py.
#
#   scripts/gpu_check.sh [gpu_check.py options, e.g. --parts step demo --no-write]
#
# Packages: the machine's own (its torch is always kept) when they meet pyproject's minimums;
# otherwise the wheels in $WHEELS (default ./wheels) are installed, offline. Prepare them on a
# machine with network for the GPU machine's platform and Python, e.g. for Linux x86-64 / 3.11:
#
#   pip download --only-binary=:all: --platform manylinux2014_x86_64 --python-version 3.11 \
#       --implementation cp -d wheels "transformers>=5.0,<6" "accelerate>=1.0" "peft>=0.13" \
#       "huggingface_hub>=1.0" "tokenizers>=0.20" "safetensors>=0.4" "pytest>=8" pyyaml rich tqdm
#   pip wheel --no-deps -w wheels "deepspeed>=0.15,<0.20"     # an sdist: built once, ops JIT-compiled
#
# (`pip download` also fetches their dependencies; drop the torch/nvidia wheels it adds if the
# GPU machine has its own torch.) PYTHON selects the interpreter (default: python3).
set -euo pipefail
cd "$(dirname "$0")/.."

PY=${PYTHON:-python3}
WHEELS=${WHEELS:-wheels}
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_DATASETS_OFFLINE=1
export DECOVLM_USE_KERNELS=0 TOKENIZERS_PARALLELISM=false
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"

if ! "$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)" 2>/dev/null; then
    echo "gpu_check: $PY has no torch with a CUDA device; run it on a GPU machine" >&2
    exit 2
fi

install_wheels() {  # install_wheels REQUIREMENT... : from $WHEELS only, keeping this torch
    if [ ! -d "$WHEELS" ]; then
        echo "gpu_check: missing $*; bring wheels in $WHEELS (see the top of this script)" >&2
        exit 2
    fi
    local torch_pin
    torch_pin=$("$PY" -c "import torch; print('torch==' + torch.__version__)")
    "$PY" -m pip install -q --no-index --find-links "$WHEELS" -c <(echo "$torch_pin") "$@"
}

mapfile -t missing < <("$PY" benchmarks/gpu_check.py --missing)
if [ "${#missing[@]}" -gt 0 ] && [ -n "${missing[0]}" ]; then
    echo "gpu_check: installing from $WHEELS: ${missing[*]}"
    install_wheels "${missing[@]}"
fi
# DeepSpeed is optional: installed from the wheels when brought along, else its part is refused.
if ! "$PY" -c "import deepspeed" 2>/dev/null && compgen -G "$WHEELS/deepspeed-*.whl" >/dev/null; then
    install_wheels deepspeed
fi

exec "$PY" benchmarks/gpu_check.py "$@"
