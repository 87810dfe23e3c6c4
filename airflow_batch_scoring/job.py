"""The ScoringJob spec: the one JSON document the driver hands to every replica.

A job names the processed model, the source and the sink, the scoring options, and the shard plan. It never holds
credentials: those travel separately (see :mod:`airflow_batch_scoring.runtime.secrets`).

Shared with the runtime: never imports Airflow.
"""

from __future__ import annotations

import base64
import codecs
import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from typing import Any

import pyarrow as pa

from airflow_batch_scoring.errors import ConfigurationError
from airflow_batch_scoring.io.files import check_user_info
from airflow_batch_scoring.schema import ModelSchema
from airflow_batch_scoring.sql_spec import SQL_KEYS, is_sql_spec, parse_sql_keys

FORMATS = ("csv", "jsonl", "parquet")
DEFAULT_PART_SIZE = 16 * 1024 * 1024
DEFAULT_WRITE_CONCURRENCY = 4
MIN_UPLOAD_PART = 5 * 1024 * 1024
_SUFFIX_FORMATS = {
    ".csv": "csv",
    ".txt": "csv",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "jsonl",
    ".parquet": "parquet",
    ".pq": "parquet",
}


#: compressed text inputs read as streams (each file whole, by one replica): suffix -> fsspec compression name.
COMPRESSIONS = {".gz": "gzip", ".bz2": "bz2", ".xz": "xz", ".zst": "zstd"}


def compression_of(uri: str) -> str | None:
    """The compression a file's suffix names (``day.csv.gz`` -> ``gzip``), or ``None``."""
    name = uri.rstrip("/").rsplit("/", 1)[-1].lower()
    return next((codec for suffix, codec in COMPRESSIONS.items() if name.endswith(suffix)), None)


def infer_format(uri: str) -> str | None:
    """Return the format a URI's suffix names (``data.csv`` or ``data.csv.gz`` -> ``csv``), or ``None``."""
    name = uri.rstrip("/").rsplit("/", 1)[-1].lower()
    for suffix in COMPRESSIONS:
        name = name.removesuffix(suffix)
    for suffix, fmt in _SUFFIX_FORMATS.items():
        if name.endswith(suffix):
            return fmt
    return None


def normalize_format(fmt: str | None, uri: str, role: str) -> str:
    """Validate ``fmt`` or infer it from ``uri``.

    :raises ConfigurationError: for an unknown format, or when none is given and the suffix tells none.
    """
    if fmt:
        value = str(fmt).strip().lower()
        value = {"json": "jsonl", "ndjson": "jsonl", "json_lines": "jsonl", "pq": "parquet"}.get(value, value)
        if value not in FORMATS:
            raise ConfigurationError(f"Unknown {role} format {fmt!r}: use one of {', '.join(FORMATS)}.")
        return value
    inferred = infer_format(uri)
    if inferred is None:
        raise ConfigurationError(
            f"Cannot tell the {role} format of {uri!r} from its name: set {role}['format'] to one of "
            f"{', '.join(FORMATS)}."
        )
    return inferred


def _as_bool(value: Any, what: str) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false", "1", "0", "yes", "no"):
        return value.strip().lower() in ("true", "1", "yes")
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    raise ConfigurationError(f"{what} must be true or false, got {value!r}.")


#: ``header="auto"``: decide from the file's first line (source), or from the input (sink).
AUTO = "auto"


def _as_header(value: Any, what: str) -> bool | str:
    if value is None or (isinstance(value, str) and value.strip().lower() in ("", AUTO)):
        return AUTO
    try:
        return _as_bool(value, what)
    except ConfigurationError:
        raise ConfigurationError(f"{what} must be true, false or 'auto', got {value!r}.") from None


def _as_columns(value: Any, what: str) -> list[str] | None:
    if value is None or value == "" or value == []:
        return None
    if isinstance(value, str):
        value = [part.strip() for part in value.split(",") if part.strip()]
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) and v for v in value):
        raise ConfigurationError(f"{what} must be a list of column names, got {value!r}.")
    lowered = [v.lower() for v in value]
    if len(set(lowered)) != len(lowered):
        raise ConfigurationError(f"{what} names a column twice (names are case-insensitive): {value!r}.")
    return list(value)


