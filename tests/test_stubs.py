"""src/pycnn/_core.pyi (tools/make_stubs.sh) names exactly what the compiled core exports."""
from __future__ import annotations

import ast
import os

from pycnn import _core

STUB = os.path.join(os.path.dirname(os.path.abspath(_core.__file__)), "_core.pyi")


def test_the_stub_lists_every_binding_and_nothing_else():
    tree = ast.parse(open(STUB, encoding="utf-8").read())
    listed = next(ast.literal_eval(n.value) for n in tree.body
                  if isinstance(n, ast.AnnAssign) and getattr(n.target, "id", "") == "__all__")
    defined = {n.name for n in tree.body if isinstance(n, (ast.FunctionDef, ast.ClassDef))}
    exported = {k for k in dir(_core) if not k.startswith("_")}
    assert set(listed) == exported, "run tools/make_stubs.sh: " + str(set(listed) ^ exported)
    values = {n.target.id for n in tree.body if isinstance(n, ast.AnnAssign)}
    assert set(listed) <= defined | values
