"""A SQL table or query as a source: checked and split into key ranges once, preflighted, read by range.

The database work is :class:`~airflow_batch_scoring.sources.sql_relation.SqlRelation` (columns, ranges, statements)
and :class:`~airflow_batch_scoring.sources.sql_relation.SqlReader` (a shard's rows as Arrow). A table has no listing
to compare between attempts: a SQL source is not resumable (its fingerprint is ``None``), and a retry scores it
whole again.

Shared with the runtime: never imports Airflow.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import pyarrow as pa
from sqlalchemy.exc import SQLAlchemyError

from airflow_batch_scoring.io.bad_rows.quarantine import BadRow
from airflow_batch_scoring.io.files import InputFile
from airflow_batch_scoring.io.readers.columns import ReadPlan
from airflow_batch_scoring.io.sql import connect_error, database_url, describe_table, display_url
from airflow_batch_scoring.job import Piece, ScoringJob
from airflow_batch_scoring.runtime import passthrough
from airflow_batch_scoring.schema import ModelSchema
from airflow_batch_scoring.sources.base import PREFLIGHT_ROWS, ShardReader, read_plan
from airflow_batch_scoring.sources.incremental import NewData, not_incremental
from airflow_batch_scoring.sources.sql_relation import SqlReader, SqlRelation
from airflow_batch_scoring.specs import DataSpec, QuerySpec, TableSpec, narrow_sql


class SqlSource:
    """A table or a query on one database.

    :param spec: the source spec (a :class:`~airflow_batch_scoring.specs.TableSpec` or a
        :class:`~airflow_batch_scoring.specs.QuerySpec`).
    :param secrets: the source's secret material (``{"sqlalchemy_url": ...}``).
    :param files: ignored (a SQL source has no listing); accepted so that every source is built alike.
    """

    row_errors = False
    #: what its replicas need in a model environment (model_environment="model") beside the runtime; the
    #: database's driver comes with the model's requirements (e.g. ``psycopg[binary]``).
    environment_requirements = ("sqlalchemy>=2,<3",)

    def __init__(self, spec: DataSpec, secrets: Mapping[str, Any] | None, files: Sequence[InputFile] = ()):
        self.spec = narrow_sql(spec)
        self.secrets = secrets
        self.what = describe_table(self.spec)
        self._columns: list[tuple[str, pa.DataType]] = []

    @staticmethod
    def place(spec: DataSpec) -> tuple[DataSpec, str | None]:
        return spec, None

    def listing(self) -> list[InputFile]:
        return []

    def restrict_to_new(self, since: Mapping[str, Any] | None) -> NewData:
        raise not_incremental(self.what)

    def plan(self, replicas: int, plan: ReadPlan, part_size: int) -> list[list[Piece]]:
        """Check the source's columns and cut it into ``replicas`` shards of key ranges."""
        relation = SqlRelation(self.spec, self.secrets)
        try:
            shards = relation.plan(replicas, plan)
            self._columns = list(relation._columns or [])
            return shards
        except SQLAlchemyError as err:
            raise connect_error(err, f"the source database {display_url(relation.url)}", self.spec.conn_id) from None
        finally:
            relation.close()

    def output_format(self) -> str:
        return "parquet"

    def detect_header(self, plan: ReadPlan, part_size: int) -> bool:
        return False

    def decide_passthrough(
        self, names: list[str], given: ModelSchema | None, model_columns: list[str] | None
    ) -> pa.Schema:
        return passthrough.decide("", names, given, model_columns, sql_columns=self._columns)

    def preflight(self, job: ScoringJob) -> str:
        """Read the first rows of the first non-empty shard the way a replica will.

        :raises InputError: for a missing column or a value that does not fit the model schema.
        """
        reader = SqlReader(self.spec, read_plan(job), self.secrets, batch_size=PREFLIGHT_ROWS)
        rows = 0
        try:
            rows = next((t.num_rows for pieces in job.shards for piece in pieces for t in reader.read(piece)), 0)
        finally:
            reader.close()
        return f"Preflight: read {rows:,} sample rows; {self.plan_text(job)}: OK"

    def plan_text(self, job: ScoringJob) -> str:
        """One line saying how the source was split, for the task log."""
        ranges = [piece.sql_range for pieces in job.shards for piece in pieces]
        column = next((r["column"] for r in ranges if r), None)
        if column is None:
            return (
                f"{self.what} is read by one replica (no source['partition_column'], and no numeric or date primary "
                "key to split by); set partition_column to spread it over the replicas"
                if job.replicas > 1 else f"{self.what} is read by one replica"
            )
        return f"{self.what} is split by {column!r} into {len(ranges)} range(s) over {job.replicas} replica(s)"

    def open_reader(
        self, job: ScoringJob, plan: ReadPlan, *, batch_size: int, on_bad_row: Callable[[BadRow], None] | None = None
    ) -> ShardReader:
        return SqlReader(self.spec, plan, self.secrets, batch_size=batch_size)

    def fingerprint(self, job: ScoringJob) -> str | None:
        return None

    def check_unchanged(self, job: ScoringJob) -> None:
        """A table has no listing to compare: nothing to check."""

    def describe(self, job: ScoringJob) -> dict[str, Any]:
        """The manifest's ``input``: the database (no credentials), the table or query, the ranges."""
        ranges = [piece.sql_range for pieces in job.shards for piece in pieces]
        return {
            "database": display_url(database_url(self.spec, self.secrets, "source")),
            "conn_id": self.spec.conn_id,
            "table": str(self.spec.table) if isinstance(self.spec, TableSpec) else None,
            "query": self.spec.query if isinstance(self.spec, QuerySpec) else None,
            "parameters": self.spec.parameters if isinstance(self.spec, QuerySpec) else None,
            "partition_column": next((r["column"] for r in ranges if r), None),
            "ranges": ranges,
        }
