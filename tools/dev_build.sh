#!/usr/bin/env bash
# In-place developer build: compiles pycnn._core into build/dev and copies it into src/pycnn/,
# so `python -m pytest` works from the checkout. Serialised with a lock (several people build).
# Usage: bash tools/dev_build.sh [extra cmake -D options]   (PYCNN_CUDA=OFF by default here)
set -euo pipefail
cd "$(dirname "$0")/.."
exec 9>build.lock
flock 9
dir=build/dev${PYCNN_DEV_SUFFIX:-}
cmake -S . -B "$dir" -G Ninja -DCMAKE_BUILD_TYPE=Release -DPYCNN_CUDA="${PYCNN_CUDA:-OFF}" \
  -Dpybind11_DIR="$(python -m pybind11 --cmakedir)" -DPython_EXECUTABLE="$(command -v python)" "$@" >/dev/null
cmake --build "$dir" -j 2
if [ -z "${PYCNN_DEV_SUFFIX:-}" ]; then
  # copy then rename: a running Python that mapped the old file keeps it intact
  for so in "$dir"/_core*.so; do
    cp "$so" "src/pycnn/.$(basename "$so").tmp" && mv -f "src/pycnn/.$(basename "$so").tmp" "src/pycnn/$(basename "$so")"
  done
fi
