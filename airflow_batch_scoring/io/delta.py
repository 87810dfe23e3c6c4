"""Reaching a Delta Lake table with ``deltalake`` (delta-rs): its location and storage options from the same fsspec
options the file sources and sinks use, opening it (at a version), and its schema in Delta's terms.

delta-rs has its own object-store clients: :func:`delta_storage_options` maps the fsspec options the hooks give
(``key``/``secret``/``token``/``endpoint_url``/region for S3, ...) to its keys. They hold credentials: they are
never logged nor put in an error message.

Shared with the runtime: never imports Airflow.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

import pyarrow as pa

from airflow_batch_scoring.errors import ConfigurationError, InputError
from airflow_batch_scoring.io.files import normalize_uri, scheme_of

if TYPE_CHECKING:
    from deltalake import DeltaTable

#: the commit-info keys that record a run (``custom_metadata`` of the commit).
RUN_ID_KEY = "airflow_batch_scoring.run_id"
ATTEMPT_KEY = "airflow_batch_scoring.attempt"
#: the ``txn`` application id of a run (Delta's own idempotent-write record: its version is 1 once committed).
APP_ID_PREFIX = "airflow-batch-scoring:"


def require_deltalake() -> None:
    """:raises ConfigurationError: when the ``delta`` extra is not installed."""
    try:
        import deltalake  # noqa: F401
    except ImportError:
        raise ConfigurationError(
            "Delta Lake tables need the 'deltalake' package: install airflow-batch-scoring[delta]."
        ) from None


def table_uri(uri: str) -> str:
    """The table location as delta-rs takes it: a local path, or ``s3://bucket/path`` (no trailing slash)."""
    normalized = normalize_uri(uri).rstrip("/")
    if scheme_of(normalized) in ("file", "local"):
        path = normalized.split("://", 1)[1] if "://" in normalized else normalized
        return unquote(path)
    return normalized


def delta_storage_options(uri: str, options: Mapping[str, Any] | None) -> dict[str, str]:
    """delta-rs ``storage_options`` for ``uri`` from the fsspec options of its connection (see
    :mod:`airflow_batch_scoring.hooks.storage`).

    S3-compatible stores (SeaweedFS, MinIO) get their endpoint, plain HTTP when the endpoint is ``http://``, and
    unsafe renames allowed (delta-rs commits with a conditional put where the store has one; with several writers to
    one table on a store without it, use a store that has it).
    """
    options = dict(options or {})
    scheme = scheme_of(normalize_uri(uri))
    result: dict[str, str] = {}
    if scheme in ("s3", "s3a"):
        if options.get("anon"):
            result["AWS_SKIP_SIGNATURE"] = "true"
        for key, name in (("key", "AWS_ACCESS_KEY_ID"), ("secret", "AWS_SECRET_ACCESS_KEY"),
                          ("token", "AWS_SESSION_TOKEN")):
            if options.get(key):
                result[name] = str(options[key])
        endpoint = options.get("endpoint_url")
        region = (options.get("client_kwargs") or {}).get("region_name")
        if endpoint:
            result["AWS_ENDPOINT_URL"] = str(endpoint)
            if str(endpoint).startswith("http://"):
                result["AWS_ALLOW_HTTP"] = "true"
            style = ((options.get("config_kwargs") or {}).get("s3") or {}).get("addressing_style")
            result["AWS_VIRTUAL_HOSTED_STYLE_REQUEST"] = "true" if style == "virtual" else "false"
        result["AWS_REGION"] = str(region or "us-east-1")
        result["AWS_S3_ALLOW_UNSAFE_RENAME"] = "true"
        result["AWS_EC2_METADATA_DISABLED"] = "true"
    elif scheme in ("gs", "gcs"):
        token = options.get("token")
        if isinstance(token, dict):
            result["GOOGLE_SERVICE_ACCOUNT_KEY"] = json.dumps(token)
        elif token == "anon":
            result["GOOGLE_SKIP_SIGNATURE"] = "true"
        if options.get("endpoint_url"):
            result["GOOGLE_BASE_URL"] = str(options["endpoint_url"])
    elif scheme in ("abfs", "abfss", "az"):
        for key, name in (("account_name", "AZURE_STORAGE_ACCOUNT_NAME"), ("account_key", "AZURE_STORAGE_ACCOUNT_KEY"),
                          ("sas_token", "AZURE_STORAGE_SAS_TOKEN"), ("tenant_id", "AZURE_STORAGE_TENANT_ID"),
                          ("client_id", "AZURE_STORAGE_CLIENT_ID"),
                          ("client_secret", "AZURE_STORAGE_CLIENT_SECRET")):
            if options.get(key):
                result[name] = str(options[key])
    return result


def open_table(uri: str, options: Mapping[str, Any] | None, version: int | None = None) -> DeltaTable | None:
    """The table at ``uri`` (at ``version``), or ``None`` when there is no Delta table there.

    :raises InputError: when the store refuses access, or the version does not exist.
    """
    require_deltalake()
    from deltalake import DeltaTable
    from deltalake.exceptions import DeltaError, TableNotFoundError

    location = table_uri(uri)
    try:
        return DeltaTable(location, version=version, storage_options=delta_storage_options(uri, options))
    except TableNotFoundError:
        return None
    except (DeltaError, OSError) as err:
        raise InputError(f"cannot open the Delta table {uri}{_at(version)}: {_short(err)}") from None


def _at(version: int | None) -> str:
    return f" at version {version}" if version is not None else ""


def _short(err: BaseException) -> str:
    """The first line of a delta-rs error (never the storage options, which it does not echo)."""
    return str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__


def table_schema(table: DeltaTable) -> pa.Schema:
    """The table's schema as Arrow (string columns as ``string``)."""
    return pa.schema(table.schema().to_arrow())


def delta_types(schema: pa.Schema) -> dict[str, str]:
    """Each column's Delta type (``long``, ``double``, ``string``, ...), by name."""
    from deltalake import Schema

    return {field.name: _type_name(field.type) for field in Schema.from_arrow(schema).fields}


def table_types(table: DeltaTable) -> dict[str, str]:
    return {field.name: _type_name(field.type) for field in table.schema().fields}


def _type_name(delta_type: Any) -> str:
    """``PrimitiveType("long")`` -> ``long``."""
    text = str(delta_type)
    if text.startswith("PrimitiveType("):
        return text[len("PrimitiveType(") : -1].strip("\"'")
    return text


def writable(table: pa.Table) -> pa.Table:
    """``table`` with the types Delta stores: timestamps in microseconds, large strings as strings."""
    fields = []
    changed = False
    for field in table.schema:
        kind = field.type
        if pa.types.is_timestamp(kind) and kind.unit != "us":
            kind, changed = pa.timestamp("us", tz=kind.tz), True
        elif pa.types.is_large_string(kind):
            kind, changed = pa.string(), True
        elif pa.types.is_dictionary(kind):
            kind, changed = kind.value_type, True
        fields.append(pa.field(field.name, kind, nullable=True))
    return table.cast(pa.schema(fields)) if changed else table


def partition_text(value: Any) -> str | None:
    """A partition value as Delta's log holds it (a string; ``None`` for null)."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if hasattr(value, "isoformat"):
        return value.isoformat(sep=" ") if hasattr(value, "hour") else value.isoformat()
    return str(value)
