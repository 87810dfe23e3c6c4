"""The entry points of a group, read once per ``sys.path``.

:func:`importlib.metadata.entry_points` reads the metadata of every installed distribution on each call (about 35 ms
in a virtual environment with Airflow, its providers and MLflow); processing and loading one model asks up to ten
times, for the flavours and the artifact processors plug-ins add, and the MLflow plug-ins that send it to
MlflowClient. One scan of every group is kept per ``sys.path`` (asking for one group scans them all anyway), so a
package put on the path later (a test's, or a replica's ``PYTHONPATH``) is still found.

Never imports Airflow.
"""

from __future__ import annotations

import sys
from functools import lru_cache
from importlib.metadata import EntryPoint, entry_points
from typing import Any


def group(name: str) -> tuple[EntryPoint, ...]:
    """The installed entry points of the group ``name``."""
    return _group(name, tuple(sys.path))


@lru_cache(maxsize=16)
def _group(name: str, path: tuple[str, ...]) -> tuple[EntryPoint, ...]:
    return tuple(_every(path).select(group=name))


@lru_cache(maxsize=4)
def _every(path: tuple[str, ...]) -> Any:
    """Every installed entry point (``SelectableGroups`` on Python 3.10, ``EntryPoints`` later: both ``select``)."""
    return entry_points()
