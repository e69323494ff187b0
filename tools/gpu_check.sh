#!/usr/bin/env bash
# The GPU session's one script (issue: run the CUDA backend on a real GPU). On a bare GPU machine
# with CUDA 13 nvcc, PyTorch, pybind11, scikit-build-core and nvidia-cublas but no network, it
#   1. installs the wheels carried in .whl/ (tools/fetch_gpu_wheels.sh fills it: scipy-openblas32),
#   2. builds pycnn with CUDA: pip install --no-build-isolation --no-deps . (sm_90 only, to save time),
#   3. runs the CUDA tests (pytest -m cuda) and the CPU suite against the installed package,
#   4. runs the GPU benchmark (quick, then full) against PyTorch,
# writing every log and result into OUTDIR. Each step has its own time limit; the whole run is
# planned to finish in under 8 minutes. Without a GPU it says so plainly, still builds and runs the
# CPU tests, skips the GPU benchmark and exits 3.
# Usage: bash tools/gpu_check.sh OUTDIR     (device tool: carry .whl, OUTDIR=$OUT)
# GPU_CHECK_BUILD_LIMIT (seconds, default 300: enough on the GPU machine's 16 cores) for slower machines.
set -uo pipefail
cd "$(dirname "$0")/.."
out=${1:?usage: tools/gpu_check.sh OUTDIR}
mkdir -p "$out"
out=$(cd "$out" && pwd)
repo=$(pwd)
py=${PYTHON:-python3}
export PYTHONUNBUFFERED=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_ROOT_USER_ACTION=ignore
jobs=$(nproc)
status=0
t0=$(date +%s)

step() {  # step NAME LIMIT_S COMMAND...: runs COMMAND with a time limit, logs to OUTDIR/NAME.log
  local name=$1 limit=$2; shift 2
  local s=$(date +%s)
  echo "== $name (limit ${limit}s)"
  timeout --kill-after=10 "$limit" "$@" >"$out/$name.log" 2>&1
  local rc=$?
  echo "   rc=$rc in $(( $(date +%s) - s ))s; tail of $name.log:"
  tail -n 15 "$out/$name.log" | sed 's/^/   | /'
  [ "$rc" -eq 0 ] || status=1
  return "$rc"
}

{
  echo "date: $(date -u +%FT%TZ)"; echo "host: $(hostname)"; uname -a
  nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm,clocks.max.mem --format=csv 2>&1
  nvcc --version 2>&1 | tail -n 2
  "$py" -c "import sys, torch; print('python', sys.version.split()[0], 'torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.is_available())" 2>&1
} | tee "$out/machine.txt"

if nvidia-smi -L >/dev/null 2>&1; then
  gpu=1
  echo "GPU found: $(nvidia-smi -L | head -n 1)"
else
  gpu=0
  echo "NO GPU FOUND on this machine: building and running the CPU tests only; the CUDA tests will"
  echo "skip and the GPU benchmark is not run. This run proves nothing about the CUDA backend."
fi

if compgen -G ".whl/*.whl" >/dev/null; then
  step wheels 120 "$py" -m pip install --no-index --no-deps --no-compile .whl/*.whl
else
  echo "no .whl/ folder: assuming the carried wheels are installed already (tools/fetch_gpu_wheels.sh makes it)"
fi

PYCNN_CUDA=ON CMAKE_BUILD_PARALLEL_LEVEL=$jobs step build "${GPU_CHECK_BUILD_LIMIT:-300}" "$py" -m pip install -v --no-build-isolation --no-deps \
  -C cmake.define.CMAKE_CUDA_ARCHITECTURES=90 -C build-dir="$out/build" . || { echo "build failed: see $out/build.log"; exit 1; }
rm -rf "$out/build"  # the build tree is large; the log says what happened

cd "$out"  # import the installed package, never the checkout
step info 60 "$py" -c "import pycnn as pc, json; print(json.dumps(pc.build_info(), indent=1, default=str)); \
print('cuda available:', pc.cuda.is_available())"

xdist=()
"$py" -c "import xdist" 2>/dev/null && xdist=(-n "$(( jobs < 8 ? jobs : 8 ))")
step cuda_tests 240 "$py" -m pytest -q -p no:cacheprovider -m cuda -rs "$repo/tests"
step cpu_tests 240 "$py" -m pytest -q -p no:cacheprovider -m "not slow and not cuda" -x "${xdist[@]}" "$repo/tests"

if [ "$gpu" = 1 ]; then
  mkdir -p "$out/results"
  cd "$repo"
  step bench_quick 60 "$py" -m benchmarks.gpu --quick --out "$out/results-quick"
  step bench 150 "$py" -m benchmarks.gpu --out "$out/results"
else
  status=3
fi
echo "== done in $(( $(date +%s) - t0 ))s, status $status (0 all passed, 1 a step failed, 3 no GPU)"
exit "$status"
