"""Docs that run (issue 12.5): the ```python blocks of README.md, pasted in order into one Python
session, run without error.

They run in a subprocess (one namespace, block after block, as a reader pasting them would), in a
temporary folder (the files they write land there), with matplotlib's Agg backend and the package
in use on PYTHONPATH. A failure names the block by its number and first line.
"""
import os
import re
import subprocess
import sys

import pytest

import pycnn as pc

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
README = os.path.join(ROOT, "README.md")
PACKAGE_PARENT = os.path.dirname(os.path.dirname(os.path.abspath(pc.__file__)))

RUNNER = r"""
import json, sys, time, traceback
blocks = json.load(open(sys.argv[1]))
ns = {"__name__": "__main__"}
for i, (line, code) in enumerate(blocks, start=1):
    start = time.perf_counter()
    try:
        exec(compile(code, f"README.md block {i} (line {line})", "exec"), ns)
    except BaseException:
        traceback.print_exc()
        print(f"README_BLOCK_FAILED {i} (line {line}): {code.splitlines()[0]}", flush=True)
        sys.exit(1)
    print(f"README_BLOCK_OK {i} {time.perf_counter() - start:.1f}s", flush=True)
"""


def python_blocks(text):
    """(line number of the opening fence, code) of every ```python block, in order."""
    blocks = []
    for m in re.finditer(r"^```python[ \t]*\n(.*?)^```[ \t]*$", text, flags=re.S | re.M):
        blocks.append((text.count("\n", 0, m.start()) + 1, m.group(1)))
    return blocks


def test_python_blocks_are_found():
    blocks = python_blocks(open(README, encoding="utf-8").read())
    assert len(blocks) >= 5
    first_line, first = blocks[0]
    assert "import pycnn as pc" in first
    assert all(code.strip() for _, code in blocks)


def test_readme_python_blocks_run_in_order(tmp_path):
    for extra in ("matplotlib", "onnx", "tensorboard", "mpi4py"):  # the optional extras the README uses
        pytest.importorskip(extra)
    import json

    blocks = python_blocks(open(README, encoding="utf-8").read())
    (tmp_path / "blocks.json").write_text(json.dumps(blocks))
    (tmp_path / "runner.py").write_text(RUNNER)
    env = dict(os.environ)
    env["PYTHONPATH"] = PACKAGE_PARENT + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env["MPLBACKEND"] = "Agg"
    r = subprocess.run([sys.executable, "runner.py", "blocks.json"], cwd=tmp_path, env=env, capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 0, f"stdout:\n{r.stdout[-4000:]}\nstderr:\n{r.stderr[-4000:]}"
    assert r.stdout.count("README_BLOCK_OK") == len(blocks)
    for name in ("filters.png", "model.onnx", "log.csv"):  # what the blocks say they write
        assert (tmp_path / name).is_file(), name