_COMPRESSION_NAMES = {"gzip": "gzip", "gz": "gzip", "bz2": "bz2", "xz": "xz"}
#: the file suffix of each output compression.
COMPRESSION_SUFFIXES = {"gzip": "gz", "bz2": "bz2", "xz": "xz"}


def _as_compression(value: Any, role: str) -> str | None:
    if value in (None, "", "none", False):
        return None
    if role != "sink":
        raise ConfigurationError(
            f"{role}['compression'] is not set: a source's compression is read from its file names (.gz, .bz2, .xz, "
            ".zst)."
        )
    name = _COMPRESSION_NAMES.get(str(value).strip().lower())
    if name is None:
        raise ConfigurationError(f"{role}['compression'] must be gzip, bz2 or xz (or none), got {value!r}.")
    return name


_ASCII_PROBE = "\n\r,;\t|\"'{}[]:\\ 0123456789.+-eE_abcxyzABCXYZ"


def _as_encoding(value: Any, role: str) -> str | None:
    """A text source's encoding as its codec's name; ``None`` for UTF-8 (the default).

    :raises ConfigurationError: for a sink, an unknown codec, or one that does not write ASCII as ASCII (UTF-16).
    """
    if value in (None, ""):
        return None
    if role != "sink" and isinstance(value, str):
        try:
            name = codecs.lookup(value.strip()).name
        except LookupError:
            name = ""
        if name in ("utf-8", "utf-8-sig"):
            return None
        if name:
            try:
                compatible = _ASCII_PROBE.encode(name) == _ASCII_PROBE.encode("ascii")
            except (UnicodeError, LookupError):
                compatible = False
            if compatible:
                return name
            raise ConfigurationError(
                f"{role}['encoding'] {value!r} does not write ASCII characters as single ASCII bytes (as UTF-16 and "
                "UTF-32 do): convert the files to UTF-8 first."
            )
        raise ConfigurationError(
            f"{role}['encoding'] {value!r} is not a known text encoding; use e.g. 'utf-8' (the default), 'latin-1' "
            "or 'cp1252'."
        )
    if role == "sink":
        raise ConfigurationError(f"{role}['encoding'] is for sources: outputs are always written as UTF-8.")
    raise ConfigurationError(f"{role}['encoding'] must be an encoding's name such as 'latin-1', got {value!r}.")


def _as_max_line_bytes(value: Any, role: str) -> int | None:
    if value in (None, ""):
        return None
    if role == "sink":
        raise ConfigurationError(f"{role}['max_line_bytes'] is for sources.")
    try:
        number = int(value) if not isinstance(value, bool) and float(value) == int(float(value)) else 0
    except (TypeError, ValueError):
        number = 0
    if number < 1024:
        raise ConfigurationError(
            f"{role}['max_line_bytes'] must be a whole number of bytes, at least 1024 (the default is 16 MiB, "
            f"16777216), got {value!r}."
        )
    return number


