#!/usr/bin/env bash
# `nedr bench` on a lent GPU box, without installing the package there (it has torch with CUDA but
# no scikit-video, TensorRT or onnxruntime-gpu). Run from the repo root through the device tool:
#
#   here:   mkdir -p .gpudeps && cp -r .venv/lib/python3.11/site-packages/skvideo .gpudeps/
#   device: run(command="OUT=$OUT bash scripts/gpu_bench.sh", carry=[".gpudeps"], timeout_s=540)
#
# Default: the PyTorch CUDA rows (FP32, FP16, FP16 channels_last, FP16 CUDA-graph replay) at the four
# standard sizes, full resolution; extra arguments go to `nedr bench`. The report lands in
# $OUT/bench-gpu (copy it to benchmarks/results/gpu-<name>/ and commit).
set -euo pipefail
OUT=${OUT:-nedr-output}
SHIM=$(python3 -c "import sys; sys.path.insert(0, 'benchmarks'); from runtime_gpu_check import shim; print(shim())")
export PYTHONPATH="${SHIM}:${PWD}/.gpudeps${PYTHONPATH:+:${PYTHONPATH}}"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || true
python3 -m nedr.cli bench -o "${OUT}/bench-gpu" --backends torch --precisions fp32,fp16 --full-res \
    --min-seconds 1 "$@"
