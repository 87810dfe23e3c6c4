"""A SQL table as a sink: replicas stage their rows in staging tables, and one transaction commits the run.

The lifecycle of :class:`~airflow_batch_scoring.sinks.base.Sink`: :meth:`SqlSink.check` (the database answers, the
target may be written as asked) -> :meth:`SqlSink.begin_attempt` (an attempt drops what earlier attempts of its run
left behind, except the staging tables of shards they completed with the same fingerprint, and creates its reports
table) -> the replicas' :class:`~airflow_batch_scoring.sinks.sql_staging.SqlStagingWriter` -> :meth:`SqlSink.publish`
(:mod:`~airflow_batch_scoring.sinks.sql_commit`: one transaction) or :meth:`SqlSink.discard` (the target untouched).

Shared with the runtime: never imports Airflow.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import SQLAlchemyError

from airflow_batch_scoring.errors import ConfigurationError, InputError, ReplicaError
from airflow_batch_scoring.io import locations
from airflow_batch_scoring.io.sql import connect_error, database_url, db_message, display_url
from airflow_batch_scoring.job import ScoringJob
from airflow_batch_scoring.runtime.shards import ShardReport
from airflow_batch_scoring.sinks.base import Published, Resumption, ShardWriter
from airflow_batch_scoring.sinks.sql_commit import BOOKKEEPING, bookkeeping_table, drop_tables, engine_of, publish
from airflow_batch_scoring.sinks.sql_staging import (
    SqlStagingWriter,
    attempt_prefix,
    reports_sa_table,
    reports_table,
    run_prefix,
    staging_location,
)
from airflow_batch_scoring.specs import DataSpec, SqlSpec, TableSpec, narrow


def sink_location(spec: SqlSpec, secrets: Mapping[str, Any] | None) -> str:
    """``postgresql://host:port/db#schema.table``: the target without credentials (XCom's ``output_uri``; a query
    is its database alone)."""
    database = display_url(database_url(spec, secrets, "sink"))
    return f"{database}#{spec.table}" if isinstance(spec, TableSpec) else database


def _columns_of(inspector: Any, table: str, schema: str | None) -> list[str]:
    return [c["name"] for c in inspector.get_columns(table, schema=schema)]


def check_sink(spec: TableSpec, secrets: Mapping[str, Any] | None, if_exists: str = "replace") -> None:
    """Before any replica starts: the database answers, the schema exists, an existing target has the merge keys,
    and ``if_exists="fail"`` finds no target.

    :raises InputError: when the database cannot be reached or the schema does not exist.
    :raises ConfigurationError: for a target that may not be written as asked.
    """
    engine, where = engine_of(spec, secrets, write=False)
    schema, table = spec.table.schema, spec.table.name
    try:
        with engine.connect() as connection:
            inspector = sa.inspect(connection)
            if schema is not None and schema not in inspector.get_schema_names():
                raise InputError(
                    f"the sink's schema {schema!r} does not exist in {where}; create it, or fix sink['table'] "
                    f"({str(spec.table)!r})."
                )
            if not inspector.has_table(table, schema=schema):
                return
            if if_exists == "fail":
                raise ConfigurationError(
                    f"The sink table {spec.table} already exists and if_exists='fail'; drop it, write elsewhere, or "
                    "set if_exists='replace' (then sink['mode'] decides: append, replace or upsert)."
                )
            if spec.mode == "upsert":
                columns = _columns_of(inspector, table, schema)
                lowered = {c.lower() for c in columns}
                missing = [k for k in spec.merge_keys or [] if k.lower() not in lowered]
                if missing:
                    raise ConfigurationError(
                        f"The sink table {spec.table} has no column(s) {missing} named in sink['merge_keys']; its "
                        f"columns are {columns}."
                    )
    except SQLAlchemyError as err:
        raise connect_error(err, where, spec.conn_id) from None
    finally:
        engine.dispose()


#: the reports table's row holding the run's fingerprint (shards are numbered from 0).
PLAN_ROW = -1


def _earlier_reports(
    connection: sa.Connection, job: ScoringJob, names: list[str], fingerprint: str
) -> tuple[dict[int, ShardReport], str | None]:
    """The completed shards recorded by the run's earlier attempts whose fingerprint is ``fingerprint``."""
    schema = narrow(job.sink, TableSpec).table.schema
    completed: dict[int, ShardReport] = {}
    reason = None
    current = reports_table(job)
    for name in sorted(n for n in names if n.endswith("_reports") and n != current):
        table = sa.Table(name, sa.MetaData(), sa.Column("shard", sa.Integer()), sa.Column("report", sa.Text()),
                         schema=schema)
        rows: list[Any] = list(connection.execute(sa.select(table.c.shard, table.c.report)).all())
        plan = next((json.loads(text) for shard, text in rows if shard == PLAN_ROW), None)
        if plan is None or plan.get("fingerprint") != fingerprint:
            reason = "the model, the input listing or the options changed since the earlier attempt"
            continue
        for shard, text in rows:
            report = ShardReport(**json.loads(text)) if shard != PLAN_ROW else None
            if report is not None and 0 <= shard < job.replicas and all(part in names for part in report.parts):
                completed.setdefault(shard, report)
    return completed, (reason if not completed else None)


