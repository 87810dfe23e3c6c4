"""The SQL keys of a source or sink spec: validation of table names, columns, modes and query parameters.

A SQL source is ``{"conn_id": ..., "table": "schema.table"}`` or ``{"conn_id": ..., "query": "SELECT ...",
"parameters": {...}}``; a SQL sink is ``{"conn_id": ..., "table": ..., "mode": "append"|"replace"|"upsert",
"merge_keys": [...]}``. Names are validated here (letters, digits and underscores; ``schema.table`` at most) and
quoted by the database's own dialect where SQL is built; values are always bound, never pasted into SQL.

Shared with the runtime: never imports Airflow.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from airflow_batch_scoring.errors import ConfigurationError

MODES = ("append", "replace", "upsert")
SQL_KEYS = ("table", "query", "parameters", "partition_column", "mode", "merge_keys")
#: the longest identifier PostgreSQL keeps (63 bytes); longer names would be silently truncated there.
MAX_IDENTIFIER = 63
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
#: a URL with a password (``scheme://user:password@host``): credentials belong in a connection, not in a spec.
_URL_WITH_PASSWORD = re.compile(r"^[A-Za-z0-9+.-]+://[^/@:]*:[^/@]*@")
#: the file keys that mean nothing for a table or a query, with their defaults.
_FILE_KEYS: dict[str, tuple[Any, ...]] = {
    "format": ("", None), "header": (False, None, "auto"), "columns": (None, [], ""), "newlines_in_values": (False,),
    "encoding": (None, ""), "max_line_bytes": (None, ""),
}


def is_sql_spec(value: Mapping[str, Any]) -> bool:
    """Whether a spec mapping names a table or a query (rather than files)."""
    return bool(value.get("table") or value.get("query"))


def validate_identifier(name: Any, what: str) -> str:
    """Return ``name`` when it is a plain SQL identifier (letters, digits, ``_``; not starting with a digit).

    :raises ConfigurationError: naming ``what`` and the offending name.
    """
    if not isinstance(name, str) or not _IDENTIFIER.fullmatch(name) or len(name) > MAX_IDENTIFIER:
        raise ConfigurationError(
            f"{what} {name!r} is not a valid name: use letters, digits and underscores only (not starting with a "
            f"digit, at most {MAX_IDENTIFIER} characters). Names are quoted by the database's dialect; anything else "
            "(spaces, quotes, semicolons) is refused so that no SQL can be injected through a name."
        )
    return name


def validate_table(name: Any, what: str) -> str:
    """Return ``name`` when it is ``table`` or ``schema.table`` made of plain identifiers.

    :raises ConfigurationError: e.g. for ``"scores; DROP TABLE x"``.
    """
    if not isinstance(name, str) or not name.strip():
        raise ConfigurationError(f"{what} must be a table name such as 'scores' or 'analytics.scores', got {name!r}.")
    parts = name.strip().split(".")
    if len(parts) > 2:
        raise ConfigurationError(f"{what} {name!r} has more than two parts: give 'table' or 'schema.table'.")
    for part in parts:
        try:
            validate_identifier(part, what)
        except ConfigurationError:
            raise ConfigurationError(
                f"{what} {name!r} is not a valid table name: give 'table' or 'schema.table', each part made of "
                "letters, digits and underscores (not starting with a digit). Names are quoted by the database's "
                "dialect; anything else (spaces, quotes, semicolons) is refused so that no SQL can be injected "
                "through a name."
            ) from None
    return name.strip()


def split_table(name: str) -> tuple[str | None, str]:
    """``"analytics.scores"`` -> ``("analytics", "scores")``; ``"scores"`` -> ``(None, "scores")``."""
    schema, _, table = name.rpartition(".")
    return (schema or None), table


def _columns(value: Any, what: str) -> list[str]:
    if isinstance(value, str):
        value = [part.strip() for part in value.split(",") if part.strip()]
    if not isinstance(value, (list, tuple)) or not value:
        raise ConfigurationError(f"{what} must be a non-empty list of column names, got {value!r}.")
    names = [validate_identifier(v, what) for v in value]
    if len({n.lower() for n in names}) != len(names):
        raise ConfigurationError(f"{what} names a column twice (names are case-insensitive): {value!r}.")
    return names


def _parameters(value: Any, what: str) -> dict[str, Any] | list[Any] | None:
    if value is None or value == {} or value == []:
        return None
    if isinstance(value, Mapping):
        for key in value:
            validate_identifier(key, f"{what} key")
        return dict(value)
    if isinstance(value, (list, tuple)):
        return list(value)
    raise ConfigurationError(
        f"{what} must be a mapping ({{'day': '2026-01-01'}}, for %(day)s or :day placeholders) or a list (for "
        f"positional placeholders), got {type(value).__name__}."
    )


def parse_sql_keys(value: Mapping[str, Any], role: str) -> dict[str, Any]:
    """Validate the SQL keys of a source or sink mapping; return the DataSpec fields they set.

    :raises ConfigurationError: naming the key that is wrong and how to fix it.
    """
    for key, defaults in _FILE_KEYS.items():
        if key in value and value[key] not in defaults:
            raise ConfigurationError(
                f"{role}[{key!r}] applies to files, not to a SQL table or query; remove it (the table's own columns "
                "and types are read)."
            )
    uri = value.get("uri") or ""
    if uri and (not isinstance(uri, str) or "://" not in uri):
        raise ConfigurationError(
            f"{role}['uri'] of a SQL {role} is a SQLAlchemy URL such as 'sqlite:////data/scores.db' (or leave it "
            "out and set conn_id), got {uri!r}."
        )
    if uri and _URL_WITH_PASSWORD.match(uri):
        raise ConfigurationError(
            f"{role}['uri'] holds a password: put the credentials in an Airflow connection and set "
            f"{role}['conn_id'] instead (a job's spec is written to files and logs; a connection's password is not)."
        )
    if not uri and not value.get("conn_id"):
        raise ConfigurationError(
            f"A SQL {role} needs {role}['conn_id']: an Airflow connection whose hook is a DbApiHook (postgres, "
            f"sqlite, mysql, mssql, ...). Outside Airflow (batch-scoring score) give {role}['uri'], a SQLAlchemy URL "
            f"without its password, and the full URL as {{\"{role}\": {{\"sqlalchemy_url\": ...}}}} in the "
            "--storage-options file."
        )
    table, query = value.get("table"), value.get("query")
    fields: dict[str, Any] = {"uri": uri.strip()}
    if role == "source":
        if table and query:
            raise ConfigurationError("Give either source['table'] or source['query'], not both.")
        for key in ("mode", "merge_keys"):
            if value.get(key):
                raise ConfigurationError(f"source[{key!r}] is a sink key; remove it from the source.")
        if table:
            fields["table"] = validate_table(table, "source['table']")
        else:
            if not isinstance(query, str) or not query.strip():
                raise ConfigurationError(f"source['query'] must be a SELECT statement, got {query!r}.")
            fields["query"] = query.strip().rstrip(";").strip()
        fields["parameters"] = _parameters(value.get("parameters"), "source['parameters']")
        if fields["parameters"] is not None and table:
            raise ConfigurationError("source['parameters'] bind the placeholders of source['query']; a table has none.")
        if value.get("partition_column"):
            fields["partition_column"] = validate_identifier(value["partition_column"], "source['partition_column']")
        return fields
    if query:
        raise ConfigurationError("A sink writes to sink['table']; sink['query'] is only for sources.")
    for key in ("parameters", "partition_column"):
        if value.get(key):
            raise ConfigurationError(f"sink[{key!r}] is a source key; remove it from the sink.")
    fields["table"] = validate_table(table, "sink['table']")
    mode = str(value.get("mode") or "append").strip().lower()
    if mode not in MODES:
        raise ConfigurationError(f"sink['mode'] must be one of {', '.join(MODES)}, got {value.get('mode')!r}.")
    fields["mode"] = mode
    if mode == "upsert":
        fields["merge_keys"] = _columns(value.get("merge_keys"), "sink['merge_keys']")
    elif value.get("merge_keys"):
        raise ConfigurationError("sink['merge_keys'] is only used with mode='upsert'; remove it or set the mode.")
    return fields
