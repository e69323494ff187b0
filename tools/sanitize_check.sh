#!/usr/bin/env bash
# AddressSanitizer + UndefinedBehaviorSanitizer run of the C++-facing tests.
#
#   bash tools/sanitize_check.sh [extra pytest args]
#
# 1. Builds pycnn._core with -DPYCNN_SANITIZE=ON (-fsanitize=address,undefined,
#    -fno-sanitize-recover=undefined) into build/asan (cmake + ninja, PYCNN_CUDA=OFF), compiled with
#    -O1 -g1 (line tables: reports carry file:line; half the compile time of -O2 -g), under the same
#    build.lock as tools/dev_build.sh. A fresh build takes ~8-10 min on 2 cores, an incremental one
#    seconds to a few minutes.
# 2. Copies the Python package and the tests into a temporary folder next to that .so, so the
#    checkout's own (unsanitized) src/pycnn/_core*.so is never imported.
# 3. Runs a C++-facing subset of the tests (~1-2 min) with the ASan runtime preloaded into the
#    (uninstrumented) Python interpreter:
#      ASAN_OPTIONS=detect_leaks=0:abort_on_error=0:halt_on_error=1:allocator_may_return_null=1
#        detect_leaks=0: CPython, NumPy and OpenBLAS deliberately leak interned objects and arenas at
#        exit, which LeakSanitizer would report on every run; memory errors are what we look for.
#        allocator_may_return_null=1: an impossible allocation (pc.zeros(2**48), 1 PiB) must fail
#        the way glibc fails it (NULL -> MemoryError), not as ASan's "allocation-size-too-big" abort.
#      UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1
#    torch is hidden from the tests (a stub package whose import raises ImportError, so the
#    `pytest.importorskip("torch")` comparisons skip): importing torch's own large native libraries
#    under a preloaded ASan runtime is slow and not what this check is about; the NumPy reference
#    (tests/reference.py) still checks every result.
# 4. Fails (exit status non-zero) on any sanitizer report -- in the pytest process or in a child
#    (tests/test_errors.py runs its cases in children and echoes their reports, even for xfail
#    cases) -- and on any test failure.
#
# Environment: PYCNN_FUZZ_EXAMPLES (default 3000 here, the fuzz files' 10000 scaled down),
# PYCNN_ASAN_KEEP=1 keeps the temporary folder, PYTHON (default python), PYCNN_BUILD_JOBS (2).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
py=${PYTHON:-python}
start=$(date +%s)

asan_rt=$(gcc -print-file-name=libasan.so)
ubsan_rt=$(gcc -print-file-name=libubsan.so)
if [ ! -e "$asan_rt" ]; then
  echo "sanitize_check: gcc's libasan.so not found (gcc -print-file-name=libasan.so -> $asan_rt)" >&2
  exit 2
fi

# ------------------------------------------------------------------------------------------ build
dir=build/asan
(
  exec 9>build.lock
  flock 9
  cmake -S . -B "$dir" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="-O1 -g1 -DNDEBUG" \
    -DPYCNN_CUDA=OFF -DPYCNN_SANITIZE=ON -DCMAKE_CXX_COMPILER=g++ \
    -Dpybind11_DIR="$("$py" -m pybind11 --cmakedir)" -DPython_EXECUTABLE="$(command -v "$py")" >/dev/null
  cmake --build "$dir" -j "${PYCNN_BUILD_JOBS:-2}"
)
so=$(ls "$dir"/_core*.so)
echo "sanitize_check: built $so in $(( $(date +%s) - start )) s"

# --------------------------------------------------------------------------- package + tests copy
work=$(mktemp -d /tmp/pycnn-asan.XXXXXX)
if [ "${PYCNN_ASAN_KEEP:-0}" != 1 ]; then trap 'rm -rf "$work"' EXIT; fi
mkdir -p "$work/pkg" "$work/stub/torch"
tar -C "$root/src" --exclude='__pycache__' --exclude='*.so' --exclude='.*.tmp' -cf - pycnn | tar -C "$work/pkg" -xf -
tar -C "$root" --exclude='__pycache__' -cf - tests | tar -C "$work/pkg" -xf -
cp "$so" "$work/pkg/pycnn/"
cp "$root/pyproject.toml" "$work/pkg/"
cat >"$work/stub/torch/__init__.py" <<'PY'
raise ImportError("torch is hidden under tools/sanitize_check.sh (ASan run)")
PY

tests=(
  tests/test_conv2d.py tests/test_conv2d_direct.py tests/test_conv2d_channels.py tests/test_conv2d_fast.py tests/test_conv2d_samples.py tests/test_pool2d.py tests/test_linear.py
  tests/test_losses.py
  tests/test_batchnorm.py tests/test_dropout.py tests/test_sgd.py tests/test_tensor_ops.py
  tests/test_fuzz_ops.py tests/test_fuzz_safetensors.py tests/test_errors.py tests/test_threads.py
)
present=()
for t in "${tests[@]}"; do
  if [ -f "$work/pkg/$t" ]; then present+=("$t"); else echo "sanitize_check: $t not found, skipped"; fi
done

out="$work/pytest.out"
export ASAN_OPTIONS="detect_leaks=0:abort_on_error=0:halt_on_error=1:allocator_may_return_null=1"
export UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1"
export PYCNN_FUZZ_EXAMPLES="${PYCNN_FUZZ_EXAMPLES:-3000}"
export PYTHONPATH="$work/stub:$work/pkg"
export PYTHONDONTWRITEBYTECODE=1
# the ASan runtime must come first; the UBSan runtime is linked into _core itself
preload="$asan_rt"
[ -e "$ubsan_rt" ] && preload="$asan_rt:$ubsan_rt"

cd "$work/pkg"
echo "sanitize_check: running ${#present[@]} test files under ASan+UBSan (PYCNN_FUZZ_EXAMPLES=$PYCNN_FUZZ_EXAMPLES)"
# sanity: the sanitized core is the one imported, and the sanitizers are live in it
LD_PRELOAD="$preload" "$py" -c "
import pycnn, os
assert pycnn.__file__.startswith('$work/pkg/'), pycnn.__file__
print('sanitize_check: importing', os.path.dirname(pycnn.__file__))
"
# (grep -c, not -q: with pipefail an early grep exit would fail nm with SIGPIPE)
nm -D "$work/pkg/pycnn/"_core*.so | grep -c __asan_report >/dev/null || { echo "sanitize_check: $so is not instrumented" >&2; exit 2; }
tstart=$(date +%s)
set +e
LD_PRELOAD="$preload" "$py" -m pytest -q -p no:cacheprovider -m "not slow" "${present[@]}" "$@" 2>&1 | tee "$out"
rc=${PIPESTATUS[0]}
set -e
echo "sanitize_check: tests ran in $(( $(date +%s) - tstart )) s"

pattern='ERROR: AddressSanitizer|runtime error:|ERROR: LeakSanitizer|SUMMARY: (Address|UndefinedBehavior)Sanitizer'
if grep -Eq "$pattern" "$out"; then
  echo "=================== sanitizer reports (headlines; full reports above) ==================="
  grep -E "$pattern" "$out" | sort | uniq -c
  echo "sanitize_check: FAILED: sanitizer report(s) ($(( $(date +%s) - start )) s in all)"
  exit 1
fi
if [ "$rc" -ne 0 ]; then
  echo "sanitize_check: FAILED: pytest exit status $rc, no sanitizer report ($(( $(date +%s) - start )) s in all)"
  exit "$rc"
fi
echo "sanitize_check: OK: no sanitizer report, tests passed ($(( $(date +%s) - start )) s in all)"
