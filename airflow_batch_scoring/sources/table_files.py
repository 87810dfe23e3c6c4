"""What the sources of table formats (Delta Lake, Iceberg) share: Parquet data files, no header, the passthrough
columns typed by the table's own schema.

Shared with the runtime: never imports Airflow.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from airflow_batch_scoring.errors import InputError
from airflow_batch_scoring.io.readers.casts import CastFailure
from airflow_batch_scoring.io.readers.columns import ColumnMap, ReadPlan, check_missing, coerce
from airflow_batch_scoring.job import Piece
from airflow_batch_scoring.runtime import passthrough
from airflow_batch_scoring.schema import ModelSchema

#: a data file's column map and the columns to read from it, given its column names
Layout = Callable[[list[str]], tuple[ColumnMap, list[str]]]


def read_piece(
    fs: Any,
    piece: Piece,
    plan: ReadPlan,
    batch_size: int,
    layout: Layout,
    complete: Callable[[pa.Table], pa.Table] | None = None,
) -> Iterator[pa.Table]:
    """The rows of a piece (row groups of one Parquet data file) in batches: the columns ``layout`` says, completed
    by ``complete`` (partition values, the filter), coerced to the model's columns.

    :raises InputError: naming the file when it is not Parquet, and the file and column of a value that does not fit.
    """
    with fs.open(fs._strip_protocol(piece.path), "rb") as f:
        try:
            parquet = pq.ParquetFile(f)
        except (pa.ArrowInvalid, OSError) as err:
            raise InputError(f"is not a readable Parquet file ({err}).", path=piece.path) from err
        columns, read = layout(parquet.schema_arrow.names)
        groups = list(piece.row_groups) if piece.row_groups is not None else list(range(parquet.num_row_groups))
        for batch in parquet.iter_batches(batch_size=batch_size, row_groups=groups, columns=read):
            table = pa.Table.from_batches([batch])
            if complete is not None:
                table = complete(table)
            if not table.num_rows:
                continue
            try:
                table = coerce(table, columns)
                if plan.rejects:
                    check_missing(table, columns, plan)
            except CastFailure as failure:
                raise InputError(failure.message(), path=piece.path, column=failure.column) from None
            yield columns.output(table)


class TableFilesSource:
    """The part of :class:`~airflow_batch_scoring.sources.base.Source` every table-format source implements alike.

    :ivar _schema: the table's Arrow schema, once :meth:`listing` read it (``None`` before).
    """

    _schema: pa.Schema | None = None

    def output_format(self) -> str:
        return "parquet"

    def detect_header(self, plan: object, part_size: int) -> bool:
        return False

    def decide_passthrough(
        self, names: list[str], given: ModelSchema | None, model_columns: list[str] | None
    ) -> pa.Schema:
        schema = self._schema or pa.schema([])
        return passthrough.decide("", names, given, model_columns, sql_columns=[(f.name, f.type) for f in schema])