def begin_attempt(
    job: ScoringJob, secrets: Mapping[str, Any] | None, fingerprint: str | None = None
) -> tuple[Resumption, list[str]]:
    """Drop what earlier attempts of the run left behind (except the shards they completed, when ``fingerprint`` is
    given and matches theirs), create this attempt's reports table (with the fingerprint and the reused shards'
    reports) and the bookkeeping table. SQLite databases are switched to WAL journaling, so that replicas can read
    while another writes.

    :returns: the shards reused (their staging tables are kept; their reports are copied into this attempt's reports
        table), and the staging tables dropped (earlier attempts' work that is not reused).
    """
    sink = narrow(job.sink, TableSpec)
    engine, where = engine_of(sink, secrets)
    schema = sink.table.schema
    try:
        if engine.dialect.name == "sqlite":
            raw = engine.raw_connection()
            try:
                raw.driver_connection.execute("PRAGMA journal_mode=WAL")  # type: ignore[union-attr]
            finally:
                raw.close()
        with engine.begin() as connection:
            names = [n for n in sa.inspect(connection).get_table_names(schema=schema) if n.startswith(run_prefix(job))]
            resumption, dropped = Resumption(), []
            if fingerprint is not None:
                resumption.completed, resumption.reason = _earlier_reports(connection, job, names, fingerprint)
            keep = {part for report in resumption.completed.values() for part in report.parts}
            for name in names:
                if name not in keep:
                    sa.Table(name, sa.MetaData(), schema=schema).drop(connection, checkfirst=True)
                    if not name.endswith("_reports"):
                        dropped.append(name)
            reports = reports_sa_table(job)
            reports.create(connection)
            rows = [{"shard": PLAN_ROW, "report": json.dumps({"fingerprint": fingerprint})}]
            rows += [{"shard": shard, "report": json.dumps(report.to_dict())}
                     for shard, report in sorted(resumption.completed.items())]
            connection.execute(sa.insert(reports), rows)
            bookkeeping_table(schema).create(connection, checkfirst=True)
        return resumption, dropped
    except SQLAlchemyError as err:
        raise InputError(
            f"cannot prepare the staging tables in {where}: {db_message(err)}. The sink connection's user must be "
            f"able to create and drop tables in the target's schema ({schema or 'the default schema'})."
        ) from None
    finally:
        engine.dispose()


def read_reports(job: ScoringJob, secrets: Mapping[str, Any] | None) -> list[ShardReport]:
    """Read every shard's report from the reports table.

    :raises ReplicaError: naming the shards whose report is missing (they did not finish).
    """
    sink = narrow(job.sink, TableSpec)
    engine, where = engine_of(sink, secrets, write=False)
    reports_table = reports_sa_table(job)
    try:
        with engine.connect() as connection:
            rows: list[Any] = list(connection.execute(sa.select(reports_table.c.shard, reports_table.c.report)).all())
    except SQLAlchemyError as err:
        raise connect_error(err, where, sink.conn_id) from None
    finally:
        engine.dispose()
    found = {shard: ShardReport(**json.loads(text)) for shard, text in rows if shard != PLAN_ROW}
    missing = [shard for shard in range(job.replicas) if shard not in found]
    if missing:
        raise ReplicaError(f"Shard(s) {missing} did not finish (no report); nothing was written to {sink.table}.")
    return [found[shard] for shard in range(job.replicas)]


def discard(job: ScoringJob, secrets: Mapping[str, Any] | None) -> None:
    """Drop this attempt's staging and reports tables, and the earlier attempts' staging tables it reused (best
    effort: never hides the error that led here)."""
    sink = narrow(job.sink, TableSpec)
    try:
        engine, _ = engine_of(sink, secrets)
    except ConfigurationError:
        return
    schema = sink.table.schema
    try:
        with engine.begin() as connection:
            drop_tables(connection, schema, attempt_prefix(job))
            for name in _reused_tables(connection, job):
                sa.Table(name, sa.MetaData(), schema=schema).drop(connection, checkfirst=True)
    except SQLAlchemyError:
        pass
    finally:
        engine.dispose()


