"""Airflow SQL connections -> the SQLAlchemy URL the runtime opens (secret material, never in the job or logs).

Any connection whose hook is a ``DbApiHook`` works (postgres, sqlite, mysql, mssql, trino, ...): the hook is resolved
with ``conn.get_hook()`` as the common.sql provider does, and the provider's own hook builds the URL (its
``sqlalchemy_url``, else its ``get_uri()``), so extras such as ``sqlalchemy_scheme`` / ``sqlalchemy_query`` and
token-based logins (``iam``) behave as in every other Airflow SQL task. The password is registered with Airflow's
secret masker before the URL goes anywhere; the URL reaches the replicas only on their standard input.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import unquote

from airflow_batch_scoring.errors import ConfigurationError
from airflow_batch_scoring.io.sql import URL_KEY
from airflow_batch_scoring.specs import DataSpec


def _mask(*values: Any) -> None:
    from airflow.sdk.log import mask_secret

    for value in values:
        if isinstance(value, str) and value:
            mask_secret(value)


def get_db_hook(conn_id: str) -> Any:
    """The connection's hook, checked to be a ``DbApiHook``.

    :raises ConfigurationError: when the connection does not exist, its type has no installed hook, or its hook is
        not a SQL hook.
    """
    return _connection_and_hook(conn_id)[1]


def _connection_and_hook(conn_id: str) -> tuple[Any, Any]:
    from airflow.providers.common.sql.hooks.sql import DbApiHook
    from airflow.sdk import BaseHook

    try:
        connection = BaseHook.get_connection(conn_id)
    except Exception as err:
        raise ConfigurationError(
            f"The Airflow connection {conn_id!r} cannot be used: {type(err).__name__}: {err}. Create it (Admin > "
            "Connections, or an AIRFLOW_CONN_* variable) or fix conn_id."
        ) from None
    _mask(connection.password)
    try:
        hook = connection.get_hook()
    except Exception as err:
        raise ConfigurationError(
            f"The connection {conn_id!r} has type {connection.conn_type!r}, for which no hook is installed "
            f"({type(err).__name__}: {err}); install its provider (apache-airflow-providers-postgres, -sqlite, "
            "-mysql, ...)."
        ) from None
    if not isinstance(hook, DbApiHook):
        raise ConfigurationError(
            f"The connection {conn_id!r} (type {connection.conn_type!r}) has the hook {type(hook).__name__}, which "
            "is not a SQL hook (airflow.providers.common.sql.hooks.sql.DbApiHook); a SQL source or sink needs a "
            "database connection such as postgres, sqlite, mysql or mssql."
        )
    return connection, hook


def openlineage_table(conn_id: str, table: str) -> tuple[str, str]:
    """The OpenLineage ``(namespace, name)`` of ``table`` (``table``, ``schema.table`` or ``database.schema.table``)
    reached through the SQL connection ``conn_id``, as the common.sql operators name it: the namespace and database
    from the hook's ``get_openlineage_database_info`` (``postgres://host:5432``, ``mysql://host:3306`` ...), a table
    without a schema in the hook's ``get_openlineage_default_schema``, upper-cased where the database is.

    A hook without OpenLineage support (or without the OpenLineage provider) gives ``<conn type>://host:port`` and the
    table as written, behind the connection's database. Never includes a credential.
    """
    from airflow.providers.common.sql.hooks.sql import DbApiHook

    connection, hook = _connection_and_hook(conn_id)
    parts = [p for p in str(table).split(".") if p]
    try:
        info = hook.get_openlineage_database_info(connection)
    except ImportError:  # the OpenLineage provider is not installed
        info = None
    if info is None:
        scheme = (connection.conn_type or "sql").lower()
        try:
            authority = DbApiHook.get_openlineage_authority_part(connection) if connection.host else None
        except ValueError:  # a host that is no network address (sqlite's is the database file)
            authority = None
        namespace = f"{scheme}://{unquote(authority)}" if authority else scheme  # sqlite: sqlite:///path/db
        return namespace, ".".join([connection.schema, *parts] if connection.schema and len(parts) < 3 else parts)
    namespace = f"{info.scheme}://{info.authority}" if info.authority else info.scheme
    if len(parts) == 1:
        try:
            schema = hook.get_openlineage_default_schema()
        except Exception:  # the database cannot say (it is only asked for lineage): the hook's static default
            schema = DbApiHook.get_openlineage_default_schema(hook)
        parts = [schema, *parts] if schema else parts
    if len(parts) == 2 and info.database:
        parts = [info.database, *parts]
    name = ".".join(parts)
    return namespace, name.upper() if info.is_uppercase_names else name


def sqlalchemy_url(conn_id: str) -> str:
    """The SQLAlchemy URL of a SQL connection, with its password (registered with the secret masker).

    :raises ConfigurationError: as :func:`get_db_hook`, or when the hook builds no SQLAlchemy URL.
    """
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    hook = get_db_hook(conn_id)
    try:
        url = hook.sqlalchemy_url
    except (NotImplementedError, AttributeError):
        try:
            url = make_url(hook.get_uri())
        except (ArgumentError, NotImplementedError, ValueError) as err:
            raise ConfigurationError(
                f"The connection {conn_id!r} ({type(hook).__name__}) gives no SQLAlchemy URL ({type(err).__name__}); "
                "use a connection type whose provider supports SQLAlchemy."
            ) from None
    text = url.render_as_string(hide_password=False)
    password = url.password if isinstance(url.password, str) else None
    if password:  # the password as written in the URL, too (escaped: 'p@ss' -> 'p%40ss')
        escaped = url.set(password="__PASSWORD__").render_as_string(hide_password=False)
        head, _, tail = escaped.partition("__PASSWORD__")
        _mask(password, text[len(head):len(text) - len(tail)], text)
    return text


def sql_secrets(spec: DataSpec) -> dict[str, Any]:
    """The secret material of a SQL source or sink: ``{"sqlalchemy_url": ...}`` (empty without ``conn_id``)."""
    if not spec.conn_id:
        return {}
    return {URL_KEY: sqlalchemy_url(spec.conn_id)}
