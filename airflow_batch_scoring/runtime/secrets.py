"""The job's secret material: fsspec storage options (or a database URL) for the source and the sink, kept out of the
job JSON, as one immutable :class:`Credentials` snapshot.

The operator resolves it from the connections once per task execution
(:func:`airflow_batch_scoring.hooks.data.credentials_snapshot`) and hands the same snapshot to everything that needs
it (planning, the replicas, the publish, lineage); nothing re-reads the connections mid-run. A local replica reads it
from its standard input (never argv, the environment or a file); a pod reads it from the file a Kubernetes Secret
mounts, named by ``BATCH_SCORING_SECRETS_FILE``.
"""

from __future__ import annotations

import copy
import json
import os
import sys
from collections.abc import Iterator, Mapping
from typing import Any, NoReturn

SECRETS_FILE_ENV = "BATCH_SCORING_SECRETS_FILE"
#: the parts of a snapshot.
PARTS = ("source", "sink")


class Credentials(Mapping[str, dict[str, Any]]):
    """The source's and the sink's secret material, taken once: ``{"source": {...}, "sink": {...}}``.

    Immutable: it keeps its own copy of what it was given, and every lookup returns a fresh copy, so no component can
    change what another one sees. Its ``repr`` names the keys, never a value. It crosses a process boundary as JSON
    (:meth:`to_json`); anything that takes ``Mapping[str, Mapping[str, Any]]`` storage options takes it.

    :param source: the source's options (fsspec storage options, or ``{"sqlalchemy_url": ...}``).
    :param sink: the sink's options.
    """

    __slots__ = ("_parts",)
    _parts: dict[str, dict[str, Any]]

    def __init__(self, source: Mapping[str, Any] | None = None, sink: Mapping[str, Any] | None = None):
        parts = {"source": copy.deepcopy(dict(source or {})), "sink": copy.deepcopy(dict(sink or {}))}
        object.__setattr__(self, "_parts", parts)

    @classmethod
    def of(cls, options: Mapping[str, Mapping[str, Any] | None] | None) -> Credentials:
        """The snapshot of ``{"source": ..., "sink": ...}`` options (itself when it is one).

        :raises ValueError: when ``options`` names other parts.
        """
        if isinstance(options, Credentials):
            return options
        options = options or {}
        unknown = sorted(set(options) - set(PARTS))
        if unknown:
            raise ValueError(f"Credentials have a 'source' and a 'sink' part, not {unknown}.")
        return cls(options.get("source"), options.get("sink"))

    def __getitem__(self, part: str) -> dict[str, Any]:
        return copy.deepcopy(self._parts[part])

    def __iter__(self) -> Iterator[str]:
        return iter(PARTS)

    def __len__(self) -> int:
        return len(PARTS)

    def __setattr__(self, name: str, value: Any) -> NoReturn:
        raise AttributeError("Credentials are a snapshot: they cannot be changed.")

    def __delattr__(self, name: str) -> NoReturn:
        raise AttributeError("Credentials are a snapshot: they cannot be changed.")

    def __repr__(self) -> str:
        keys = ", ".join(f"{part}=<{', '.join(sorted(self._parts[part])) or 'none'}>" for part in PARTS)
        return f"Credentials({keys})"

    def __copy__(self) -> Credentials:
        return self

    def __deepcopy__(self, memo: dict[int, Any]) -> Credentials:
        return self

    def __reduce__(self) -> NoReturn:
        raise TypeError("Credentials are not pickled: they cross a process boundary as JSON (to_json).")

    def to_json(self) -> str:
        """The snapshot as JSON, for a replica's standard input or a Kubernetes Secret."""
        return json.dumps(self._parts, sort_keys=True)


def read_secrets(from_stdin: bool, path: str | None = None) -> Credentials:
    """Return the job's :class:`Credentials` (empty when there are none).

    :param from_stdin: read them from the standard input (a local replica).
    :param path: read them from this file (a pod: the mounted Secret); default ``$BATCH_SCORING_SECRETS_FILE``.
    """
    path = path or os.environ.get(SECRETS_FILE_ENV)
    if from_stdin:
        text = sys.stdin.read()
    elif path:
        with open(path) as f:
            text = f.read()
    else:
        return Credentials()
    return Credentials.of(json.loads(text) if text.strip() else {})
