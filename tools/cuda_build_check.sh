#!/usr/bin/env bash
# Forced CUDA build (PYCNN_CUDA=ON) of the wheel, installed into a fresh venv with cuBLAS from the
# nvidia-cublas wheel, imported on a machine that may have no GPU, then the CPU test suite under it.
set -euo pipefail
cd "$(dirname "$0")/.."
py=${PYTHON:-python3}
work=${PYCNN_CUDA_CHECK_DIR:-/tmp/pycnn-cuda-check}
rm -rf "$work" && mkdir -p "$work"

"$py" -m pip install -q nvidia-cublas
cublas_root=$("$py" -c "import nvidia, os; print(next(os.path.join(p, d) for p in nvidia.__path__ for d in ('cu13', 'cu12', 'cublas') if os.path.isdir(os.path.join(p, d))))")
echo "cuBLAS from $cublas_root"

start=$(date +%s)
PYCNN_CUDA=ON "$py" -m pip wheel . --no-deps -w "$work/dist" -C cmake.define.PYCNN_CUBLAS_ROOT="$cublas_root" \
  -C build.verbose=false
echo "CUDA wheel built in $(( $(date +%s) - start )) s: $(ls "$work/dist")"

"$py" -m venv "$work/venv"
"$work/venv/bin/python" -m pip install -q "$work"/dist/pycnn-*.whl nvidia-cublas pytest hypothesis
cd "$work"  # import the installed package, not the checkout
"$work/venv/bin/python" - <<'PY'
import pycnn as pc
info = pc.build_info()
print(info)
assert info["cuda"], "the forced CUDA build reports no CUDA backend"
if not pc.cuda.is_available():
    try:
        pc.zeros(2, device="cuda")
    except RuntimeError as e:
        print("no GPU here, as expected:", e)
    else:
        raise SystemExit("asking for CUDA without a GPU did not raise")
PY
"$work/venv/bin/python" -m pytest -q -p no:cacheprovider "$OLDPWD/tests"