@dataclass
class DataSpec:
    """Where data is read from or written to.

    :param uri: a file, folder or glob (source) or a folder (sink), e.g. ``file:///data/in/*.csv``.
    :param format: ``csv``, ``jsonl`` or ``parquet``; inferred from the suffix when left out.
    :param header: CSV only: whether the file has a header line: ``True``, ``False`` or ``"auto"`` (the default).
        Source, ``"auto"``: a file's first line is its header when its fields are the expected column names
        (``columns``, else the model's input columns; see :mod:`airflow_batch_scoring.io.csv_header`). Sink,
        ``"auto"``: a header line when the (first) input file had one; the driver resolves it before replicas start.
    :param columns: CSV without header: the column names in file order (default: the model's input columns).
    :param conn_id: the Airflow connection that grants access (resolved by the operator, never by the runtime).
    :param newlines_in_values: CSV only: quoted values may hold line breaks; then files are never split.
    :param table: SQL: the source or sink table (``table`` or ``schema.table``), see :mod:`~.sql_spec`.
    :param query: SQL source: a SELECT statement, its placeholders bound from ``parameters``.
    :param parameters: SQL source: the query's parameters (a mapping, or a list for positional placeholders).
    :param partition_column: SQL source: a numeric or date column whose min-max range is split between replicas.
    :param mode: SQL sink: ``append``, ``replace`` or ``upsert``.
    :param merge_keys: SQL sink, ``upsert``: the columns that identify a row.
    :param compression: file sink, CSV or JSON lines: ``gzip``, ``bz2`` or ``xz`` (parts named ``part-00000.csv.gz``).
        A source's compression is read from its file names.
    :param encoding: text source: the files' encoding when it is not UTF-8 (``latin-1``, ``cp1252``, ...; stored as
        the codec's name, ``None`` for UTF-8).
    :param max_line_bytes: text source: the longest line (or CSV record) read, line break included; a longer one is
        a bad row (``line_too_long``). ``None``: 16 MiB.
    """

    uri: str = ""
    format: str = ""
    header: bool | str = AUTO
    columns: list[str] | None = None
    conn_id: str | None = None
    newlines_in_values: bool = False
    table: str | None = None
    query: str | None = None
    parameters: dict[str, Any] | list[Any] | None = None
    partition_column: str | None = None
    mode: str | None = None
    merge_keys: list[str] | None = None
    compression: str | None = None
    encoding: str | None = None
    max_line_bytes: int | None = None

    @property
    def is_sql(self) -> bool:
        """Whether this spec names a SQL table or query (rather than files)."""
        return bool(self.table or self.query)

    @property
    def kind(self) -> str:
        """``"sql"`` (a table or a query) or ``"files"``: what the Airflow side dispatches on, in one place
        (:func:`airflow_batch_scoring.hooks.data.data_access`)."""
        return "sql" if self.is_sql else "files"

    @classmethod
    def parse(cls, value: DataSpec | Mapping[str, Any] | str, role: str) -> DataSpec:
        """Build a spec from a mapping (or a bare URI string).

        :raises ConfigurationError: naming the key that is wrong.
        """
        if isinstance(value, DataSpec):
            return value
        if isinstance(value, str):
            value = {"uri": value}
        if not isinstance(value, Mapping):
            raise ConfigurationError(f"{role} must be a mapping with at least 'uri', got {type(value).__name__}.")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(value) - known)
        if unknown:
            raise ConfigurationError(f"Unknown {role} key(s) {unknown}: the keys are {sorted(known)}.")
        if is_sql_spec(value):
            if value.get("compression"):
                raise ConfigurationError(f"{role}['compression'] is for files, not SQL tables.")
            return cls(conn_id=value.get("conn_id") or None, **parse_sql_keys(value, role))
        for key in SQL_KEYS:
            if value.get(key) is not None and value.get(key) != []:
                raise ConfigurationError(f"{role}[{key!r}] is for SQL tables: set {role}['table'] (or a query) too.")
        uri = value.get("uri")
        if not uri or not isinstance(uri, str):
            raise ConfigurationError(f"{role}['uri'] is required, e.g. 'file:///data/{role}/'.")
        uri = uri.strip()
        check_user_info(uri, f"{role}['uri']")  # before any message could quote it
        fmt = value.get("format") or ""
        if fmt or infer_format(uri):
            fmt = normalize_format(fmt, uri, role)
        return cls(
            uri=uri,
            format=fmt,
            header=_as_header(value.get("header"), f"{role}['header']"),
            columns=_as_columns(value.get("columns"), f"{role}['columns']"),
            conn_id=value.get("conn_id") or None,
            newlines_in_values=_as_bool(value.get("newlines_in_values", False), f"{role}['newlines_in_values']"),
            compression=_as_compression(value.get("compression"), role),
            encoding=_as_encoding(value.get("encoding"), role),
            max_line_bytes=_as_max_line_bytes(value.get("max_line_bytes"), role),
        )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Piece:
    """A part of one input file: a byte range (text formats) or a list of row groups (Parquet).

    A text piece owns the lines whose first byte lies in ``[start, end)``; ``end = -1`` means the end of the file.
    ``rows`` is the piece's row count when the planner knows it (Parquet), for progress and ETA.
    """

    path: str
    start: int = 0
    end: int = -1
    row_groups: list[int] | None = None
    rows: int | None = None
    #: SQL source: the piece's range of the partition column (see :mod:`airflow_batch_scoring.sources.sql_relation`).
    sql_range: dict[str, Any] | None = None


