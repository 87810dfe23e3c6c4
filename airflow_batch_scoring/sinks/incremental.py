"""Incremental scoring, the sinks' side: whether a run published (to settle an earlier run's pending watermark),
and what keys a sink's watermark.

Each sink's :meth:`~airflow_batch_scoring.sinks.base.Sink.published` and
:meth:`~airflow_batch_scoring.sinks.base.Sink.watermark_place` call these.

Shared with the runtime: never imports Airflow.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from airflow_batch_scoring.io.files import filesystem, normalize_uri
from airflow_batch_scoring.specs import DataSpec, DeltaSpec, IcebergSpec, TableSpec, narrow


def store_of(uri: str) -> str:
    """A location's store: its scheme and bucket (``s3://bucket``), or ``file://`` for local files."""
    parts = urlsplit(normalize_uri(uri))
    return f"{parts.scheme or 'file'}://{parts.netloc}"


def file_place(spec: DataSpec) -> tuple[str, str | None]:
    """A file sink's folder often carries the run's date (``scores/{{ ds }}/``): its watermark is keyed by its store,
    and it has no default state folder (the user names one that stays the same across runs)."""
    return f"files:{store_of(spec.uri)}", None


def sql_place(spec: DataSpec) -> tuple[str, str | None]:
    """A SQL table: keyed by its connection (or URL) and name; no default state folder."""
    table = narrow(spec, TableSpec)
    return f"table:{table.conn_id or table.uri}:{table.table}", None


def file_published(spec: DataSpec, secrets: Mapping[str, Any] | None, job_id: str) -> bool:
    """Whether the sink folder holds ``job_id``'s published output (its manifest, and ``_SUCCESS``)."""
    from airflow_batch_scoring.sinks.file_publish import MANIFEST, SUCCESS
    from airflow_batch_scoring.sinks.file_staging import read_json

    fs, folder = filesystem(spec.uri, secrets)
    fs.invalidate_cache()
    manifest = read_json(fs, f"{folder.rstrip('/')}/{MANIFEST}")
    return (isinstance(manifest, dict) and manifest.get("job_id") == job_id
            and bool(fs.exists(f"{folder.rstrip('/')}/{SUCCESS}")))


def delta_published(spec: DataSpec, secrets: Mapping[str, Any] | None, job_id: str) -> bool:
    """Whether a commit of the Delta table carries ``job_id``'s ``txn``."""
    from airflow_batch_scoring.io.delta import APP_ID_PREFIX, open_table

    table = open_table(narrow(spec, DeltaSpec).uri, secrets)
    return table is not None and table.transaction_version(f"{APP_ID_PREFIX}{job_id}") is not None


def iceberg_published(spec: DataSpec, secrets: Mapping[str, Any] | None, job_id: str) -> bool:
    """Whether a snapshot of the Iceberg table carries ``job_id`` in its summary."""
    from airflow_batch_scoring.io.iceberg import RUN_ID_KEY, load_catalog, load_table

    iceberg = narrow(spec, IcebergSpec)
    table = load_table(load_catalog(iceberg, secrets), iceberg)
    return table is not None and any(
        snapshot.summary is not None and snapshot.summary.get(RUN_ID_KEY) == job_id for snapshot in table.snapshots()
    )


def sql_published(spec: DataSpec, secrets: Mapping[str, Any] | None, job_id: str) -> bool:
    """Whether the SQL sink's bookkeeping table records ``job_id`` for the target table."""
    import sqlalchemy as sa
    from sqlalchemy.exc import SQLAlchemyError

    from airflow_batch_scoring.sinks.sql_commit import bookkeeping_table, engine_of

    table = narrow(spec, TableSpec)
    engine, _ = engine_of(table, secrets, write=False)
    runs = bookkeeping_table(table.table.schema)
    try:
        with engine.connect() as connection:
            row = connection.execute(
                sa.select(runs.c.run_id).where(runs.c.run_id == job_id, runs.c.target == str(table.table))
            ).first()
    except SQLAlchemyError:
        return False  # no bookkeeping table yet: nothing published
    finally:
        engine.dispose()
    return row is not None
