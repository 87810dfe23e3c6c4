"""Where a job's data comes from and goes to, parsed once into tagged, immutable types.

A source or sink spec is one of five kinds, each a frozen dataclass with a ``kind`` tag:

- :class:`FileSpec` (``"files"``): a file, folder or glob on an object store or the local disk;
- :class:`TableSpec` (``"table"``): a SQL table, its name parsed into a :class:`TableName`;
- :class:`QuerySpec` (``"query"``): a SQL ``SELECT`` (sources only);
- :class:`DeltaSpec` (``"delta"``): a Delta Lake table (``{"format": "delta", "uri": ...}``);
- :class:`IcebergSpec` (``"iceberg"``): an Apache Iceberg table in a SQL catalog (``{"format": "iceberg", ...}``).

:func:`parse_data_spec` turns a user's mapping into one of them (the file keys are checked in
:mod:`airflow_batch_scoring.formats`, the SQL ones in :mod:`airflow_batch_scoring.sql_spec`); code that needs to tell
them apart narrows :data:`DataSpec` with ``isinstance``, and a registry keyed by ``kind`` (sources, sinks, the
Airflow side's data access) picks the class that serves each kind. :func:`spec_to_dict` and :func:`spec_from_dict`
carry the tag through the job's JSON document.

Shared with the runtime: never imports Airflow.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any, ClassVar, TypeAlias, TypeVar

from airflow_batch_scoring.coercion import to_bool
from airflow_batch_scoring.errors import ConfigurationError
from airflow_batch_scoring.formats import (
    AUTO,
    as_columns,
    as_compression,
    as_encoding,
    as_header,
    as_max_line_bytes,
    infer_format,
    normalize_format,
)
from airflow_batch_scoring.io.files import check_user_info
from airflow_batch_scoring.sql_spec import (
    MODES,
    SQL_KEYS,
    as_merge_keys,
    as_parameters,
    check_sql_keys,
    validate_identifier,
)
from airflow_batch_scoring.table_spec import (
    DELTA_KEYS,
    as_filter,
    as_identifier,
    as_mode,
    as_names,
    as_partition,
    as_version,
    check_iceberg_keys,
)
from airflow_batch_scoring.table_spec import check_keys as check_delta_keys


@dataclass(frozen=True)
class TableName:
    """A validated SQL table name: ``name`` or ``schema.name``, each part a plain identifier.

    Parts are quoted by the database's own dialect where SQL is built; :meth:`parse` refuses anything else, so no
    SQL can be injected through a name.
    """

    schema: str | None
    name: str

    @classmethod
    def parse(cls, value: Any, what: str) -> TableName:
        """``"analytics.scores"`` -> ``TableName("analytics", "scores")``; ``"scores"`` -> ``TableName(None, ...)``.

        :param value: the name as the user gave it.
        :param what: the key it came from, for the message (``"sink['table']"``).
        :raises ConfigurationError: for an empty name, more than two parts, or a part that is not a plain identifier
            (e.g. ``"scores; DROP TABLE x"``).
        """
        if isinstance(value, TableName):
            return value
        if not isinstance(value, str) or not value.strip():
            raise ConfigurationError(
                f"{what} must be a table name such as 'scores' or 'analytics.scores', got {value!r}."
            )
        parts = value.strip().split(".")
        if len(parts) > 2:
            raise ConfigurationError(f"{what} {value!r} has more than two parts: give 'table' or 'schema.table'.")
        for part in parts:
            try:
                validate_identifier(part, what)
            except ConfigurationError:
                raise ConfigurationError(
                    f"{what} {value!r} is not a valid table name: give 'table' or 'schema.table', each part made of "
                    "letters, digits and underscores (not starting with a digit). Names are quoted by the "
                    "database's dialect; anything else (spaces, quotes, semicolons) is refused so that no SQL can "
                    "be injected through a name."
                ) from None
        return cls(None, parts[0]) if len(parts) == 1 else cls(parts[0], parts[1])

    def __str__(self) -> str:
        return f"{self.schema}.{self.name}" if self.schema else self.name


@dataclass(frozen=True)
class FileSpec:
    """Files read or written: a file, folder or glob (source) or a folder (sink).

    :param uri: e.g. ``file:///data/in/*.csv`` or ``s3://bucket/out/``.
    :param format: ``csv``, ``jsonl`` or ``parquet``; inferred from the suffix when left out (``""``: not known
        yet, a sink's format is then resolved by the driver).
    :param header: CSV only: whether the file has a header line: ``True``, ``False`` or ``"auto"`` (the default).
        Source, ``"auto"``: a file's first line is its header when its fields are the expected column names
        (``columns``, else the model's input columns; see :mod:`airflow_batch_scoring.io.csv_header`). Sink,
        ``"auto"``: a header line when the (first) input file had one; the driver resolves it before replicas start.
    :param columns: CSV without header: the column names in file order (default: the model's input columns).
    :param conn_id: the Airflow connection that grants access (resolved by the operator, never by the runtime).
    :param newlines_in_values: CSV only: quoted values may hold line breaks; then files are never split.
    :param compression: sink, CSV or JSON lines: ``gzip``, ``bz2`` or ``xz`` (parts named ``part-00000.csv.gz``).
        A source's compression is read from its file names.
    :param encoding: text source: the files' encoding when it is not UTF-8 (``latin-1``, ``cp1252``, ...; stored as
        the codec's name, ``None`` for UTF-8).
    :param max_line_bytes: text source: the longest line (or CSV record) read, line break included; a longer one is
        a bad row (``line_too_long``). ``None``: 16 MiB.
    """

    kind: ClassVar[str] = "files"

    uri: str
    format: str = ""
    header: bool | str = AUTO
    columns: tuple[str, ...] | None = None
    conn_id: str | None = None
    newlines_in_values: bool = False
    compression: str | None = None
    encoding: str | None = None
    max_line_bytes: int | None = None

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> FileSpec:
        """The spec :meth:`to_dict` wrote (no validation: it was validated when parsed)."""
        values = dict(data)
        if values.get("columns") is not None:
            values["columns"] = tuple(values["columns"])
        return cls(**values)


@dataclass(frozen=True)
class TableSpec:
    """A SQL table read (source) or written (sink).

    :param table: the table's parsed name.
    :param conn_id: the Airflow connection (a ``DbApiHook``) that reaches the database.
    :param uri: outside Airflow: a SQLAlchemy URL without its password, or ``""``.
    :param mode: sink: ``append``, ``replace`` or ``upsert`` (``None`` for a source).
    :param merge_keys: sink, ``upsert``: the columns that identify a row.
    :param partition_column: source: a numeric or date column whose min-max range is split between replicas.
    """

    kind: ClassVar[str] = "table"

    table: TableName
    conn_id: str | None = None
    uri: str = ""
    mode: str | None = None
    merge_keys: tuple[str, ...] | None = None
    partition_column: str | None = None

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TableSpec:
        """The spec :meth:`to_dict` wrote."""
        values = dict(data)
        values["table"] = TableName.parse(values["table"], "table")
        if values.get("merge_keys") is not None:
            values["merge_keys"] = tuple(values["merge_keys"])
        return cls(**values)


@dataclass(frozen=True)
class QuerySpec:
    """A SQL ``SELECT`` read by a source.

    :param query: the statement, its placeholders bound from ``parameters`` (never pasted into SQL).
    :param parameters: a mapping (named placeholders) or a tuple (positional ones), or ``None``.
    :param conn_id: the Airflow connection (a ``DbApiHook``) that reaches the database.
    :param uri: outside Airflow: a SQLAlchemy URL without its password, or ``""``.
    :param partition_column: a numeric or date column whose min-max range is split between replicas.
    """

    kind: ClassVar[str] = "query"

    query: str
    parameters: Mapping[str, Any] | tuple[Any, ...] | None = None
    conn_id: str | None = None
    uri: str = ""
    partition_column: str | None = None

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> QuerySpec:
        """The spec :meth:`to_dict` wrote."""
        values = dict(data)
        if isinstance(values.get("parameters"), list):
            values["parameters"] = tuple(values["parameters"])
        return cls(**values)


@dataclass(frozen=True)
class DeltaSpec:
    """A Delta Lake table read (source) or written (sink), on local files or an object store (``deltalake``).

    :param uri: the table's folder, e.g. ``s3://lake/scores`` or ``file:///data/scores``.
    :param conn_id: the Airflow connection of its store (the same as for files).
    :param mode: sink: ``append``, ``overwrite`` (the whole table), ``overwrite_partition`` (the rows of
        :attr:`partition`) or ``merge`` (on :attr:`merge_keys`); ``None`` for a source.
    :param partition_by: sink: the partition columns of a table the run creates (an existing table keeps its own).
    :param partition: sink, ``overwrite_partition``: the partition replaced, as ``(column, value)`` pairs.
    :param merge_keys: sink, ``merge``: the columns that identify a row.
    :param allow_new_columns: sink: output columns the existing table lacks are added to it (else refused).
    :param version: source: the table version read (``None``: the latest when the run is planned, then pinned).
    :param columns: source: the columns read (``None``: those the model and the passthrough need).
    :param filter: source: ``(column, operator, value)`` conditions that all hold; partition columns prune files.
    """

    kind: ClassVar[str] = "delta"

    uri: str
    conn_id: str | None = None
    mode: str | None = None
    partition_by: tuple[str, ...] | None = None
    partition: tuple[tuple[str, Any], ...] | None = None
    merge_keys: tuple[str, ...] | None = None
    allow_new_columns: bool = False
    version: int | None = None
    columns: tuple[str, ...] | None = None
    filter: tuple[tuple[str, str, Any], ...] | None = None

    @property
    def format(self) -> str:
        """``"delta"`` (what a file spec's ``format`` would say)."""
        return "delta"

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> DeltaSpec:
        """The spec :meth:`to_dict` wrote (its JSON lists back as tuples)."""
        return cls(**_tuples(data))


def _tuples(data: Mapping[str, Any]) -> dict[str, Any]:
    """A table spec's JSON lists back as the tuples the spec holds."""
    values = dict(data)
    for key in ("partition_by", "merge_keys", "columns"):
        if values.get(key) is not None:
            values[key] = tuple(values[key])
    if values.get("partition") is not None:
        values["partition"] = tuple((k, v) for k, v in values["partition"])
    if values.get("filter") is not None:
        values["filter"] = tuple((c, o, tuple(v) if isinstance(v, list) else v) for c, o, v in values["filter"])
    return values


@dataclass(frozen=True)
class IcebergSpec:
    """An Apache Iceberg table in a SQL catalog (SQLite, PostgreSQL), read (source) or written (sink).

    :param table: ``namespace.table``.
    :param warehouse: the catalog's warehouse (``file:///data/warehouse``, ``s3://lake/warehouse``): new tables and
        the runs' data files go under ``<warehouse>/<namespace>/<table>/``.
    :param uri: ``<warehouse>/<namespace>/<table>`` (derived; where the run's files go, for lineage and links).
    :param catalog_uri: the catalog database's SQLAlchemy URL without a password (a shell run; SQLite).
    :param catalog_conn_id: an Airflow SQL connection to the catalog database (its URL, with the password, travels
        as a secret, never in the job).
    :param conn_id: the Airflow connection of the warehouse's store (as for files).
    :param mode: sink: ``append``, ``overwrite`` (the whole table), ``overwrite_partition`` (the rows of
        :attr:`partition`) or ``merge`` (on :attr:`merge_keys`); ``None`` for a source.
    :param partition_by: sink: the identity partition columns of a table the run creates (an existing table keeps its
        own).
    :param partition: sink, ``overwrite_partition``: the partition replaced, as ``(column, value)`` pairs.
    :param merge_keys: sink, ``merge``: the columns that identify a row.
    :param allow_new_columns: sink: output columns the existing table lacks are added to it (else refused).
    :param snapshot_id: source: the snapshot read (``None``: the current one when the run is planned, then pinned).
    :param columns: source: the columns read (``None``: those the model and the passthrough need).
    :param filter: source: ``(column, operator, value)`` conditions that all hold; they prune the snapshot's data
        files (partitions, column statistics) and the rows read.
    """

    kind: ClassVar[str] = "iceberg"

    table: str
    warehouse: str
    uri: str
    catalog_uri: str = ""
    catalog_conn_id: str | None = None
    conn_id: str | None = None
    mode: str | None = None
    partition_by: tuple[str, ...] | None = None
    partition: tuple[tuple[str, Any], ...] | None = None
    merge_keys: tuple[str, ...] | None = None
    allow_new_columns: bool = False
    snapshot_id: int | None = None
    columns: tuple[str, ...] | None = None
    filter: tuple[tuple[str, str, Any], ...] | None = None

    @property
    def format(self) -> str:
        return "iceberg"

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> IcebergSpec:
        """The spec :meth:`to_dict` wrote (its JSON lists back as tuples)."""
        return cls(**_tuples(data))


#: a source or sink spec: narrow it with ``isinstance`` (or dispatch on its ``kind``).
DataSpec: TypeAlias = FileSpec | TableSpec | QuerySpec | DeltaSpec | IcebergSpec
#: a SQL source's spec: a table or a query (both reached through a database connection).
SqlSpec: TypeAlias = TableSpec | QuerySpec
#: the spec type of each kind, for :func:`spec_from_dict`.
SPEC_TYPES: dict[str, type[FileSpec] | type[TableSpec] | type[QuerySpec] | type[DeltaSpec] | type[IcebergSpec]] = {
    spec.kind: spec for spec in (FileSpec, TableSpec, QuerySpec, DeltaSpec, IcebergSpec)
}
#: every key a source or sink mapping may hold.
KEYS = frozenset(
    {f.name for spec in SPEC_TYPES.values() for f in fields(spec)} | {"table", "query", "parameters"}
)


_Spec = TypeVar("_Spec", FileSpec, TableSpec, QuerySpec, DeltaSpec, IcebergSpec)


def narrow(spec: DataSpec, spec_type: type[_Spec]) -> _Spec:
    """``spec`` as the type a module serving one kind needs (a file sink's :class:`FileSpec`, ...).

    :raises TypeError: when ``spec`` is of another kind (a wrong dispatch, not a user's error).
    """
    if not isinstance(spec, spec_type):
        raise TypeError(f"A {spec_type.kind!r} spec is needed here, got a {spec.kind!r} spec.")
    return spec


def narrow_sql(spec: DataSpec) -> SqlSpec:
    """``spec`` as a table or a query (what a SQL source reads).

    :raises TypeError: for a file spec (a wrong dispatch, not a user's error).
    """
    if not isinstance(spec, (TableSpec, QuerySpec)):
        raise TypeError(f"A table or query spec is needed here, got a {spec.kind!r} spec.")
    return spec


def spec_to_dict(spec: DataSpec) -> dict[str, Any]:
    """``spec`` as plain JSON values with its ``kind`` tag (a table name as ``"schema.name"``)."""
    data = asdict(spec)
    if isinstance(spec, TableSpec):
        data["table"] = str(spec.table)
    return {"kind": spec.kind, **data}


def spec_from_dict(data: Mapping[str, Any]) -> DataSpec:
    """The spec :func:`spec_to_dict` wrote.

    :raises ConfigurationError: when ``kind`` names no spec type.
    """
    values = dict(data)
    kind = values.pop("kind", None)
    spec_type = SPEC_TYPES.get(str(kind))
    if spec_type is None:
        raise ConfigurationError(f"A data spec's kind must be one of {sorted(SPEC_TYPES)}, got {kind!r}.")
    return spec_type.from_dict(values)


def parse_data_spec(value: DataSpec | Mapping[str, Any] | str, role: str) -> DataSpec:
    """Build a source's or sink's spec from a mapping (or a bare URI string); a spec is returned as it is.

    :param role: ``"source"`` or ``"sink"``, for the messages and the keys each may hold.
    :raises ConfigurationError: naming the key that is wrong and how to fix it.
    """
    if isinstance(value, (FileSpec, TableSpec, QuerySpec, DeltaSpec, IcebergSpec)):
        return value
    if isinstance(value, str):
        value = {"uri": value}
    if not isinstance(value, Mapping):
        raise ConfigurationError(f"{role} must be a mapping with at least 'uri', got {type(value).__name__}.")
    unknown = sorted(set(value) - KEYS)
    if unknown:
        raise ConfigurationError(f"Unknown {role} key(s) {unknown}: the keys are {sorted(KEYS)}.")
    if str(value.get("format") or "").strip().lower() == "delta":
        return _delta_spec(value, role)
    if str(value.get("format") or "").strip().lower() == "iceberg":
        return _iceberg_spec(value, role)
    for key in DELTA_KEYS:
        if value.get(key) not in (None, [], {}, "", False):
            raise ConfigurationError(f"{role}[{key!r}] is for Delta tables: set {role}['format'] = 'delta' too.")
    for key in ("warehouse", "catalog_uri", "catalog_conn_id", "snapshot_id"):
        if value.get(key) not in (None, ""):
            raise ConfigurationError(f"{role}[{key!r}] is for Iceberg tables: set {role}['format'] = 'iceberg' too.")
    if value.get("table") or value.get("query"):
        if value.get("compression"):
            raise ConfigurationError(f"{role}['compression'] is for files, not SQL tables.")
        uri = check_sql_keys(value, role)
        conn_id = value.get("conn_id") or None
        return _sql_source(value, uri, conn_id) if role == "source" else _sql_sink(value, uri, conn_id)
    for key in SQL_KEYS:
        if value.get(key) is not None and value.get(key) != []:
            raise ConfigurationError(f"{role}[{key!r}] is for SQL tables: set {role}['table'] (or a query) too.")
    return _file_spec(value, role)


def _file_spec(value: Mapping[str, Any], role: str) -> FileSpec:
    uri = value.get("uri")
    if not uri or not isinstance(uri, str):
        raise ConfigurationError(f"{role}['uri'] is required, e.g. 'file:///data/{role}/'.")
    uri = uri.strip()
    check_user_info(uri, f"{role}['uri']")  # before any message could quote it
    fmt = value.get("format") or ""
    if fmt or infer_format(uri):
        fmt = normalize_format(fmt, uri, role)
    return FileSpec(
        uri=uri,
        format=fmt,
        header=as_header(value.get("header"), f"{role}['header']"),
        columns=as_columns(value.get("columns"), f"{role}['columns']"),
        conn_id=value.get("conn_id") or None,
        newlines_in_values=to_bool(value.get("newlines_in_values", False), f"{role}['newlines_in_values']"),
        compression=as_compression(value.get("compression"), role),
        encoding=as_encoding(value.get("encoding"), role),
        max_line_bytes=as_max_line_bytes(value.get("max_line_bytes"), role),
    )


def _sql_source(value: Mapping[str, Any], uri: str, conn_id: str | None) -> TableSpec | QuerySpec:
    table, query = value.get("table"), value.get("query")
    if table and query:
        raise ConfigurationError("Give either source['table'] or source['query'], not both.")
    for key in ("mode", "merge_keys"):
        if value.get(key):
            raise ConfigurationError(f"source[{key!r}] is a sink key; remove it from the source.")
    name: TableName | None = None
    if table:
        name = TableName.parse(table, "source['table']")
    elif not isinstance(query, str) or not query.strip():
        raise ConfigurationError(f"source['query'] must be a SELECT statement, got {query!r}.")
    parameters = as_parameters(value.get("parameters"), "source['parameters']")
    if parameters is not None and name is not None:
        raise ConfigurationError("source['parameters'] bind the placeholders of source['query']; a table has none.")
    partition_column = None
    if value.get("partition_column"):
        partition_column = validate_identifier(value["partition_column"], "source['partition_column']")
    if name is not None:
        return TableSpec(table=name, conn_id=conn_id, uri=uri, partition_column=partition_column)
    return QuerySpec(query=str(query).strip().rstrip(";").strip(), parameters=parameters, conn_id=conn_id, uri=uri,
                     partition_column=partition_column)


def _sql_sink(value: Mapping[str, Any], uri: str, conn_id: str | None) -> TableSpec:
    if value.get("query"):
        raise ConfigurationError("A sink writes to sink['table']; sink['query'] is only for sources.")
    for key in ("parameters", "partition_column"):
        if value.get(key):
            raise ConfigurationError(f"sink[{key!r}] is a source key; remove it from the sink.")
    table = TableName.parse(value.get("table"), "sink['table']")
    mode = str(value.get("mode") or "append").strip().lower()
    if mode not in MODES:
        raise ConfigurationError(f"sink['mode'] must be one of {', '.join(MODES)}, got {value.get('mode')!r}.")
    merge_keys = None
    if mode == "upsert":
        merge_keys = as_merge_keys(value.get("merge_keys"), "sink['merge_keys']")
    elif value.get("merge_keys"):
        raise ConfigurationError("sink['merge_keys'] is only used with mode='upsert'; remove it or set the mode.")
    return TableSpec(table=table, conn_id=conn_id, uri=uri, mode=mode, merge_keys=merge_keys)


def _delta_spec(value: Mapping[str, Any], role: str) -> DeltaSpec:
    check_delta_keys(value, role)
    uri = value.get("uri")
    if not uri or not isinstance(uri, str):
        raise ConfigurationError(f"{role}['uri'] is required: the Delta table's folder, e.g. 's3://lake/scores'.")
    uri = uri.strip().rstrip("/")
    check_user_info(uri, f"{role}['uri']")
    conn_id = value.get("conn_id") or None
    if role == "source":
        return DeltaSpec(
            uri=uri, conn_id=conn_id, version=as_version(value.get("version"), "source['version']"),
            columns=as_names(value.get("columns"), "source['columns']"),
            filter=as_filter(value.get("filter"), "source['filter']"),
        )
    return DeltaSpec(
        uri=uri, conn_id=conn_id, **_table_sink_keys(value),
        allow_new_columns=to_bool(value.get("allow_new_columns", False), "sink['allow_new_columns']"),
    )


def _table_sink_keys(value: Mapping[str, Any]) -> dict[str, Any]:
    """The mode of a Delta or Iceberg sink and the keys it needs: ``partition`` (``overwrite_partition``),
    ``merge_keys`` (``merge``), ``partition_by`` (a table the run creates)."""
    mode = as_mode(value.get("mode"), "sink['mode']")
    partition = None
    if mode == "overwrite_partition":
        partition = as_partition(value.get("partition"), "sink['partition']")
    elif value.get("partition"):
        raise ConfigurationError("sink['partition'] is only used with mode='overwrite_partition'; remove it or set "
                                 "the mode.")
    merge_keys = None
    if mode == "merge":
        merge_keys = as_merge_keys(value.get("merge_keys"), "sink['merge_keys']")
    elif value.get("merge_keys"):
        raise ConfigurationError("sink['merge_keys'] is only used with mode='merge'; remove it or set the mode.")
    partition_by = as_names(value.get("partition_by"), "sink['partition_by']")
    if partition is not None and partition_by is not None:
        stray = [name for name, _ in partition if name not in partition_by]
        if stray:
            raise ConfigurationError(
                f"sink['partition'] names {stray}, which are not in sink['partition_by'] {list(partition_by)}."
            )
    return {"mode": mode, "partition_by": partition_by, "partition": partition, "merge_keys": merge_keys}


def _iceberg_spec(value: Mapping[str, Any], role: str) -> IcebergSpec:
    check_iceberg_keys(value, role)
    namespace, name = as_identifier(value.get("table"), f"{role}['table']")
    warehouse = value.get("warehouse")
    if not warehouse or not isinstance(warehouse, str):
        raise ConfigurationError(
            f"{role}['warehouse'] is required: the catalog's warehouse, e.g. 's3://lake/warehouse'."
        )
    warehouse = warehouse.strip().rstrip("/")
    check_user_info(warehouse, f"{role}['warehouse']")
    catalog_uri = str(value.get("catalog_uri") or "").strip()
    catalog_conn_id = value.get("catalog_conn_id") or None
    if not catalog_uri and not catalog_conn_id:
        raise ConfigurationError(
            f"An Iceberg {role} needs its catalog: {role}['catalog_conn_id'] (an Airflow connection to the catalog "
            f"database, PostgreSQL or SQLite) or {role}['catalog_uri'] (a SQLAlchemy URL without a password)."
        )
    if catalog_uri and "@" in catalog_uri.split("://", 1)[-1].split("/", 1)[0] and ":" in catalog_uri.split(
            "://", 1)[-1].split("@", 1)[0]:
        raise ConfigurationError(
            f"{role}['catalog_uri'] holds a password; use {role}['catalog_conn_id'] (an Airflow connection) instead."
        )
    common = {"table": f"{namespace}.{name}", "warehouse": warehouse, "uri": f"{warehouse}/{namespace}/{name}",
              "catalog_uri": catalog_uri, "catalog_conn_id": catalog_conn_id, "conn_id": value.get("conn_id") or None}
    if role == "source":
        snapshot = value.get("snapshot_id")
        if snapshot is not None and (isinstance(snapshot, bool) or not isinstance(snapshot, int)):
            raise ConfigurationError(f"source['snapshot_id'] must be a snapshot id (an integer), got {snapshot!r}.")
        return IcebergSpec(**common, snapshot_id=snapshot, columns=as_names(value.get("columns"), "source['columns']"),
                           filter=as_filter(value.get("filter"), "source['filter']"))
    return IcebergSpec(**common, **_table_sink_keys(value),
                       allow_new_columns=to_bool(value.get("allow_new_columns", False), "sink['allow_new_columns']"))
