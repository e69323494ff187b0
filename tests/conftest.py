"""Shared pytest hooks (keep this file tiny)."""
import glob
import os
import sys

# Developers build in place (tools/dev_build.sh puts _core into src/pycnn): test that build when it
# exists; otherwise (CI, users) the installed package is imported.
_TESTS = os.path.dirname(os.path.abspath(__file__))
_SRC = os.path.join(os.path.dirname(_TESTS), "src")
if glob.glob(os.path.join(_SRC, "pycnn", "_core*.so")) and _SRC not in sys.path:
    sys.path.insert(0, _SRC)
# The test files import their shared modules (helpers.py, reference.py) from tests/.
if _TESTS not in sys.path:
    sys.path.insert(0, _TESTS)


def pytest_terminal_summary(terminalreporter):
    """The number of fuzz cases tests/test_fuzz_ops.py and tests/test_fuzz_safetensors.py ran (their
    counter is in tests/fuzz_budget.py, imported only when they are)."""
    counts = getattr(sys.modules.get("fuzz_budget"), "FUZZ_COUNTS", None)
    if counts:
        ops = sum(counts[k] for k in ("conv2d", "max_pool2d", "avg_pool2d", "linear"))
        files = sum(counts[k] for k in ("safetensors_random", "safetensors_mutated"))
        terminalreporter.write_line(f"pycnn fuzz: {ops} op cases (conv2d {counts['conv2d']}, max_pool2d "
                                    f"{counts['max_pool2d']}, avg_pool2d {counts['avg_pool2d']}, linear "
                                    f"{counts['linear']}), {files} safetensors cases")
