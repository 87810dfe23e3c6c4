"""Sources: where a job's rows come from (:class:`~airflow_batch_scoring.sources.base.Source`): files, SQL or Delta.

:data:`SOURCES` maps each spec kind to the source that reads it; a new kind of source adds a key there.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from airflow_batch_scoring.io.files import InputFile
from airflow_batch_scoring.sources.base import Source
from airflow_batch_scoring.specs import DataSpec


def _files() -> type[Source]:
    from airflow_batch_scoring.sources.files import FileSource

    return FileSource


def _sql() -> type[Source]:
    from airflow_batch_scoring.sources.sql import SqlSource  # SQLAlchemy only when a source is SQL

    return SqlSource


def _delta() -> type[Source]:
    from airflow_batch_scoring.sources.delta import DeltaSource  # deltalake only when a source is a Delta table

    return DeltaSource


def _iceberg() -> type[Source]:
    from airflow_batch_scoring.sources.iceberg import IcebergSource  # pyiceberg only when a source is Iceberg

    return IcebergSource


#: the source class of each spec kind (:attr:`FileSpec.kind <airflow_batch_scoring.specs.FileSpec.kind>`, ...),
#: imported when first asked for.
SOURCES: dict[str, Callable[[], type[Source]]] = {
    "files": _files, "table": _sql, "query": _sql, "delta": _delta, "iceberg": _iceberg,
}


def source_class(spec: DataSpec) -> type[Source]:
    """The source that reads the kind of data ``spec`` names."""
    return SOURCES[spec.kind]()


def open_source(spec: DataSpec, secrets: Mapping[str, Any] | None, files: Sequence[InputFile] = ()) -> Source:
    """The source a spec names, with its secret material (and, on the driver, its listing)."""
    return source_class(spec)(spec, secrets, files)