@dataclass
class ModelSpec:
    """The processed model every replica loads.

    :param uri: the model as the user named it (``models:/churn@champion``, a path, ...).
    :param path: the local folder or file the runtime loads (MODEL_PATH).
    :param flavor: ``mlflow`` or ``sklearn``.
    :param resolved_uri: the fixed reference the alias or stage resolved to (``models:/churn/3``).
    :param version: the registry version, when the model came from a registry.
    :param digest: ``sha256:<hex>`` of the processed artifact.
    :param artifact_type: the artifact type it was processed as (``python/mlflow``, ``sklearn/joblib``, ``onnx``,
        ``h2o3/mojo``, or a plug-in's name).
    :param source_model_name: the registry model name it came from, when it came from a registry.
    :param source_model_version: the registry version it came from (an alias resolved to a fixed version).
    :param source_metadata: what else is known about the source (alias, run id, tags, the source URI's digest).
    """

    uri: str
    path: str
    flavor: str
    resolved_uri: str | None = None
    name: str | None = None
    version: str | None = None
    digest: str | None = None
    input_schema: list[dict[str, str]] | None = None
    output_schema: list[dict[str, str]] | None = None
    artifact_type: str | None = None
    source_model_name: str | None = None
    source_model_version: str | None = None
    source_metadata: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class ScoringJob:
    """Everything a replica needs to score its shard, as one JSON document.

    :param job_id: unique per run (every attempt of one run shares it); names the staging folder.
    :param attempt: names this attempt of the run (``try2``); staged part names carry it, and only the attempt
        holding the run's lease may publish (see :mod:`airflow_batch_scoring.sinks.file_staging`).
    :param runtime_image: the container image the replicas run in (the Kubernetes runtime), for the manifest.
    :param shards: ``shards[i]`` is the list of pieces replica ``i`` scores.
    :param staging_uri: where replicas write their parts before the commit publishes them.
    :param part_size: bytes per read request and per multipart-upload part (at least 5 MiB is used for
        uploads), and the unit in which a large text file is split between replicas.
    :param write_concurrency: parts of one output object uploaded at once (S3 and S3-compatible stores).
    :param on_bad_rows: ``"fail"`` at the first bad row, or ``"quarantine"`` bad rows into ``<sink>/_errors/``
        (see :mod:`airflow_batch_scoring.io.bad_rows.policy`).
    :param max_bad_rows: quarantine: the run fails when more rows are bad (``None``: no count limit).
    :param max_bad_fraction: quarantine: the run fails when a larger share of the rows read is bad.
    """

    job_id: str
    model: ModelSpec
    source: DataSpec
    sink: DataSpec
    staging_uri: str
    shards: list[list[Piece]] = field(default_factory=list)
    batch_size: int = 100_000
    passthrough_columns: list[str] = field(default_factory=list)
    input_schema: list[dict[str, str]] | None = None
    output_schema: list[dict[str, str]] | None = None
    schema_check: bool = True
    predict_probabilities: bool = False
    part_size: int = DEFAULT_PART_SIZE
    write_concurrency: int = DEFAULT_WRITE_CONCURRENCY
    attempt: str = "try1"
    runtime_image: str | None = None
    on_bad_rows: str = "fail"
    max_bad_rows: int | None = None
    max_bad_fraction: float | None = None
    #: the passthrough columns' Arrow types for the whole run, decided by the driver before any replica starts (an
    #: Arrow IPC schema, base64; see :mod:`airflow_batch_scoring.runtime.passthrough`).
    passthrough_types: str | None = None

    @property
    def replicas(self) -> int:
        return len(self.shards)

    def input_model_schema(self) -> ModelSchema | None:
        return ModelSchema.parse(self.input_schema)

    def output_model_schema(self) -> ModelSchema | None:
        return ModelSchema.parse(self.output_schema)

    def passthrough_arrow_types(self) -> dict[str, pa.DataType]:
        """The run's passthrough column types, by lower-cased name (empty when the driver recorded none)."""
        if not self.passthrough_types:
            return {}
        schema = pa.ipc.read_schema(pa.py_buffer(base64.b64decode(self.passthrough_types)))
        return {f.name.lower(): f.type for f in schema}

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> ScoringJob:
        data = json.loads(text)
        data["model"] = ModelSpec(**data["model"])
        data["source"] = DataSpec(**data["source"])
        data["sink"] = DataSpec(**data["sink"])
        data["shards"] = [[Piece(**piece) for piece in shard] for shard in data["shards"]]
        return cls(**data)
