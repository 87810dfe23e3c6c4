"""What the sources of table formats (Delta Lake, Iceberg) share: Parquet data files, no header, the passthrough
columns typed by the table's own schema.

Shared with the runtime: never imports Airflow.
"""

from __future__ import annotations

import pyarrow as pa

from airflow_batch_scoring.runtime import passthrough
from airflow_batch_scoring.schema import ModelSchema


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
