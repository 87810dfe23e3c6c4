"""Reading the data files of an Iceberg source that has ``columns`` or a ``filter``: the pieces (row groups) read with
only the columns needed, the rows the filter excludes dropped, the model's columns coerced.

The files were kept or pruned by the filter when the driver planned the scan
(:meth:`~airflow_batch_scoring.sources.iceberg.IcebergSource.listing`); a kept file may still hold rows the filter
excludes, so every condition is applied to the rows here too.

Shared with the runtime: never imports Airflow.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pyarrow as pa

from airflow_batch_scoring.errors import InputError
from airflow_batch_scoring.io.readers.columns import (
    ColumnMap,
    MissingColumn,
    ReadPlan,
    resolve_columns,
)
from airflow_batch_scoring.job import Piece
from airflow_batch_scoring.sources.table_files import read_piece
from airflow_batch_scoring.sources.table_filter import arrow_filter
from airflow_batch_scoring.specs import IcebergSpec


def missing_column(table: str) -> MissingColumn:
    def missing(kind: str, name: str, available: list[str]) -> InputError:
        return InputError(
            f"the Iceberg table {table} has no {kind} column {name!r} (among the columns read: {available}). Fix "
            "the column names, or source['columns']."
        )

    return missing


class IcebergShardReader:
    """Reads pieces of an Iceberg table's data files: the columns needed (within ``source['columns']``), the rows
    ``source['filter']`` keeps."""

    bytes_done = 0

    def __init__(self, spec: IcebergSpec, plan: ReadPlan, fs: Any, batch_size: int):
        self.spec = spec
        self.plan = plan
        self.fs = fs
        self.batch_size = batch_size
        self.filter = arrow_filter(spec.filter) if spec.filter else None
        self._layouts: dict[tuple[str, ...], tuple[ColumnMap, list[str]]] = {}

    def _layout(self, names: list[str]) -> tuple[ColumnMap, list[str]]:
        """The column map of a file with columns ``names``, and the columns to read from it."""
        key = tuple(names)
        if key not in self._layouts:
            chosen = set(self.spec.columns or names)
            available = [n for n in names if n in chosen]
            columns = resolve_columns(available, self.plan, self.spec.uri, missing=missing_column(self.spec.table))
            wanted = {*columns.source_names, *(c[0] for c in self.spec.filter or ())}
            self._layouts[key] = (columns, [n for n in names if n in wanted])
        return self._layouts[key]

    def read(self, piece: Piece) -> Iterator[pa.Table]:
        keep = self.filter
        return read_piece(self.fs, piece, self.plan, self.batch_size, self._layout,
                          (lambda table: table.filter(keep)) if keep is not None else None)

    def close(self) -> None:
        """Nothing stays open between pieces."""
