"""What the sinks of table formats (Delta Lake, Iceberg) share: a table at a location of its own, a run's
bookkeeping (shard reports, the lease, the manifest) under ``<table>/_batch_scoring/<run>/``, nothing left to decide
from the input.

Shared with the runtime: never imports Airflow.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any, ClassVar

from airflow_batch_scoring.io import locations
from airflow_batch_scoring.io.watermarks import TABLE_STATE_FOLDER
from airflow_batch_scoring.job import ScoringJob
from airflow_batch_scoring.specs import DataSpec, narrow

#: a run's bookkeeping folder in the table's location (readers of the table do not look there).
BOOKKEEPING = "_batch_scoring"
MANIFEST = "_manifest.json"


class TableFilesSink:
    """The part of :class:`~airflow_batch_scoring.sinks.base.Sink` every table-format sink implements alike.

    :cvar spec_type: the spec kind's class the sink narrows its spec to.
    """

    spec_type: ClassVar[type[Any]]
    spec: Any

    @classmethod
    def check_place(cls, spec: DataSpec, source: DataSpec, source_files: str | None) -> DataSpec:
        """Refuse a table at a store's root, and one that is, holds or lies inside the source's files."""
        resolved = narrow(spec, cls.spec_type)
        resolved = replace(resolved, uri=locations.normalize_location(resolved.uri, "sink").rstrip("/"))
        locations.check_sink_not_root(resolved.uri + "/")
        if source_files is not None:
            locations.check_apart(source_files, resolved.uri + "/")
        return resolved

    @staticmethod
    def staging_uri(job: ScoringJob) -> str:
        return f"{job.sink.uri.rstrip('/')}/{BOOKKEEPING}/{job.job_id}"

    @staticmethod
    def resolve(spec: DataSpec, source_format: str, detect_header: Callable[[], bool]) -> DataSpec:
        return spec

    @staticmethod
    def watermark_place(spec: DataSpec) -> tuple[str, str | None]:
        """Incremental scoring: keyed by the table's location; the state lives in its bookkeeping folder."""
        uri = spec.uri.rstrip("/")
        return f"{spec.kind}:{uri}", f"{uri}/{TABLE_STATE_FOLDER}"

    @property
    def location(self) -> str:
        return str(self.spec.uri)
