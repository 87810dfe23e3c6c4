"""A table or a query on one database: its columns, its split into key ranges, and its reader of Arrow tables.

Planning (the driver, once): the source's columns are checked against the model's, then the range of the partition
column is read (``MIN``/``MAX``) and cut into ``replicas`` ranges, as Spark's JDBC reader does: replica 0 reads
``col < b1 OR col IS NULL``, replica i ``b_i <= col < b_(i+1)``, the last ``col >= b_(n-1)``. Every row belongs to
exactly one range, NULLs included. Without ``partition_column`` a table's single-column numeric or date primary key
is used (SQLite: its ``rowid``); otherwise one replica reads every row.

Reading (each replica): one statement per range, through a server-side cursor where the database has one
(``stream_results``; PostgreSQL), fetched ``batch_size`` rows at a time, so memory depends on the batch size only.
Values are converted to Arrow by the columns' SQL types and coerced to the model schema by the schema code of the
file readers; a value that does not fit names the table, the column and the value.

Shared with the runtime: never imports Airflow.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import pyarrow as pa
import sqlalchemy as sa
from sqlalchemy.exc import SQLAlchemyError

from airflow_batch_scoring.coercion import ColumnIndex
from airflow_batch_scoring.errors import ConfigurationError, InputError
from airflow_batch_scoring.io.readers.casts import CastFailure
from airflow_batch_scoring.io.readers.columns import ColumnMap, ReadPlan, coerce, resolve_columns
from airflow_batch_scoring.io.sql import (
    arrow_type_of_oid,
    arrow_type_of_sql,
    arrow_type_of_value,
    connect_error,
    database_url,
    db_message,
    describe_table,
    display_url,
    make_engine,
    quote_column,
    quote_table,
)
from airflow_batch_scoring.job import Piece
from airflow_batch_scoring.sources.sql_types import decode, encode, kind_of, split_range, to_arrow
from airflow_batch_scoring.specs import QuerySpec, SqlSpec, TableName, TableSpec

_QUERY_ALIAS = "_bs_source"


class SqlRelation:
    """A table or a query on one database, with what planning and reading need.

    :param spec: the source spec (``table`` or ``query`` + ``parameters``).
    :param secrets: the source's secret material (``{"sqlalchemy_url": ...}``).
    """

    def __init__(self, spec: SqlSpec, secrets: Mapping[str, Any] | None):
        self.spec = spec
        #: the table read, or ``None`` for a query
        self.table: TableName | None = spec.table if isinstance(spec, TableSpec) else None
        #: the query's parameters (named: a mapping; positional: a tuple), ``None`` for a table
        self.parameters = spec.parameters if isinstance(spec, QuerySpec) else None
        self.what = describe_table(spec)
        self.url = database_url(spec, secrets, "source")
        self.engine = make_engine(self.url, what=f"the source database ({display_url(self.url)})")
        self.dialect = self.engine.dialect
        self._columns: list[tuple[str, pa.DataType]] | None = None

    def close(self) -> None:
        self.engine.dispose()

    # -- SQL building: names quoted by the dialect, values bound in the driver's own paramstyle ---------------------

    def _named(self) -> bool:
        return not isinstance(self.parameters, tuple)

    def placeholder(self, name: str) -> str:
        style = self.dialect.paramstyle
        if self._named():
            if style == "pyformat":
                return f"%({name})s"
            if style in ("named", "qmark") and (style == "named" or self.dialect.name == "sqlite"):
                return f":{name}"
            raise ConfigurationError(
                f"The source database's driver ({self.dialect.driver}) takes positional parameters ({style}): give "
                "source['parameters'] as a list."
            )
        return {"qmark": "?", "format": "%s", "pyformat": "%s"}.get(style, "?")

    def _query_text(self) -> str:
        query = self.spec.query if isinstance(self.spec, QuerySpec) else ""
        if self.parameters is None and self.dialect.paramstyle in ("format", "pyformat"):
            # SQLAlchemy always hands the driver a parameter set, and then it reads % as a placeholder
            query = query.replace("%", "%%")
        return query

    def relation(self) -> str:
        """The FROM item: the quoted table, or the user's query as a derived table."""
        if self.table is not None:
            return quote_table(self.dialect, self.table)
        return f"({self._query_text()}) AS {_QUERY_ALIAS}"

    def _params(self, extra: list[tuple[str, Any]]) -> Any:
        user = self.parameters
        if isinstance(user, tuple):
            return tuple(user) + tuple(value for _, value in extra)
        merged = dict(user or {})
        merged.update(extra)
        return merged or None

    def execute(self, connection: sa.Connection, sql: str, extra: list[tuple[str, Any]] | None = None,
                stream: int | None = None) -> sa.CursorResult:
        """Run ``sql`` with the user's parameters and ``extra`` bound ones.

        :raises InputError: with the database's message, naming the source.
        """
        params = self._params(extra or [])
        if stream:
            connection = connection.execution_options(stream_results=True, max_row_buffer=stream)
        try:
            return connection.exec_driver_sql(sql, params) if params is not None else connection.exec_driver_sql(sql)
        except SQLAlchemyError as err:
            raise self.error(err) from None

    def error(self, err: SQLAlchemyError) -> InputError:
        message = db_message(err)
        if self.table is not None:
            return InputError(
                f"{self.what} cannot be read: {message}. Check that the table and its columns exist and that the "
                "connection's user may read them."
            )
        return InputError(
            f"the source query failed: {message}. Fix source['query'] (placeholders as the driver wants them: "
            f"{self.placeholder('name') if self._named() else '?'}), or source['parameters']."
        )

    # -- columns ------------------------------------------------------------------------------------------------

    def columns(self, connection: sa.Connection) -> list[tuple[str, pa.DataType]]:
        """The source's columns with the Arrow type they are read as: from the SQL type (a table's reflected
        columns, PostgreSQL's result types), else from the first non-NULL value.

        :raises InputError: when the table does not exist or the query fails.
        """
        if self._columns is not None:
            return self._columns
        reflected: dict[str, Any] = {}
        if self.table is not None:
            schema, table = self.table.schema, self.table.name
            inspector = sa.inspect(connection)
            try:
                exists = inspector.has_table(table, schema=schema)
            except SQLAlchemyError as err:
                raise self.error(err) from None
            if not exists:
                where = f" in schema {schema!r}" if schema else ""
                raise InputError(
                    f"{self.what} does not exist{where} in the database {display_url(self.url)}. Check the name (and "
                    "its schema: 'schema.table'); names in capitals are case-sensitive."
                )
            reflected = {c["name"]: c["type"] for c in inspector.get_columns(table, schema=schema)}
        result = self.execute(connection, f"SELECT * FROM {self.relation()} WHERE 1 = 0")
        description = result.cursor.description if result.cursor is not None else None
        names = list(result.keys())
        result.close()
        columns = []
        for position, name in enumerate(names):
            kind = arrow_type_of_sql(reflected[name], self.dialect.name) if name in reflected else None
            if kind is None and description is not None and self.dialect.name == "postgresql":
                kind = arrow_type_of_oid(description[position][1])
            columns.append((name, kind if kind is not None else self._probe(connection, name)))
        self._columns = columns
        return columns

    def _probe(self, connection: sa.Connection, name: str) -> pa.DataType:
        """The type of a column whose SQL type is unknown (a SQLite query, a UUID, ...), from its first non-NULL
        value, so that every batch of every replica reads it as the same Arrow type."""
        quoted = quote_column(self.dialect, name)
        result = self.execute(connection, f"SELECT {quoted} FROM {self.relation()} WHERE {quoted} IS NOT NULL",
                              stream=1)
        row = result.fetchone()
        result.close()
        return arrow_type_of_value(row[0] if row is not None else None)

    def column_map(self, connection: sa.Connection, plan: ReadPlan) -> ColumnMap:
        """Match the model's and the passthrough columns to the source's, ignoring case.

        :raises InputError: naming the table (or query) and the first missing column.
        """
        available = [name for name, _ in self.columns(connection)]

        def missing(kind: str, name: str, columns: list[str]) -> InputError:
            if kind == "passthrough":
                return InputError(f"{self.what}: the passthrough column {name!r} does not exist; its columns are "
                                  f"{columns}. Fix passthrough_columns.")
            return InputError(
                f"{self.what}: the model's input column {name!r} does not exist; its columns are {columns}. Add it "
                "(or alias a column to it in source['query']), or fix the input schema."
            )

        return resolve_columns(available, plan, self.what, missing=missing, typed_passthrough=False)

    # -- planning -----------------------------------------------------------------------------------------------

    def _fallback_column(self, connection: sa.Connection) -> tuple[str | None, str]:
        if self.table is None:
            return None, "a query without source['partition_column']"
        inspector = sa.inspect(connection)
        key = inspector.get_pk_constraint(self.table.name, schema=self.table.schema).get("constrained_columns") or []
        types = {name: kind for name, kind in self.columns(connection)}
        if len(key) == 1 and types.get(key[0]) is not None and (
            pa.types.is_integer(types[key[0]]) or pa.types.is_timestamp(types[key[0]])
        ):
            return key[0], f"its primary key {key[0]!r}"
        if self.dialect.name == "sqlite":
            return "rowid", "SQLite's rowid"
        return None, "a table without source['partition_column'] or a numeric primary key"

    def plan(self, replicas: int, plan: ReadPlan) -> list[list[Piece]]:
        """Check the columns and split the source into ``replicas`` shards (some may be empty).

        :raises InputError: for a missing table or column, or a failing query.
        :raises ConfigurationError: for a partition column that is not numeric, date or timestamp.
        """
        with self.engine.connect() as connection:
            self.column_map(connection, plan)
            column = self.spec.partition_column
            if column is not None:
                index = ColumnIndex(name for name, _ in self.columns(connection))
                found = index.get(column)
                if found is None:
                    raise InputError(
                        f"{self.what}: the partition column {column!r} does not exist; its columns are "
                        f"{index.names}. Fix source['partition_column']."
                    )
                column = found
            elif replicas > 1:
                column, _ = self._fallback_column(connection)
            shards: list[list[Piece]] = [[] for _ in range(replicas)]
            if column is None or replicas == 1:
                shards[0].append(Piece(path=self.what))
                return shards
            quoted = quote_column(self.dialect, column)
            row = self.execute(connection, f"SELECT MIN({quoted}), MAX({quoted}) FROM {self.relation()}").one()
        low, high = row[0], row[1]
        if low is None:  # no rows, or only NULLs: one replica reads them
            shards[0].append(Piece(path=self.what))
            return shards
        kind = kind_of(low)
        if kind is None or kind_of(high) != kind:
            if self.spec.partition_column is None:  # the fallback key is not splittable: read in one piece
                shards[0].append(Piece(path=self.what))
                return shards
            raise ConfigurationError(
                f"{self.what}: the partition column {column!r} holds {type(low).__name__} values ({low!r}); it must "
                "be an integer, a number, a date or a timestamp (with finite values) to be cut into ranges."
            )
        bounds = split_range(low, high, replicas, kind)
        edges: list[Any] = [None, *bounds, None]
        for shard in range(len(edges) - 1):
            sql_range = {
                "column": column,
                "kind": kind,
                "lower": encode(edges[shard], kind),
                "upper": encode(edges[shard + 1], kind),
                "nulls": shard == 0,
            }
            shards[shard].append(Piece(path=self.what, sql_range=sql_range))
        return shards

    # -- reading ------------------------------------------------------------------------------------------------

    def select(self, names: list[str], sql_range: Mapping[str, Any] | None) -> tuple[str, list[tuple[str, Any]]]:
        """The statement reading ``names`` from one range, with its bound values."""
        columns = ", ".join(quote_column(self.dialect, n) for n in names)
        sql = f"SELECT {columns} FROM {self.relation()}"
        if not sql_range:
            return sql, []
        quoted = quote_column(self.dialect, sql_range["column"])
        kind = sql_range["kind"]
        conditions, values = [], []
        for key, operator in (("lower", ">="), ("upper", "<")):
            value = decode(sql_range.get(key), kind)
            if value is not None:
                name = f"_bs_{key}"
                conditions.append(f"{quoted} {operator} {self.placeholder(name)}")
                values.append((name, value))
        condition = " AND ".join(conditions)
        if sql_range.get("nulls"):
            condition = f"({condition} OR {quoted} IS NULL)" if condition else f"{quoted} IS NULL"
        if condition:
            sql += f" WHERE {condition}"
        return sql, values


