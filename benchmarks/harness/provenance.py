"""What was measured where: the code (git HEAD and a digest of uncommitted engine changes) and the machine."""

from __future__ import annotations

import hashlib
import os
import platform
import subprocess
from pathlib import Path
from typing import Any

from harness.data import GIB, HERE


def git(root: Path, *args: str) -> str:
    """The output of a read-only git command in ``root`` ("" when git fails)."""
    try:
        return subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        return ""


def code_state(root: Path = HERE.parent) -> dict[str, Any]:
    """The engine's code as measured: HEAD and a digest of the uncommitted changes (read-only git commands)."""
    diff = git(root, "diff", "HEAD", "--", "airflow_batch_scoring")
    return {
        "head": git(root, "rev-parse", "HEAD").strip(),
        "uncommitted_engine_changes": bool(diff),
        "engine_diff_sha256": hashlib.sha256(diff.encode()).hexdigest()[:16] if diff else None,
    }


def machine_info() -> dict[str, Any]:
    import importlib.util

    import numpy
    import pandas
    import psutil
    import pyarrow
    import sklearn

    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")), "?")
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "ram_gib": round(psutil.virtual_memory().total / GIB, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "numpy": numpy.__version__,
        "pandas": pandas.__version__,
        "pyarrow": pyarrow.__version__,
        "sklearn": sklearn.__version__,
        "thread_env": {k: v for k, v in os.environ.items() if any(s in k for s in ("OMP", "BLAS", "MKL", "ARROW"))},
        # Start-up costs depend on it: without .pyc files every interpreter compiles pandas, pyarrow, scikit-learn.
        "bytecode": {
            "PYTHONDONTWRITEBYTECODE": os.environ.get("PYTHONDONTWRITEBYTECODE"),
            "PYTHONPYCACHEPREFIX": os.environ.get("PYTHONPYCACHEPREFIX"),
            "pandas_pyc_installed": os.path.exists(importlib.util.cache_from_source(pandas.__file__)),
        },
        "loadavg_at_start": os.getloadavg(),
    }
