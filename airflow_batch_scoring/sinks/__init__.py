"""Sinks: where a job's output goes (:class:`~airflow_batch_scoring.sinks.base.Sink`), a file folder or a SQL table.

:data:`SINKS` maps each spec kind to the sink that writes it; a new kind of sink (a Delta or Iceberg table) adds a
key there.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from airflow_batch_scoring.job import ScoringJob
from airflow_batch_scoring.sinks.base import Sink
from airflow_batch_scoring.specs import DataSpec


def _files() -> type[Sink]:
    from airflow_batch_scoring.sinks.files import FileSink

    return FileSink


def _table() -> type[Sink]:
    from airflow_batch_scoring.sinks.sql import SqlSink  # SQLAlchemy only when a sink is SQL

    return SqlSink


def _delta() -> type[Sink]:
    from airflow_batch_scoring.sinks.delta import DeltaSink  # deltalake only when a sink is a Delta table

    return DeltaSink


def _iceberg() -> type[Sink]:
    from airflow_batch_scoring.sinks.iceberg import IcebergSink  # pyiceberg only when a sink is Iceberg

    return IcebergSink


#: the sink class of each spec kind, imported when first asked for (a query is never a sink).
SINKS: dict[str, Callable[[], type[Sink]]] = {"files": _files, "table": _table, "delta": _delta, "iceberg": _iceberg}


def sink_class(spec: DataSpec) -> type[Sink]:
    """The sink that writes the kind of data ``spec`` names."""
    return SINKS[spec.kind]()


def open_sink(job: ScoringJob, secrets: Mapping[str, Any] | None) -> Sink:
    """The job's sink, with the sink's secret material."""
    return sink_class(job.sink)(job, secrets)
