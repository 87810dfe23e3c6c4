"""An Apache Iceberg table (SQL catalog) as a sink: replicas write Parquet data files, the driver adds them to the
table in ONE catalog commit.

Data files go to ``<warehouse>/<namespace>/<table>/data/[<column>=<value>/]part-<shard>-<n>.<job_id>.<attempt>.parquet``
(one file per identity partition met; no reader sees a file before a snapshot names it), or, for ``merge``, to the
run's ``_batch_scoring/<job_id>/data/`` (read back by the merge, then removed); the run's bookkeeping (the lease, the
listed files, the reports, the manifest) to ``<warehouse>/<namespace>/<table>/_batch_scoring/<job_id>/``, as for a
Delta table (:mod:`~airflow_batch_scoring.sinks.delta`). The commit (:mod:`~airflow_batch_scoring.sinks.iceberg_commit`)
is one transaction, and every snapshot it makes carries the run id in its summary: an attempt that finds its run there
commits nothing again.

Shared with the runtime: never imports Airflow.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime, timezone
from typing import Any

import pyarrow as pa

from airflow_batch_scoring.errors import ConfigurationError, InputError, ReplicaError
from airflow_batch_scoring.io.files import check_sink_root, filesystem, is_local
from airflow_batch_scoring.io.iceberg import load_catalog, load_table, storage_of
from airflow_batch_scoring.job import ScoringJob
from airflow_batch_scoring.runtime.shards import ShardReport, report_name
from airflow_batch_scoring.sinks.base import Published, Resumption, ShardWriter
from airflow_batch_scoring.sinks.delta import DeltaShardWriter, _remove_listed
from airflow_batch_scoring.sinks.delta_commit import _staged
from airflow_batch_scoring.sinks.file_staging import check_lease, read_json, take_lease, write_json
from airflow_batch_scoring.sinks.iceberg_commit import (
    check_partition,
    commit,
    committed_snapshot,
    identity_columns,
    read_staged,
)
from airflow_batch_scoring.sinks.table_files import MANIFEST, TableFilesSink
from airflow_batch_scoring.specs import DataSpec, IcebergSpec, narrow


class IcebergShardWriter(DeltaShardWriter):
    """One shard's Parquet data files (one per partition value met) in the table's ``data/`` folder (``merge``: the
    run's staging folder), listed before they are written; the files keep the partition columns."""

    keeps_partition_columns = True

    def __init__(self, job: ScoringJob, shard: int, secrets: Mapping[str, Any] | None):
        self.job = job
        self.spec = narrow(job.sink, IcebergSpec)  # type: ignore[assignment]
        self.shard = shard
        storage = storage_of(secrets)
        self.fs, self.root = filesystem(self.spec.uri, storage)
        _, staging = filesystem(job.staging_uri, storage)
        self.attempt_folder = f"{staging}/{job.attempt}"
        if is_local(self.fs):
            self.fs.makedirs(self.attempt_folder, exist_ok=True)
        self.partition_columns = []
        iceberg = narrow(job.sink, IcebergSpec)
        if iceberg.mode != "merge":
            table = load_table(load_catalog(iceberg, secrets), iceberg)
            self.partition_columns = (identity_columns(table, iceberg.table) if table is not None
                                      else list(iceberg.partition_by or ()))
        self.data_folder = f"{staging}/data" if iceberg.mode == "merge" else f"{self.root}/data"
        self.writers = {}
        self.rows = {}
        self.listed = []
        self.actions = []
        self.schema = None


def _arrow_text(kind: pa.DataType) -> str:
    if pa.types.is_large_string(kind):
        return "string"
    return str(kind)


class IcebergSink(TableFilesSink):
    """An Iceberg table in a SQL catalog: ``append``, ``overwrite``, ``overwrite_partition`` or ``merge``, one catalog
    commit per run.

    :param secrets: ``{"storage": <fsspec options of the warehouse>, "catalog_url": <the catalog's URL>}``.
    """

    spec_type = IcebergSpec

    def __init__(self, job: ScoringJob, secrets: Mapping[str, Any] | None):
        self.job = job
        self.spec = narrow(job.sink, IcebergSpec)
        self.secrets = secrets

    @staticmethod
    def precheck(spec: DataSpec, secrets: Mapping[str, Any] | None) -> None:
        iceberg = narrow(spec, IcebergSpec)
        check_sink_root(iceberg.uri, storage_of(secrets), iceberg.conn_id)
        load_catalog(iceberg, secrets)  # the catalog answers

    @staticmethod
    def published(spec: DataSpec, secrets: Mapping[str, Any] | None, job_id: str) -> bool:
        from airflow_batch_scoring.sinks.incremental import iceberg_published

        return iceberg_published(spec, secrets, job_id)

    @property
    def into(self) -> str:
        return f" into the Iceberg table {self.spec.table} ({self.spec.mode})"

    def _table(self) -> Any:
        return load_table(load_catalog(self.spec, self.secrets), self.spec)

    def check(self, if_exists: str) -> None:
        if self.job.on_bad_rows != "fail":
            raise ConfigurationError("on_bad_rows='quarantine' is not supported with an Iceberg sink yet; use 'fail'.")
        table = self._table()
        spec = self.spec
        if table is None:
            if spec.mode == "overwrite_partition" and not spec.partition_by:
                raise ConfigurationError(
                    f"There is no Iceberg table {spec.table} yet, and mode='overwrite_partition' needs a partitioned "
                    "table: set sink['partition_by'] (the columns of sink['partition']) so that the run creates it."
                )
            return
        if if_exists == "fail":
            raise ConfigurationError(
                f"The Iceberg table {spec.table} already exists and if_exists='fail'; write elsewhere, or set "
                "if_exists='replace' (then sink['mode'] decides)."
            )
        partitioned = identity_columns(table, spec.table)
        if spec.partition_by is not None and list(spec.partition_by) != partitioned:
            raise ConfigurationError(
                f"The Iceberg table {spec.table} is partitioned by {partitioned}, not by sink['partition_by'] "
                f"{list(spec.partition_by)}: an existing table keeps its partitioning; fix or remove partition_by."
            )
        if spec.mode == "overwrite_partition":
            named = sorted(name for name, _ in spec.partition or ())
            if named != sorted(partitioned):
                raise ConfigurationError(
                    f"sink['partition'] must give a value for each partition column of the Iceberg table "
                    f"{spec.table} ({partitioned}), got {named}."
                )
        if spec.mode == "merge":
            columns = [f.name for f in table.schema().fields]
            missing = [k for k in spec.merge_keys or () if k not in columns]
            if missing:
                raise ConfigurationError(
                    f"The Iceberg table {spec.table} has no column(s) {missing} named in sink['merge_keys']; its "
                    f"columns are {columns}."
                )

    def resume_publish(self, if_exists: str, log: Callable[[str], None]) -> bool:
        snapshot = committed_snapshot(self._table(), self.job.job_id)
        if snapshot is None:
            return False
        log(f"Run {self.job.job_id!r} was already committed to the Iceberg table {self.spec.table} (snapshot "
            f"{snapshot}); nothing is scored or committed again")
        return True

    def begin_attempt(self, fingerprint: str | None, *, reuse: bool, log: Callable[[str], None]) -> Resumption:
        fs, staging = filesystem(self.job.staging_uri, storage_of(self.secrets))
        removed = 0
        if fs.exists(staging):
            for entry in fs.ls(staging, detail=True):
                name = entry["name"].rstrip("/").rsplit("/", 1)[-1]
                if entry.get("type") == "directory" and name != self.job.attempt and not name.startswith("_"):
                    removed += _remove_listed(fs, entry["name"].rstrip("/"))
        take_lease(self.job, storage_of(self.secrets))
        if removed:
            log(f"Removed {removed} uncommitted data file(s) an earlier attempt of this run left in {self.spec.uri}")
        return Resumption()

    def open_writer(self, shard: int) -> ShardWriter:
        return IcebergShardWriter(self.job, shard, self.secrets)

    def read_reports(self) -> list[ShardReport]:
        fs, staging = filesystem(self.job.staging_uri, storage_of(self.secrets))
        fs.invalidate_cache()
        reports, missing = [], []
        for shard in range(self.job.replicas):
            document = read_json(fs, f"{staging}/{self.job.attempt}/{report_name(shard)}")
            if document is None:
                missing.append(shard)
            else:
                reports.append(ShardReport(**document))
        if missing:
            raise ReplicaError(f"Shard(s) {missing} did not finish (no report); nothing was committed to the "
                               f"Iceberg table {self.spec.table}.")
        return reports

    def describe(self) -> dict[str, Any]:
        spec = self.spec
        return {"table": spec.table, "warehouse": spec.warehouse, "format": "iceberg", "mode": spec.mode,
                "partition_by": list(spec.partition_by) if spec.partition_by else None,
                "partition": dict(spec.partition) if spec.partition else None,
                "merge_keys": list(spec.merge_keys) if spec.merge_keys else None}

    def finish_pending(self, if_exists: str) -> Published | None:
        snapshot = committed_snapshot(self._table(), self.job.job_id)
        if snapshot is None:
            return None
        fs, staging = filesystem(self.job.staging_uri, storage_of(self.secrets))
        manifest = read_json(fs, f"{staging}/{MANIFEST}") or {
            "job_id": self.job.job_id, "output": {**self.describe(), "snapshot_id": snapshot},
            "totals": {"rows_in": 0, "rows_out": 0, "rows_bad": 0}}
        return self._published(manifest, {"snapshot_id": snapshot, "already_committed": True}, 0)

    def publish(
        self, reports: list[ShardReport], manifest: Mapping[str, Any], if_exists: str, log: Callable[[str], None]
    ) -> Published:
        spec, job = self.spec, self.job
        storage = storage_of(self.secrets)
        check_lease(job, storage)
        catalog = load_catalog(spec, self.secrets)
        table = load_table(catalog, spec)
        earlier = committed_snapshot(table, job.job_id)
        if earlier is not None:
            log(f"Run {job.job_id!r} was already committed to {spec.table} (snapshot {earlier}); not committed again")
            return self._published(dict(manifest), {"snapshot_id": earlier, "already_committed": True}, 0)
        actions, schema = _staged(job, storage)
        if schema is None:
            raise InputError(f"the run wrote no data file for the Iceberg table {spec.table}; nothing was committed.")
        fs, root = filesystem(spec.uri, storage)
        fs.invalidate_cache()
        paths = []
        for action in actions:
            path = f"{root}/{action['path']}"
            if not fs.exists(path) or int(fs.size(path)) != int(action["size"]):
                raise InputError(f"the data file {path} of this run is missing or changed; nothing was committed. "
                                 "Retry the run.", retryable=True)
            paths.append(path)
        if spec.mode == "overwrite_partition":
            check_partition(spec, actions)
        if table is not None:
            self._check_schema(table, schema)
        from pyiceberg.exceptions import CommitFailedException

        try:
            details = commit(job, catalog, table, schema, [fs.unstrip_protocol(p) for p in paths],
                             lambda: read_staged(fs, paths), log)
        except CommitFailedException as err:  # another writer committed meanwhile: the next attempt commits anew
            raise InputError(f"the commit to the Iceberg table {spec.table} failed: {str(err).splitlines()[0][:300]}; "
                             "nothing was committed.", retryable=True) from None
        snapshot = committed_snapshot(load_table(catalog, spec), job.job_id)
        final = dict(manifest)
        final["output"] = {**dict(final.get("output") or {}), "snapshot_id": snapshot,
                           "committed_at": datetime.now(timezone.utc).isoformat()}
        _, staging = filesystem(job.staging_uri, storage)
        write_json(fs, f"{staging}/{MANIFEST}", final)
        _remove_listed_reports(fs, f"{staging}/{job.attempt}")
        if spec.mode == "merge":
            _remove_listed_reports(fs, f"{staging}/data")
        return self._published(final, {**details, "snapshot_id": snapshot, "files": len(paths), "mode": spec.mode,
                                        "already_committed": False}, len(paths))

    def _check_schema(self, table: Any, output: pa.Schema) -> None:
        existing = {f.name: _arrow_text(f.type) for f in table.schema().as_arrow()}
        differ = [f"{f.name!r} (table: {existing[f.name]}, output: {_arrow_text(f.type)})" for f in output
                  if f.name in existing and existing[f.name] != _arrow_text(f.type)]
        if differ:
            raise ConfigurationError(
                f"The output does not fit the Iceberg table {self.spec.table}: column(s) {', '.join(differ)} have "
                "other types; nothing was committed. Cast the outputs or write to a new table."
            )
        new = [f.name for f in output if f.name not in existing]
        if new and not self.spec.allow_new_columns:
            raise ConfigurationError(
                f"The output has column(s) {new} that the Iceberg table {self.spec.table} lacks (its columns: "
                f"{list(existing)}); nothing was committed. Set sink['allow_new_columns'] = True to add them."
            )

    def _published(self, manifest: dict[str, Any], details: dict[str, Any], parts: int) -> Published:
        return Published(
            manifest=manifest, output_uri=self.spec.uri, manifest_uri=f"{self.job.staging_uri}/{MANIFEST}",
            parts=parts, target=f"the Iceberg table {self.spec.table} (snapshot {details['snapshot_id']}, "
                                f"{self.spec.mode})", extra={"iceberg": details},
        )

    def discard(self) -> None:
        try:
            fs, staging = filesystem(self.job.staging_uri, storage_of(self.secrets))
            _remove_listed(fs, f"{staging}/{self.job.attempt}")
            if self.spec.mode == "merge" and fs.exists(f"{staging}/data"):
                fs.rm(f"{staging}/data", recursive=True)
        except (OSError, ConfigurationError, InputError):
            pass


def _remove_listed_reports(fs: Any, folder: str) -> None:
    """After the commit: the attempt's bookkeeping goes (its data files are the table's now)."""
    try:
        if fs.exists(folder):
            fs.rm(folder, recursive=True)
    except (OSError, FileNotFoundError):
        pass
