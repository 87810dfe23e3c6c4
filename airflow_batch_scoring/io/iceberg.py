"""Reaching an Apache Iceberg table with ``pyiceberg``: its SQL catalog (SQLite or PostgreSQL) from the spec or an
Airflow connection's URL, and the warehouse's store from the same fsspec options the file sources and sinks use.

The secret material of an Iceberg spec (:func:`airflow_batch_scoring.hooks.data.credentials_for`) is
``{"storage": <fsspec options>, "catalog_url": <SQLAlchemy URL>}``; neither is ever logged.

Shared with the runtime: never imports Airflow.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from airflow_batch_scoring.errors import ConfigurationError, InputError
from airflow_batch_scoring.io.files import normalize_uri, scheme_of
from airflow_batch_scoring.specs import IcebergSpec

#: the snapshot-summary key that records the run that committed a snapshot.
RUN_ID_KEY = "airflow-batch-scoring.run-id"
ATTEMPT_KEY = "airflow-batch-scoring.attempt"


def storage_of(secrets: Mapping[str, Any] | None) -> dict[str, Any]:
    """The fsspec options of the warehouse's store."""
    return dict((secrets or {}).get("storage") or {})


def _file_io(warehouse: str, options: Mapping[str, Any]) -> dict[str, str]:
    """pyiceberg FileIO properties from fsspec options (S3 and S3-compatible stores)."""
    if scheme_of(normalize_uri(warehouse)) not in ("s3", "s3a"):
        return {}
    result = {"py-io-impl": "pyiceberg.io.fsspec.FsspecFileIO"}
    for key, name in (("key", "s3.access-key-id"), ("secret", "s3.secret-access-key"),
                      ("token", "s3.session-token"), ("endpoint_url", "s3.endpoint")):
        if options.get(key):
            result[name] = str(options[key])
    region = (options.get("client_kwargs") or {}).get("region_name")
    result["s3.region"] = str(region or "us-east-1")
    return result


def load_catalog(spec: IcebergSpec, secrets: Mapping[str, Any] | None) -> Any:
    """The spec's SQL catalog.

    :raises ConfigurationError: when ``pyiceberg`` is not installed.
    :raises InputError: when the catalog database cannot be reached (naming it without credentials).
    """
    try:
        from pyiceberg.catalog.sql import SqlCatalog
    except ImportError:
        raise ConfigurationError(
            "Iceberg tables need the 'pyiceberg' package: install airflow-batch-scoring[iceberg]."
        ) from None
    from airflow_batch_scoring.io.sql import display_url

    url = (secrets or {}).get("catalog_url") or spec.catalog_uri
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url[len("postgresql://"):]
    warehouse = spec.warehouse if "://" in spec.warehouse else f"file://{spec.warehouse}"
    try:
        return SqlCatalog("batch_scoring", uri=url, warehouse=warehouse,
                          **_file_io(spec.warehouse, storage_of(secrets)))
    except Exception as err:  # SQLAlchemy's errors (a refused connection, a missing driver)
        raise InputError(
            f"cannot reach the Iceberg catalog {display_url(url)}: {type(err).__name__} "
            f"({str(err).splitlines()[0][:200] if str(err) else ''}); check "
            f"{'the connection ' + repr(spec.catalog_conn_id) if spec.catalog_conn_id else 'catalog_uri'}."
        ) from None


def load_table(catalog: Any, spec: IcebergSpec) -> Any:
    """The table, or ``None`` when the catalog has none of that name."""
    from pyiceberg.exceptions import NoSuchNamespaceError, NoSuchTableError

    try:
        return catalog.load_table(spec.table)
    except (NoSuchTableError, NoSuchNamespaceError):
        return None
