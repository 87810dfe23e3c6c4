"""SQL sinks, the commit: the staged rows of a run move into the target table in ONE transaction.

The commit moves every staged row into the target table inside a single transaction, so a reader sees the target
either as it was or with the whole run in it, never half of it:

- ``append``: ``INSERT INTO target SELECT ... FROM <staging tables>``;
- ``replace``: ``DELETE FROM target`` then the same insert: the old rows stay visible to readers until the commit,
  and the table keeps its definition, indexes, grants and dependent views (a rename swap would lose them);
- ``upsert``: rows whose ``merge_keys`` exist are updated, the others inserted: ``INSERT ... ON CONFLICT DO UPDATE``
  (PostgreSQL, SQLite) when a unique index or key covers exactly the merge keys, otherwise ``UPDATE ... FROM`` then
  ``INSERT ... WHERE NOT EXISTS`` (with the table locked against other writers on PostgreSQL). Two input rows with
  the same keys are refused (which one should win is not defined).

A missing target is created from the output columns (the seven types mapped to SQL types, every column nullable;
for ``upsert`` with a unique index on the merge keys). The same transaction records the run in the bookkeeping table
``batch_scoring_runs`` (next to the target) with its manifest and counts; an ``append`` whose run id is already
recorded there for this target (a retry after a commit whose success was lost) appends nothing again.

A failed or killed run never reaches the commit: the target is untouched, and the run's staging tables are dropped
(by this attempt on failure, or by the next attempt of the run when the worker itself was killed; see
:mod:`airflow_batch_scoring.sinks.sql`).

Shared with the runtime: never imports Airflow.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping
from datetime import datetime, timezone
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from airflow_batch_scoring.errors import ConfigurationError, InputError
from airflow_batch_scoring.io.sql import database_url, db_message, display_url, make_engine
from airflow_batch_scoring.job import ScoringJob
from airflow_batch_scoring.runtime.shards import ShardReport
from airflow_batch_scoring.sinks.sql_staging import attempt_prefix
from airflow_batch_scoring.specs import TableSpec, narrow

BOOKKEEPING = "batch_scoring_runs"


def bookkeeping_table(schema: str | None, metadata: sa.MetaData | None = None) -> sa.Table:
    """One row per committed run and target: when, which attempt, the counts and the manifest (JSON)."""
    return sa.Table(
        BOOKKEEPING,
        metadata or sa.MetaData(),
        sa.Column("run_id", sa.String(255), primary_key=True),
        sa.Column("target", sa.String(255), primary_key=True),
        sa.Column("attempt", sa.String(64)),
        sa.Column("mode", sa.String(16)),
        sa.Column("committed_at", sa.DateTime()),
        sa.Column("rows_in", sa.BigInteger()),
        sa.Column("rows_out", sa.BigInteger()),
        sa.Column("inserted", sa.BigInteger()),
        sa.Column("updated", sa.BigInteger()),
        sa.Column("deleted", sa.BigInteger()),
        sa.Column("manifest", sa.Text()),
        schema=schema,
    )


def engine_of(spec: TableSpec, secrets: Mapping[str, Any] | None, write: bool = True) -> tuple[sa.Engine, str]:
    url = database_url(spec, secrets, "sink")
    where = f"the sink database {display_url(url)}"
    return make_engine(url, write=write, what=where), where


def drop_tables(connection: sa.Connection, schema: str | None, prefix: str) -> list[str]:
    names = [n for n in sa.inspect(connection).get_table_names(schema=schema) if n.startswith(prefix)]
    for name in names:
        sa.Table(name, sa.MetaData(), schema=schema).drop(connection, checkfirst=True)
    return names


def _unique_on(inspector: Any, table: str, schema: str | None, keys: set[str]) -> bool:
    """Whether a primary key, unique constraint or unique index covers exactly ``keys`` (lower-cased)."""
    candidates = [inspector.get_pk_constraint(table, schema=schema).get("constrained_columns") or []]
    candidates += [u["column_names"] for u in inspector.get_unique_constraints(table, schema=schema)]
    candidates += [i["column_names"] for i in inspector.get_indexes(table, schema=schema) if i.get("unique")]
    return any({c.lower() for c in columns if c} == keys for columns in candidates)


def _same_type(left: Any, right: Any, dialect: sa.Dialect) -> bool:
    try:
        return str(left.compile(dialect=dialect)) == str(right.compile(dialect=dialect))
    except Exception:  # a reflected type without a DDL form here
        return False


class _Commit:
    """The one transaction that moves a run's staged rows into the target."""

    def __init__(self, job: ScoringJob, connection: sa.Connection, stages: list[str], log: Callable[[str], None]):
        self.job = job
        self.spec = narrow(job.sink, TableSpec)
        self.connection = connection
        self.dialect = connection.dialect
        self.schema, self.name = self.spec.table.schema, self.spec.table.name
        self.stages = stages
        self.log = log
        self.metadata = sa.MetaData()
        self.inspector = sa.inspect(connection)
        self.counts = {"inserted": 0, "updated": 0, "deleted": 0}
        self.created = False

    def _reflect(self, name: str) -> sa.Table:
        return sa.Table(name, self.metadata, schema=self.schema, autoload_with=self.connection)

    def target(self, staged: list[sa.Table]) -> tuple[sa.Table, dict[str, str]]:
        """The target table (created when missing) and the staged column -> target column mapping."""
        names = [c.name for c in staged[0].columns]
        if not self.inspector.has_table(self.name, schema=self.schema):
            columns = [sa.Column(c.name, c.type, nullable=True) for c in staged[0].columns]
            target = sa.Table(self.name, self.metadata, *columns, schema=self.schema)
            if self.spec.mode == "upsert":
                keys = self._keys({n.lower(): n for n in names})
                digest = hashlib.sha256(f"{self.schema}.{self.name}".encode()).hexdigest()[:8]
                sa.Index(f"{self.name[:40]}_{digest}_merge_keys", *[target.c[k] for k in keys], unique=True)
            target.create(self.connection)
            self.created = True
            self.log(f"Created the table {self.spec.table} from the output columns")
            return target, {n: n for n in names}
        target = self._reflect(self.name)
        by_key = {c.name.lower(): c.name for c in target.columns}
        missing = [n for n in names if n.lower() not in by_key]
        if missing:
            raise ConfigurationError(
                f"The sink table {self.spec.table} has no column(s) {missing} for the output column(s) of the same "
                f"name; its columns are {[c.name for c in target.columns]}. Add the columns, rename the outputs "
                "(output_schema, passthrough_columns), or write to a new table."
            )
        return target, {n: by_key[n.lower()] for n in names}

    def _keys(self, by_key: Mapping[str, str]) -> list[str]:
        keys = []
        for key in self.spec.merge_keys or []:
            if key.lower() not in by_key:
                raise ConfigurationError(
                    f"sink['merge_keys'] names {key!r}, which is not an output column ({list(by_key.values())}); "
                    "merge keys must be passthrough columns (or outputs), e.g. passthrough_columns=['id']."
                )
            keys.append(by_key[key.lower()])
        return keys

    def staged_rows(self, staged: list[sa.Table], target: sa.Table, mapping: Mapping[str, str]) -> sa.Subquery:
        """Every staged row, under the target's column names (cast to the target's types where they differ)."""
        selects = []
        for table in staged:
            columns = []
            for name, target_name in mapping.items():
                column: Any = table.c[name] if name in table.c else sa.null()
                kind = target.c[target_name].type
                if self.dialect.name != "sqlite" and not _same_type(getattr(column, "type", kind), kind, self.dialect):
                    column = sa.cast(column, kind)
                columns.append(column.label(target_name))
            selects.append(sa.select(*columns))
        return (selects[0] if len(selects) == 1 else sa.union_all(*selects)).subquery("_bs_staged")

    def _insert(self, target: sa.Table, rows: sa.Subquery, names: list[str], where: Any = None) -> int:
        select = sa.select(*[rows.c[n] for n in names])
        if where is not None:
            select = select.where(where)
        result = self.connection.execute(sa.insert(target).from_select(names, select))
        return max(result.rowcount or 0, 0)

    def upsert(self, target: sa.Table, rows: sa.Subquery, names: list[str]) -> None:
        keys = self._keys({n.lower(): n for n in names})
        matches = sa.and_(*[target.c[k] == rows.c[k] for k in keys])
        duplicate = self.connection.execute(
            sa.select(*[rows.c[k] for k in keys], sa.func.count().label("n"))
            .where(sa.and_(*[rows.c[k].is_not(None) for k in keys]))
            .group_by(*[rows.c[k] for k in keys])
            .having(sa.func.count() > 1)
            .limit(1)
        ).first()
        if duplicate is not None:
            values = dict(zip(keys, duplicate[: len(keys)], strict=True))
            raise InputError(
                f"the run's output holds {duplicate[-1]} rows with the merge keys {values}; an upsert into "
                f"{self.spec.table} needs each key once. Fix the input, or the merge_keys."
            )
        others = [n for n in names if n not in keys]
        existing = self.connection.execute(
            sa.select(sa.func.count()).select_from(rows).where(sa.select(sa.literal(1)).where(matches).exists())
        ).scalar_one()
        unique = _unique_on(self.inspector, self.name, self.schema, {k.lower() for k in keys})
        if unique and self.dialect.name in ("postgresql", "sqlite"):
            dialect_insert = postgresql.insert if self.dialect.name == "postgresql" else sqlite.insert
            select = sa.select(*[rows.c[n] for n in names])
            if self.dialect.name == "sqlite":
                select = select.where(sa.true())  # SQLite reads "INSERT ... SELECT ... ON" as a join without it
            statement = dialect_insert(target).from_select(names, select)
            index = [target.c[k] for k in keys]
            if others:
                statement = statement.on_conflict_do_update(
                    index_elements=index, set_={n: statement.excluded[n] for n in others}
                )
            else:
                statement = statement.on_conflict_do_nothing(index_elements=index)
            total = self.connection.execute(sa.select(sa.func.count()).select_from(rows)).scalar_one()
            self.connection.execute(statement)
            self.counts["updated"] = existing if others else 0
            self.counts["inserted"] = total - existing
            return
        if self.dialect.name == "postgresql":
            # Readers go on; other writers wait, so that no row with the same keys appears between the two steps.
            self.connection.exec_driver_sql(f"LOCK TABLE {self._quoted()} IN SHARE ROW EXCLUSIVE MODE")
        if others:
            result = self.connection.execute(
                sa.update(target).where(matches).values({n: rows.c[n] for n in others})
            )
            self.counts["updated"] = max(result.rowcount or 0, 0)
        missing = ~sa.select(sa.literal(1)).select_from(target).where(matches).exists()
        self.counts["inserted"] = self._insert(target, rows, names, missing)

    def _quoted(self) -> str:
        preparer = self.dialect.identifier_preparer
        table = preparer.quote(self.name)
        return f"{preparer.quote_schema(self.schema)}.{table}" if self.schema else table

    def run(self) -> None:
        staged = [self._reflect(name) for name in self.stages]
        target, mapping = self.target(staged)
        rows = self.staged_rows(staged, target, mapping)
        names = list(mapping.values())
        mode = self.spec.mode or "append"
        if mode == "replace" and not self.created:
            self.counts["deleted"] = max(self.connection.execute(sa.delete(target)).rowcount or 0, 0)
        if mode == "upsert":
            self.upsert(target, rows, names)
        else:
            self.counts["inserted"] = self._insert(target, rows, names)


