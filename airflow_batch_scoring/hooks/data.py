"""The one place the Airflow side tells files from SQL: a source's or sink's credentials, its browsable location and
the object-store URI the replicas read or write (``None`` for a database).

Each kind of data spec (:attr:`FileSpec.kind <airflow_batch_scoring.specs.FileSpec.kind>`, ``"table"``,
``"query"``) maps to one :class:`DataAccess` (a table and a query share the SQL access); callers ask
:func:`data_access` instead of branching on the kind themselves.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from airflow_batch_scoring.hooks.sql import sql_secrets
from airflow_batch_scoring.hooks.storage import storage_options
from airflow_batch_scoring.links import output_location_url
from airflow_batch_scoring.specs import DataSpec, IcebergSpec, narrow, narrow_sql


@dataclass(frozen=True)
class DataAccess:
    """How the Airflow side reaches one kind of data.

    :param credentials: the spec's secret material from its connection (handed to the replicas out of band).
    :param location: where the data is for a person (a console or file URL, or the database and table), no
        credentials, given the spec and its credentials.
    :param uri: the object-store (or local) URI of the data, or ``None`` when it lives in a database.
    """

    credentials: Callable[[DataSpec], dict[str, Any]]
    location: Callable[[DataSpec, Mapping[str, Any]], str]
    uri: Callable[[DataSpec], str | None]


def _sql_location(spec: DataSpec, secrets: Mapping[str, Any]) -> str:
    from airflow_batch_scoring.sinks.sql import sink_location  # SQLAlchemy only when a spec is SQL

    return sink_location(narrow_sql(spec), secrets)


_FILES = DataAccess(
    credentials=lambda spec: storage_options(spec.uri, spec.conn_id),
    location=lambda spec, secrets: output_location_url(spec.uri, secrets.get("endpoint_url")),
    uri=lambda spec: spec.uri,
)
_SQL = DataAccess(credentials=sql_secrets, location=_sql_location, uri=lambda spec: None)
def _iceberg_credentials(spec: DataSpec) -> dict[str, Any]:
    """The warehouse store's fsspec options, and the catalog database's URL from ``catalog_conn_id``."""
    iceberg = narrow(spec, IcebergSpec)
    secrets: dict[str, Any] = {"storage": storage_options(iceberg.warehouse, iceberg.conn_id)}
    if iceberg.catalog_conn_id:
        from airflow_batch_scoring.hooks.sql import sqlalchemy_url

        secrets["catalog_url"] = sqlalchemy_url(iceberg.catalog_conn_id)
    return secrets


_ICEBERG = DataAccess(
    credentials=_iceberg_credentials,
    location=lambda spec, secrets: output_location_url(spec.uri, (secrets.get("storage") or {}).get("endpoint_url")),
    uri=lambda spec: spec.uri,
)
#: a Delta table lives in a folder of an object store: its credentials are the store's, as for files.
_BY_KIND: dict[str, DataAccess] = {"files": _FILES, "table": _SQL, "query": _SQL, "delta": _FILES,
                                  "iceberg": _ICEBERG}


def data_access(spec: DataSpec) -> DataAccess:
    """How to reach the data ``spec`` names (its kind's :class:`DataAccess`)."""
    return _BY_KIND[spec.kind]


def credentials_for(spec: DataSpec) -> dict[str, Any]:
    """The secret material of a source or sink, from its connection (fsspec options, or the database URL)."""
    return data_access(spec).credentials(spec)
