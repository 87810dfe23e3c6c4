"""Sources: where a job's rows come from (:class:`~airflow_batch_scoring.sources.base.Source`), files or SQL."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from airflow_batch_scoring.io.files import InputFile
from airflow_batch_scoring.job import DataSpec
from airflow_batch_scoring.sources.base import Source


def source_class(spec: DataSpec) -> type[Source]:
    """The source a spec names: a table or a query (:mod:`~.sources.sql`, imported only then), else files."""
    if spec.table or spec.query:
        from airflow_batch_scoring.sources.sql import SqlSource

        return SqlSource
    from airflow_batch_scoring.sources.files import FileSource

    return FileSource


def open_source(spec: DataSpec, secrets: Mapping[str, Any] | None, files: Sequence[InputFile] = ()) -> Source:
    """The source a spec names, with its secret material (and, on the driver, its listing)."""
    return source_class(spec)(spec, secrets, files)  # type: ignore[call-arg]