def _reused_tables(connection: sa.Connection, job: ScoringJob) -> list[str]:
    """The staging tables of earlier attempts that this attempt's reports name (the shards it resumed)."""
    reports = reports_sa_table(job)
    if not sa.inspect(connection).has_table(reports.name, schema=reports.schema):
        return []
    rows: list[Any] = list(connection.execute(sa.select(reports.c.shard, reports.c.report)).all())
    parts = [part for shard, text in rows if shard != PLAN_ROW for part in json.loads(text).get("parts", [])]
    return [part for part in parts if not part.startswith(attempt_prefix(job))]



class SqlSink:
    """A table on one database (``append``, ``replace`` or ``upsert``).

    :param job: the job; its sink names the table and the mode.
    :param secrets: the sink's secret material (``{"sqlalchemy_url": ...}``).
    """

    #: what its replicas need in a model environment beside the runtime (see :class:`SqlSource`).
    environment_requirements = ("sqlalchemy>=2,<3",)

    def __init__(self, job: ScoringJob, secrets: Mapping[str, Any] | None):
        self.job = job
        self.spec = narrow(job.sink, TableSpec)
        self.secrets = secrets

    @staticmethod
    def precheck(spec: DataSpec, secrets: Mapping[str, Any] | None) -> None:
        check_sink(narrow(spec, TableSpec), secrets)

    @staticmethod
    def check_place(spec: DataSpec, source: DataSpec, source_files: str | None) -> DataSpec:
        """Refuse a target that replaces the source table."""
        target = narrow(spec, TableSpec)
        if isinstance(source, TableSpec):
            locations.check_tables_apart(
                str(source.table), (source.conn_id, source.uri), str(target.table), (target.conn_id, target.uri),
                target.mode,
            )
        return target

    @staticmethod
    def staging_uri(job: ScoringJob) -> str:
        return staging_location(job)

    @staticmethod
    def resolve(spec: DataSpec, source_format: str, detect_header: Callable[[], bool]) -> DataSpec:
        """A table takes the output's columns as they are: nothing to decide."""
        return spec

    @staticmethod
    def watermark_place(spec: DataSpec) -> tuple[str, str | None]:
        from airflow_batch_scoring.sinks.incremental import sql_place

        return sql_place(spec)

    @staticmethod
    def published(spec: DataSpec, secrets: Mapping[str, Any] | None, job_id: str) -> bool:
        from airflow_batch_scoring.sinks.incremental import sql_published

        return sql_published(spec, secrets, job_id)

    @property
    def location(self) -> str:
        return sink_location(self.spec, self.secrets)

    @property
    def into(self) -> str:
        return f" into {self.spec.table} ({self.spec.mode})"

    def check(self, if_exists: str) -> None:
        if self.job.on_bad_rows != "fail":
            raise ConfigurationError("on_bad_rows='quarantine' is not supported with a SQL sink yet; use 'fail'.")
        check_sink(self.spec, self.secrets, if_exists)

    def resume_publish(self, if_exists: str, log: Callable[[str], None]) -> bool:
        return False  # the commit is one transaction: it never stops part-way

    def begin_attempt(self, fingerprint: str | None, *, reuse: bool, log: Callable[[str], None]) -> Resumption:
        resumption, dropped = begin_attempt(self.job, self.secrets, fingerprint if reuse else None)
        if dropped:
            log(f"Dropped {len(dropped)} staging table(s) an earlier attempt of this run left behind")
        return resumption

    def open_writer(self, shard: int) -> ShardWriter:
        return SqlStagingWriter(self.job, shard, self.secrets)

    def read_reports(self) -> list[ShardReport]:
        return read_reports(self.job, self.secrets)

    def describe(self) -> dict[str, Any]:
        spec = self.spec
        return {"database": display_url(database_url(spec, self.secrets, "sink")), "conn_id": spec.conn_id,
                "table": str(spec.table), "mode": spec.mode,
                "merge_keys": list(spec.merge_keys) if spec.merge_keys is not None else None}

    def finish_pending(self, if_exists: str) -> Published | None:
        return None

    def publish(
        self, reports: list[ShardReport], manifest: Mapping[str, Any], if_exists: str, log: Callable[[str], None]
    ) -> Published:
        details = publish(self.job, reports, manifest, self.secrets, log)
        location = self.location
        spec = self.spec
        return Published(
            manifest=dict(manifest),
            output_uri=location,
            manifest_uri=f"{location.rsplit('#', 1)[0]}#{BOOKKEEPING}?run_id={self.job.job_id}",
            parts=len([p for r in reports for p in r.parts]),
            target=(f"{spec.table} ({spec.mode}: {details['inserted']:,} inserted, {details['updated']:,} updated, "
                    f"{details['deleted']:,} deleted)"),
            extra={"sql": details},
        )

    def discard(self) -> None:
        discard(self.job, self.secrets)