def publish(
    job: ScoringJob,
    reports: list[ShardReport],
    manifest: Mapping[str, Any],
    secrets: Mapping[str, Any] | None,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Move the staged rows into the target, record the run, drop the staging tables: one transaction.

    :returns: ``{"table", "mode", "inserted", "updated", "deleted", "created", "already_committed"}``.
    :raises InputError: when the database refuses the rows (naming the table and the database's reason).
    """
    sink = narrow(job.sink, TableSpec)
    engine, where = engine_of(sink, secrets)
    schema, target = sink.table.schema, str(sink.table)
    stages = [part for report in reports for part in report.parts]
    mode = sink.mode or "append"
    details: dict[str, Any] = {"table": target, "mode": mode, "inserted": 0, "updated": 0, "deleted": 0,
                               "created": False, "already_committed": False}
    runs = bookkeeping_table(schema)
    key = sa.and_(runs.c.run_id == job.job_id, runs.c.target == target)
    try:
        with engine.begin() as connection:
            connection.execution_options(preserve_rowcount=True)  # INSERT ... SELECT counts
            earlier = connection.execute(sa.select(runs.c.attempt, runs.c.committed_at).where(key)).first()
            if earlier is not None and mode == "append":
                details["already_committed"] = True
                log(
                    f"Run {job.job_id!r} was already appended to {target} by attempt {earlier[0]!r} at "
                    f"{earlier[1]}; it is not appended again (delete its row from {BOOKKEEPING} to append it anew)"
                )
            else:
                connection.execute(sa.delete(runs).where(key))
                if stages:
                    commit = _Commit(job, connection, stages, log)
                    commit.run()
                    details.update(commit.counts, created=commit.created)
                totals = manifest.get("totals", {})
                connection.execute(sa.insert(runs).values(
                    run_id=job.job_id, target=target, attempt=job.attempt, mode=mode,
                    committed_at=datetime.now(timezone.utc).replace(tzinfo=None),
                    rows_in=totals.get("rows_in"), rows_out=totals.get("rows_out"),
                    inserted=details["inserted"], updated=details["updated"], deleted=details["deleted"],
                    manifest=json.dumps({**manifest, "sql": details}, sort_keys=True, default=str),
                ))
            for name in stages:  # (the resumed shards' tables carry an earlier attempt's prefix)
                sa.Table(name, sa.MetaData(), schema=schema).drop(connection, checkfirst=True)
            drop_tables(connection, schema, attempt_prefix(job))
    except IntegrityError as err:
        raise InputError(
            f"the commit into {target} was refused by a constraint: {db_message(err)}. Nothing was written. "
            "Check the table's keys and NOT NULL columns against the output (or another attempt of this run "
            "committed at the same moment)."
        ) from None
    except SQLAlchemyError as err:
        raise InputError(
            f"the commit into {target} ({where}) failed: {db_message(err)}. Nothing was written; check the "
            "table's column types against the output columns."
        ) from None
    finally:
        engine.dispose()
    return details
