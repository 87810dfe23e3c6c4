"""Shard reports and part names: what a replica leaves behind, light to import (no pandas, no model libraries).

The driver, the commit and the local launcher need these without paying for the engine's imports.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from typing import Any

from airflow_batch_scoring.formats import COMPRESSION_SUFFIXES

EXTENSIONS = {"csv": "csv", "jsonl": "jsonl", "parquet": "parquet"}


def part_name(shard: int, fmt: str, attempt: str | None = None, compression: str | None = None) -> str:
    """The file name of shard ``shard``'s part: published as ``part-00001.csv`` (``.csv.gz`` when compressed), staged
    with the attempt that wrote it (``part-00001.try2.csv``) so that two attempts of one run never write the same
    object."""
    middle = f".{attempt}" if attempt else ""
    suffix = f".{COMPRESSION_SUFFIXES[compression]}" if compression else ""
    return f"part-{shard:05d}{middle}.{EXTENSIONS[fmt]}{suffix}"


def published_name(staged: str) -> str:
    """The name a staged part is published under: ``part-00001.try2.csv.gz`` -> ``part-00001.csv.gz``."""
    head, _, rest = staged.partition(".")
    if not rest:
        return staged
    for extension in EXTENSIONS.values():
        for suffix in ("", *(f".{s}" for s in COMPRESSION_SUFFIXES.values())):
            if rest == f"{extension}{suffix}" or rest.endswith(f".{extension}{suffix}"):
                return f"{head}.{extension}{suffix}"
    return staged


def report_name(shard: int) -> str:
    """The file name of shard ``shard``'s report, written last."""
    return f"_shard-{shard:05d}.json"


@dataclass
class ShardReport:
    """What one replica did; read back by the driver for the manifest and the commit.

    ``read_s``, ``predict_s`` and ``write_s`` are the seconds each stage spent working (not waiting on the others);
    they overlap in time, so their sum may exceed ``duration_s``. ``load_s`` is the model's loading time, part of
    ``duration_s``; reading may overlap it (when the input schema is known without the model).
    """

    shard: int
    rows_in: int = 0
    rows_out: int = 0
    parts: list[str] = field(default_factory=list)
    duration_s: float = 0.0
    load_s: float = 0.0
    read_s: float = 0.0
    predict_s: float = 0.0
    write_s: float = 0.0
    input_schema: list[dict[str, str]] | None = None
    output_columns: list[dict[str, str]] | None = None
    #: rows set aside by on_bad_rows="quarantine" (not in rows_in), by reason code, with the first few described.
    rows_bad: int = 0
    bad_reasons: dict[str, int] = field(default_factory=dict)
    bad_examples: list[str] = field(default_factory=list)
    #: the staged error parts (``_errors/part-00000.try1.jsonl``), relative to the staging folder like ``parts``.
    error_parts: list[str] = field(default_factory=list)
    #: a metrics job: the shard's statistics (see :mod:`airflow_batch_scoring.metrics.shard`), else ``None``.
    metrics: dict[str, Any] | None = None
    #: the replica's own Python: its interpreter, version and the versions of the model's requirements it found.
    python: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def threads_per_replica(replicas: int) -> int:
    """How many compute threads each of ``replicas`` local processes should use on this machine."""
    return max(1, (os.cpu_count() or 1) // max(replicas, 1))
