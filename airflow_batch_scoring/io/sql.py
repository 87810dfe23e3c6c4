"""SQL databases through SQLAlchemy: engines, quoted names, the seven column types, and errors naming the table.

The runtime receives a database as a SQLAlchemy URL in its secret material (``{"sqlalchemy_url": ...}``, built by the
operator from an Airflow connection, see :mod:`airflow_batch_scoring.hooks.sql`), or, from a shell, as the spec's
``uri`` (a URL without a password). Every name that reaches SQL was validated (:mod:`airflow_batch_scoring.sql_spec`)
and is quoted by the database's own dialect; every value is a bound parameter.

Shared with the runtime: never imports Airflow.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pyarrow as pa
import sqlalchemy as sa
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError, SQLAlchemyError
from sqlalchemy.pool import NullPool

from airflow_batch_scoring.errors import ConfigurationError, InputError
from airflow_batch_scoring.schema import ColumnType, column_type_of_arrow
from airflow_batch_scoring.specs import SqlSpec, TableName, TableSpec

#: the key of the database URL in a source's or sink's secret material.
URL_KEY = "sqlalchemy_url"
#: seconds a SQLite writer waits for the database lock (replicas write one after another).
SQLITE_LOCK_TIMEOUT = 300

#: the SQL type each of the seven column types is written as (each dialect renders its own DDL).
SQL_TYPES: dict[ColumnType, Any] = {
    ColumnType.BOOLEAN: sa.Boolean(),
    ColumnType.TIME64: sa.DateTime(),
    ColumnType.FLOAT32: sa.REAL(),
    ColumnType.FLOAT64: sa.Double(),
    ColumnType.INT32: sa.Integer(),
    ColumnType.INT64: sa.BigInteger(),
    ColumnType.STRING: sa.Text(),
}

#: PostgreSQL type OIDs (as psycopg reports them in a cursor's description) -> Arrow types.
_PG_OIDS: dict[int, pa.DataType] = {
    16: pa.bool_(),
    20: pa.int64(),
    21: pa.int32(),
    23: pa.int32(),
    700: pa.float32(),
    701: pa.float64(),
    1082: pa.timestamp("us"),
    1114: pa.timestamp("us"),
    1184: pa.timestamp("us"),
    1700: pa.float64(),
    19: pa.string(),
    25: pa.string(),
    1042: pa.string(),
    1043: pa.string(),
}


def database_url(spec: SqlSpec, secrets: Mapping[str, Any] | None, role: str) -> str:
    """The SQLAlchemy URL of a SQL spec: from its secret material (a connection), else its ``uri``.

    :raises ConfigurationError: when neither is given.
    """
    url = (secrets or {}).get(URL_KEY) or spec.uri
    if not url:
        raise ConfigurationError(
            f"The SQL {role} has no database: set {role}['conn_id'] to an Airflow connection (in a DAG), or "
            f"{role}['uri'] to a SQLAlchemy URL such as 'sqlite:////data/scores.db' (from a shell)."
        )
    return str(url)


def display_url(url: str) -> str:
    """The database's address without credentials (``postgresql://127.0.0.1:5432/scoring``), for logs and XCom."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        return "<database>"
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        return f"sqlite:///{parsed.database or ''}"
    host = parsed.host or ""
    port = f":{parsed.port}" if parsed.port else ""
    return f"{backend}://{host}{port}/{parsed.database or ''}"


def _sqlite_transactions(engine: Engine, write: bool) -> None:
    """Let SQLAlchemy, not the sqlite3 module, open transactions, so that DDL is transactional too; a writer takes
    the write lock when it begins (``BEGIN IMMEDIATE``) and waits for it instead of failing midway."""

    @sa.event.listens_for(engine, "connect")
    def _connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None

    @sa.event.listens_for(engine, "begin")
    def _begin(connection: Any) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")


def make_engine(url: str, *, write: bool = False, what: str = "the database") -> Engine:
    """An engine without a pool (replicas are short-lived processes).

    :param write: SQLite: transactions take the write lock when they begin.
    :raises ConfigurationError: for a URL no installed driver serves.
    """
    try:
        parsed = make_url(url)
        kwargs: dict[str, Any] = {"poolclass": NullPool}
        if parsed.get_backend_name() == "sqlite":
            kwargs["connect_args"] = {"timeout": SQLITE_LOCK_TIMEOUT}
        engine = sa.create_engine(parsed, **kwargs)
    except (ArgumentError, NoSuchModuleError, ImportError) as err:
        raise ConfigurationError(
            f"Cannot open {what} ({display_url(url)}): {type(err).__name__}: {err}. Install the database's driver "
            "(airflow-batch-scoring[postgres] for PostgreSQL) or fix the connection's type."
        ) from None
    if engine.dialect.name == "sqlite":
        _sqlite_transactions(engine, write)
    return engine


