"""The SQL keys of a source or sink spec: validation of identifiers, merge keys, query parameters and URLs.

A SQL source is ``{"conn_id": ..., "table": "schema.table"}`` or ``{"conn_id": ..., "query": "SELECT ...",
"parameters": {...}}``; a SQL sink is ``{"conn_id": ..., "table": ..., "mode": "append"|"replace"|"upsert",
"merge_keys": [...]}``. Names are validated here (letters, digits and underscores; a table name is parsed into
:class:`~airflow_batch_scoring.specs.TableName`, ``schema.table`` at most) and quoted by the database's own dialect
where SQL is built; values are always bound, never pasted into SQL.

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


def as_merge_keys(value: Any, what: str) -> tuple[str, ...]:
    """The columns that identify a row (``sink['merge_keys']``): plain identifiers, each once.

    :raises ConfigurationError: for an empty list, a name that is not an identifier, or a name given twice.
    """
    if isinstance(value, str):
        value = [part.strip() for part in value.split(",") if part.strip()]
    if not isinstance(value, (list, tuple)) or not value:
        raise ConfigurationError(f"{what} must be a non-empty list of column names, got {value!r}.")
    names = tuple(validate_identifier(v, what) for v in value)
    if len({n.lower() for n in names}) != len(names):
        raise ConfigurationError(f"{what} names a column twice (names are case-insensitive): {value!r}.")
    return names


def as_parameters(value: Any, what: str) -> dict[str, Any] | tuple[Any, ...] | None:
    """A query's parameters: a mapping (named placeholders) or a tuple (positional ones); ``None`` when empty.

    :raises ConfigurationError: for another type, or a mapping key that is not an identifier.
    """
    if value is None or value == {} or value == []:
        return None
    if isinstance(value, Mapping):
        for key in value:
            validate_identifier(key, f"{what} key")
        return dict(value)
    if isinstance(value, (list, tuple)):
        return tuple(value)
    raise ConfigurationError(
        f"{what} must be a mapping ({{'day': '2026-01-01'}}, for %(day)s or :day placeholders) or a list (for "
        f"positional placeholders), got {type(value).__name__}."
    )


def check_sql_keys(value: Mapping[str, Any], role: str) -> str:
    """Check the keys every SQL source or sink shares (no file keys, a URL without password, a connection or a
    URL); return the spec's ``uri`` (a SQLAlchemy URL, or ``""``).

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
    return uri.strip()