class SqlReader:
    """Streams the pieces of one shard of a SQL source as Arrow tables (the file readers' interface)."""

    def __init__(self, spec: SqlSpec, plan: ReadPlan, secrets: Mapping[str, Any] | None, *, batch_size: int):
        self.spec = spec
        self.plan = plan
        self.batch_size = batch_size
        self.source = SqlRelation(spec, secrets)
        #: text bytes read so far; a SQL source reports rows only.
        self.bytes_done = 0

    def read(self, piece: Piece) -> Iterator[pa.Table]:
        source = self.source
        try:
            with source.engine.connect() as connection:
                columns = source.column_map(connection, self.plan)
                declared = dict(source.columns(connection))
                names = columns.source_names
                sql, values = source.select(names, piece.sql_range)
                result = source.execute(connection, sql, values, stream=self.batch_size)
                row_number = 0
                while True:
                    try:
                        rows = result.fetchmany(self.batch_size)
                    except SQLAlchemyError as err:
                        raise source.error(err) from None
                    if not rows:
                        break
                    table = self._table(list(rows), names, declared)
                    try:
                        table = coerce(table, columns)
                    except CastFailure as failure:
                        raise InputError(
                            f"{source.what}, column {failure.column!r} (row {row_number + failure.index + 1} of "
                            f"{self._range_text(piece)}): {failure.message()}"
                        ) from None
                    row_number += table.num_rows
                    yield columns.output(table)
                result.close()
        except SQLAlchemyError as err:
            raise connect_error(err, f"the source database {display_url(source.url)}", self.spec.conn_id) from None

    @staticmethod
    def _table(rows: list[Any], names: list[str], declared: dict[str, pa.DataType]) -> pa.Table:
        arrays = [to_arrow([row[position] for row in rows], declared[name]) for position, name in enumerate(names)]
        return pa.Table.from_arrays(arrays, names=names)

    @staticmethod
    def _range_text(piece: Piece) -> str:
        sql_range = piece.sql_range
        if not sql_range:
            return "the source"
        low, high = sql_range.get("lower"), sql_range.get("upper")
        parts = [f"{sql_range['column']} >= {low}" if low is not None else "", f"< {high}" if high is not None else ""]
        text = " ".join(p for p in parts if p) or "all values"
        return f"the range {text}" + (" (and NULLs)" if sql_range.get("nulls") else "")

    def close(self) -> None:
        self.source.close()
