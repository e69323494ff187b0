#!/usr/bin/env bash
# Developer check that the CUDA backend compiles, links and imports on this machine (no GPU needed):
#   bash tools/cuda_build_check.sh
# 1. cuBLAS's headers: extracted once from the nvidia-cublas wheel into build/cublas-headers/
#    (headers only; the library is loaded at run time, from `pycnn[cuda]`, never linked).
# 2. An incremental CUDA build into build/dev-cuda (tools/dev_build.sh with PYCNN_CUDA=ON; nothing is
#    copied into src/pycnn/).
# 3. The package imported with that core from a temporary copy: the CUDA backend must be compiled in,
#    and where CUDA is unavailable the reason must be given and a CUDA tensor refused with it.
# CI checks the same end to end through the wheel (tools/build_wheels.sh in .ci/run).
set -euo pipefail
cd "$(dirname "$0")/.."
py=${PYTHON:-python}
hdr=build/cublas-headers
if [ ! -f "$hdr/nvidia/cu13/include/cublas_v2.h" ]; then
  "$py" -m pip download -q --no-deps "nvidia-cublas>=13,<14" -d "$hdr/wheel"
  "$py" - "$hdr" <<'PY'
import glob, sys, zipfile
dest = sys.argv[1]
z = zipfile.ZipFile(glob.glob(f"{dest}/wheel/nvidia_cublas-*.whl")[0])
z.extractall(dest, [n for n in z.namelist() if n.startswith("nvidia/cu13/include/")])
PY
  rm -rf "$hdr/wheel"
fi
start=$(date +%s)
PYCNN_CUDA=ON PYCNN_DEV_SUFFIX=-cuda bash tools/dev_build.sh -DPYCNN_CUBLAS_ROOT="$(pwd)/$hdr/nvidia/cu13"
echo "cuda_build_check: build/dev-cuda built in $(( $(date +%s) - start )) s"

work=$(mktemp -d /tmp/pycnn-cuda-check.XXXXXX)
trap 'rm -rf "$work"' EXIT
tar -C src --exclude='__pycache__' --exclude='*.so' --exclude='.*.tmp' -cf - pycnn | tar -C "$work" -xf -
cp build/dev-cuda/_core*.so "$work/pycnn/"
cd "$work"
PYTHONPATH="$work" "$py" - <<'PY'
import pycnn as pc
info = pc.build_info()
print({k: info[k] for k in ("cuda", "cuda_version", "cuda_available", "cuda_unavailable_reason", "cublas")})
assert info["cuda"], "the CUDA build reports no CUDA backend"
if not pc.cuda.is_available():
    reason = pc.cuda.unavailable_reason()
    assert reason, "CUDA unavailable without a reason"
    try:
        pc.zeros(2, device="cuda")
    except RuntimeError as e:
        assert reason in str(e), (reason, str(e))
    else:
        raise SystemExit("asking for CUDA without a GPU did not raise")
print("cuda_build_check: OK")
PY
