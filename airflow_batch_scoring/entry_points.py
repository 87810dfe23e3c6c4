"""The entry points of a group, read once per ``sys.path``.

:func:`importlib.metadata.entry_points` reads the metadata of every installed distribution on each call (about 35 ms
in a virtual environment with Airflow, its providers and MLflow); processing and loading one model asks up to ten
times, for the flavours and the artifact processors plug-ins add. The answer is kept per group and per ``sys.path``,
so a package put on the path later (a test's, or a replica's ``PYTHONPATH``) is still found.

Never imports Airflow.
"""

from __future__ import annotations

import sys
from functools import lru_cache
from importlib.metadata import EntryPoint, entry_points


def group(name: str) -> tuple[EntryPoint, ...]:
    """The installed entry points of the group ``name``."""
    return _group(name, tuple(sys.path))


@lru_cache(maxsize=16)
def _group(name: str, path: tuple[str, ...]) -> tuple[EntryPoint, ...]:
    return tuple(entry_points(group=name))
