"""SQL sinks, replica side: each replica writes its rows into its own staging table, then its report.

Staging tables live next to the target (same schema) and are named by the run and the attempt:
``_bs_<run>_<attempt>_s00001`` for shard 1, ``_bs_<run>_<attempt>_reports`` for the shards' reports (made by the
driver before the replicas start). A replica that starts (or starts again) first drops its own staging table and
report, so a re-run shard never leaves rows twice. Rows go in with PostgreSQL's ``COPY`` (CSV written by Arrow)
where the driver is psycopg, and as batched ``executemany`` inserts elsewhere; each batch is committed on its own,
so SQLite's single write lock is held briefly and replicas take turns. The report, written last, marks the shard as
complete; the commit (:mod:`airflow_batch_scoring.sinks.sql_commit`) moves the staged rows into the target.

Shared with the runtime: never imports Airflow.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
from collections.abc import Mapping
from typing import Any

import pyarrow as pa
import pyarrow.csv as pa_csv
import sqlalchemy as sa
from sqlalchemy.exc import SQLAlchemyError

from airflow_batch_scoring.errors import InputError
from airflow_batch_scoring.io.bad_rows.quarantine import ErrorOutput
from airflow_batch_scoring.io.sql import (
    connect_error,
    database_url,
    db_message,
    display_url,
    make_engine,
    normalize_arrow,
    quote_column,
    quote_table,
    sa_columns,
)
from airflow_batch_scoring.job import ScoringJob
from airflow_batch_scoring.specs import TableName, TableSpec, narrow

STAGING_PREFIX = "_bs_"


def run_tag(job: ScoringJob) -> str:
    """A short, stable name of the run (every attempt shares it)."""
    return hashlib.sha256(job.job_id.encode()).hexdigest()[:10]


def attempt_tag(job: ScoringJob) -> str:
    return re.sub(r"[^a-z0-9]+", "", job.attempt.lower())[:12] or "a"


def run_prefix(job: ScoringJob) -> str:
    """The prefix of every staging table of the run, whatever the attempt."""
    return f"{STAGING_PREFIX}{run_tag(job)}_"


def attempt_prefix(job: ScoringJob) -> str:
    return f"{run_prefix(job)}{attempt_tag(job)}_"


def staging_table(job: ScoringJob, shard: int) -> str:
    """Shard ``shard``'s staging table (without schema)."""
    return f"{attempt_prefix(job)}s{shard:05d}"


def reports_table(job: ScoringJob) -> str:
    return f"{attempt_prefix(job)}reports"


def staging_location(job: ScoringJob) -> str:
    """What the job's ``staging_uri`` says for a SQL sink: the staging tables' schema and prefix."""
    schema = narrow(job.sink, TableSpec).table.schema
    return f"sql:{schema + '.' if schema else ''}{attempt_prefix(job)}*"


def reports_sa_table(job: ScoringJob, metadata: sa.MetaData | None = None) -> sa.Table:
    schema = narrow(job.sink, TableSpec).table.schema
    return sa.Table(
        reports_table(job),
        metadata or sa.MetaData(),
        sa.Column("shard", sa.Integer(), primary_key=True, autoincrement=False),
        sa.Column("report", sa.Text(), nullable=False),
        schema=schema,
    )


class SqlStagingWriter:
    """Writes one shard's rows into its staging table (the part writers' interface: write, close, abort).

    :param job: the job; its sink names the target table (whose schema holds the staging tables).
    :param shard: the shard this replica scores.
    :param secrets: the sink's secret material (``{"sqlalchemy_url": ...}``).
    """

    def __init__(self, job: ScoringJob, shard: int, secrets: Mapping[str, Any] | None):
        self.job = job
        self.shard = shard
        self.url = database_url(narrow(job.sink, TableSpec), secrets, "sink")
        self.where = f"the sink database {display_url(self.url)}"
        self.engine = make_engine(self.url, write=True, what=self.where)
        self.schema = narrow(job.sink, TableSpec).table.schema
        self.name = staging_table(job, shard)
        self.rows = 0
        #: a SQL sink does not quarantine bad rows (refused before the replicas start).
        self.quarantine: ErrorOutput | None = None
        self._table: sa.Table | None = None
        self._schema: pa.Schema | None = None
        self._copy = self.engine.dialect.name == "postgresql" and self.engine.dialect.driver in ("psycopg", "psycopg2")
        with self._begin() as connection:
            self._table_for_drop().drop(connection, checkfirst=True)
            reports = reports_sa_table(job)
            connection.execute(sa.delete(reports).where(reports.c.shard == shard))

    def _begin(self) -> Any:
        try:
            return self.engine.begin()
        except SQLAlchemyError as err:
            raise connect_error(err, self.where, self.job.sink.conn_id) from None

    def _table_for_drop(self) -> sa.Table:
        return sa.Table(self.name, sa.MetaData(), schema=self.schema)

    @property
    def qualified(self) -> TableName:
        """The staging table's name, in the target's schema."""
        return TableName(self.schema, self.name)

    def write(self, table: pa.Table) -> None:
        table = normalize_arrow(table)
        try:
            with self._begin() as connection:
                if self._table is None:
                    self._schema = table.schema
                    self._table = sa.Table(self.name, sa.MetaData(), *sa_columns(table.schema), schema=self.schema)
                    self._table.create(connection)
                elif table.schema != self._schema:
                    table = table.cast(self._schema)
                if table.num_rows:
                    if self._copy:
                        self._copy_rows(connection, table)
                    else:
                        connection.execute(self._table.insert(), table.to_pylist())
        except SQLAlchemyError as err:
            raise InputError(
                f"writing the staged rows of shard {self.shard} into {self.qualified} failed: {db_message(err)}. "
                "Check that the sink connection's user may create tables in the target's schema."
            ) from None
        self.rows += table.num_rows

    def _copy_rows(self, connection: sa.Connection, table: pa.Table) -> None:
        """PostgreSQL: one ``COPY ... FROM STDIN (FORMAT csv)`` per batch, the CSV written by Arrow (an unquoted empty
        field is NULL, a quoted one an empty string; floats in shortest round-trip form)."""
        buffer = io.BytesIO()
        pa_csv.write_csv(table, buffer, write_options=pa_csv.WriteOptions(include_header=False))
        dialect = self.engine.dialect
        columns = ", ".join(quote_column(dialect, name) for name in table.column_names)
        sql = f"COPY {quote_table(dialect, self.qualified)} ({columns}) FROM STDIN WITH (FORMAT csv)"
        raw = connection.connection.driver_connection
        cursor = raw.cursor()  # type: ignore[union-attr]
        try:
            if dialect.driver == "psycopg":
                with cursor.copy(sql) as copy:
                    copy.write(buffer.getvalue())
            else:
                buffer.seek(0)
                cursor.copy_expert(sql, buffer)
        finally:
            cursor.close()

    def write_report(self, report: Mapping[str, Any]) -> None:
        """Record the shard's report: the shard is complete."""
        reports = reports_sa_table(self.job)
        with self._begin() as connection:
            connection.execute(sa.delete(reports).where(reports.c.shard == self.shard))
            connection.execute(sa.insert(reports).values(shard=self.shard, report=json.dumps(dict(report))))

    @property
    def parts(self) -> list[str]:
        """The staging table, when rows were written."""
        return [self.name] if self.rows else []

    def close(self) -> int:
        self.engine.dispose()
        return self.rows

    def abort(self) -> None:
        """Stop writing; the driver drops the run's staging tables."""
        self.engine.dispose()
