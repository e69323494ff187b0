"""The fuzz tests' example budget and case counter, shared by tests/test_fuzz_ops.py and
tests/test_fuzz_safetensors.py.

Example counts scale with PYCNN_FUZZ_EXAMPLES (default 10000 op cases in total, plus 30% of that
in file cases); runs are reproducible (derandomize=True).  The counts actually run are recorded in
FUZZ_COUNTS, checked and printed by test_zz_fuzz_case_count (the last test of
tests/test_fuzz_safetensors.py) and in the terminal summary (tests/conftest.py reads them here).
"""
from __future__ import annotations

import os
from collections import Counter

from hypothesis import HealthCheck, settings

TOTAL = int(os.environ.get("PYCNN_FUZZ_EXAMPLES", "10000"))
# share of the op examples per test; the file fuzzers get 30% of TOTAL on top
SHARE = {"conv2d": 0.4, "max_pool2d": 0.2, "avg_pool2d": 0.2, "linear": 0.2}
N_EXAMPLES = {k: max(1, round(TOTAL * v)) for k, v in SHARE.items()}
N_EXAMPLES["safetensors_random"] = max(1, round(TOTAL * 0.1))
N_EXAMPLES["safetensors_mutated"] = max(1, round(TOTAL * 0.2))

FUZZ_COUNTS: Counter = Counter()  # "<op>" -> cases run, "<op>:ok" / "<op>:ValueError" ... -> outcomes


def fuzz_settings(name):
    return settings(max_examples=N_EXAMPLES[name], deadline=None, derandomize=True, database=None,
                    suppress_health_check=list(HealthCheck), print_blob=False)