def db_message(err: BaseException) -> str:
    """The database's own words for an error (its first line), without the SQL statement or parameters."""
    original = getattr(err, "orig", None) or err
    text = str(original).strip().splitlines()
    return text[0] if text else type(original).__name__


def connect_error(err: SQLAlchemyError, what: str, conn_id: str | None) -> InputError:
    via = f"connection {conn_id!r}" if conn_id else "its URL"
    return InputError(
        f"cannot use {what} through {via}: {db_message(err)}. Check the connection's host, port, database, "
        "login and password, and that the database is running."
    )


def quote_table(dialect: sa.engine.Dialect, name: TableName) -> str:
    """``schema.table`` quoted by the dialect (names were validated before)."""
    preparer = dialect.identifier_preparer
    quoted = preparer.quote(name.name)
    return f"{preparer.quote_schema(name.schema)}.{quoted}" if name.schema else quoted


def quote_column(dialect: sa.engine.Dialect, name: str) -> str:
    return dialect.identifier_preparer.quote(name)


def describe_table(spec: SqlSpec) -> str:
    """``table public.scores`` or ``the source query``, for messages."""
    return f"table {spec.table}" if isinstance(spec, TableSpec) else "the source query"


def arrow_type_of_sql(sql_type: Any, dialect_name: str) -> pa.DataType | None:
    """The Arrow type a column of a reflected SQL type is read as (NUMERIC and DECIMAL as Float64); ``None`` when
    its values decide (UUID, JSON, ...). SQLite stores every integer and every real in 8 bytes, whatever the declared
    type says."""
    sqlite = dialect_name == "sqlite"
    if isinstance(sql_type, sa.Boolean):
        return pa.bool_()
    if isinstance(sql_type, (sa.DateTime, sa.Date)):
        return pa.timestamp("us")
    if isinstance(sql_type, sa.Integer):
        if sqlite or isinstance(sql_type, sa.BigInteger):
            return pa.int64()
        return pa.int32()
    if isinstance(sql_type, sa.Float):
        single = isinstance(sql_type, sa.REAL) or (sql_type.precision is not None and sql_type.precision <= 24)
        return pa.float32() if single and not sqlite else pa.float64()
    if isinstance(sql_type, sa.Numeric):
        return pa.float64()
    if isinstance(sql_type, (sa.String, sa.Enum)):
        return pa.string()
    return None


def arrow_type_of_value(value: Any) -> pa.DataType:
    """The Arrow type of a column whose SQL type is unknown, from one of its values (anything else: String)."""
    import datetime as dt
    from decimal import Decimal

    if isinstance(value, bool):
        return pa.bool_()
    if isinstance(value, int):
        return pa.int64()
    if isinstance(value, (float, Decimal)):
        return pa.float64()
    if isinstance(value, (dt.datetime, dt.date)):
        return pa.timestamp("us")
    return pa.string()


def arrow_type_of_oid(type_code: Any) -> pa.DataType | None:
    """The Arrow type of a PostgreSQL result column, from the type OID psycopg reports."""
    return _PG_OIDS.get(type_code) if isinstance(type_code, int) else None


def normalize_arrow(table: pa.Table) -> pa.Table:
    """Cast every column to the Arrow type of its schema type (one of seven), e.g. a time zone to UTC, a date to a
    timestamp, a decimal to its text (exact); what is written to SQL is then always one of the seven types."""
    arrays, changed = [], False
    for field, column in zip(table.schema, table.columns, strict=True):
        target = column_type_of_arrow(field.type).arrow_type
        if field.type != target:
            column = column.cast(target)
            changed = True
        arrays.append(column)
    return pa.Table.from_arrays(arrays, names=table.column_names) if changed else table


def sa_columns(schema: pa.Schema) -> list[sa.Column]:
    """SQLAlchemy columns (nullable) for an Arrow schema of the seven types."""
    return [sa.Column(f.name, SQL_TYPES[column_type_of_arrow(f.type)], nullable=True) for f in schema]
