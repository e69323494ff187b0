#!/usr/bin/env bash
# Fills .whl/ (git-ignored) with the wheels the GPU machine lacks, for tools/gpu_check.sh: that
# machine runs Python 3.12 with no network and already has numpy, pybind11, scikit-build-core,
# safetensors, tqdm, pytest, hypothesis, nvidia-cublas and PyTorch (the device tool's KINDS.md), but
# not scipy-openblas32. Run here (PyPI reachable), then carry .whl in the device call.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p .whl
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
  -d .whl "scipy-openblas32>=0.3.27"
ls -l .whl
