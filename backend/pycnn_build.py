"""pycnn's in-tree build backend: scikit-build-core, plus cuBLAS's headers when CUDA is built.

pip builds in an isolated environment that cannot see the user's packages, so the CUDA backend's
one build-time need outside the toolkit -- cuBLAS's headers (cublas_v2.h; the library itself is
loaded at run time) -- is asked for here: when PYCNN_CUDA is ON or AUTO (the default), nvcc is
found and its toolkit lacks cuBLAS, `nvidia-cublas` of nvcc's CUDA major version joins the build
requirements. Everything else is scikit-build-core's own backend, unchanged.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
from typing import Dict, List, Optional

from scikit_build_core import build as _skbuild
from scikit_build_core.build import (  # noqa: F401  (the PEP 517 hooks this backend does not change)
    build_editable, build_sdist, build_wheel, get_requires_for_build_sdist, prepare_metadata_for_build_editable,
    prepare_metadata_for_build_wheel)

# nvcc's major version -> the wheel holding that cuBLAS's headers (CUDA 12's wheels carry a suffix)
_CUBLAS_WHEEL = {12: "nvidia-cublas-cu12", 13: "nvidia-cublas>=13,<14"}


def find_nvcc() -> Optional[str]:
    """nvcc as CMake finds it: $CUDACXX, then PATH, then $CUDA_HOME/$CUDA_PATH/bin."""
    if os.environ.get("CUDACXX"):
        return shutil.which(os.environ["CUDACXX"])
    found = shutil.which("nvcc")
    if found:
        return found
    for var in ("CUDA_HOME", "CUDA_PATH"):
        cand = os.path.join(os.environ.get(var, ""), "bin", "nvcc")
        if os.environ.get(var) and os.access(cand, os.X_OK):
            return cand
    return None


def nvcc_major(nvcc: str) -> Optional[int]:
    try:
        out = subprocess.run([nvcc, "--version"], capture_output=True, text=True, timeout=60).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    m = re.search(r"release (\d+)\.", out)
    return int(m.group(1)) if m else None


def toolkit_has_cublas(nvcc: str) -> bool:
    """Whether nvcc's own include folders hold cublas_v2.h (nvcc may be a wrapper script, so it
    is asked for them: `nvcc --dryrun` prints its INCLUDES)."""
    dirs = [os.path.join(os.path.dirname(os.path.dirname(os.path.realpath(nvcc))), "include")]
    try:
        out = subprocess.run([nvcc, "--dryrun", "-c", "-x", "cu", os.devnull, "-o", os.devnull],
                             capture_output=True, text=True, timeout=60).stderr
        dirs += re.findall(r"-I\"?([^\"\s]+)", "\n".join(l for l in out.splitlines() if "INCLUDES=" in l))
    except (OSError, subprocess.SubprocessError):
        pass
    return any(os.path.exists(os.path.join(d, "cublas_v2.h")) for d in dirs)


def cuda_requirements() -> List[str]:
    """What a CUDA build adds to the build requirements: nothing, or the nvidia-cublas wheel."""
    mode = os.environ.get("PYCNN_CUDA", "AUTO").strip().upper()
    if mode == "OFF":
        return []
    nvcc = find_nvcc()
    if nvcc is None or toolkit_has_cublas(nvcc):
        return []  # no CUDA build (AUTO), or CMake's own error (ON); or the toolkit has the headers
    wheel = _CUBLAS_WHEEL.get(nvcc_major(nvcc) or 13)
    return [wheel] if wheel else []


def get_requires_for_build_wheel(config_settings: Optional[Dict[str, object]] = None) -> List[str]:
    return list(_skbuild.get_requires_for_build_wheel(config_settings)) + cuda_requirements()


def get_requires_for_build_editable(config_settings: Optional[Dict[str, object]] = None) -> List[str]:
    return list(_skbuild.get_requires_for_build_editable(config_settings)) + cuda_requirements()
