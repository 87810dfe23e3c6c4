"""Sinks: where a job's output goes (:class:`~airflow_batch_scoring.sinks.base.Sink`), a file folder or a SQL table."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from airflow_batch_scoring.job import DataSpec, ScoringJob
from airflow_batch_scoring.sinks.base import Sink


def sink_class(spec: DataSpec) -> type[Sink]:
    """The sink a spec names: a table (:mod:`~.sinks.sql`, imported only then), else a folder of files."""
    if spec.table:
        from airflow_batch_scoring.sinks.sql import SqlSink

        return SqlSink
    from airflow_batch_scoring.sinks.files import FileSink

    return FileSink


def open_sink(job: ScoringJob, secrets: Mapping[str, Any] | None) -> Sink:
    """The job's sink, with the sink's secret material."""
    return sink_class(job.sink)(job, secrets)  # type: ignore[call-arg]
