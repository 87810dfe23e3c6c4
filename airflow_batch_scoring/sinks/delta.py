"""A Delta Lake table as a sink: replicas write Parquet data files, the driver commits them in ONE transaction.

Where things are, for a table at ``<table>`` and a run ``<job_id>``:

- data files: ``<table>/[<partition folders>/]part-<shard>-<n>.<job_id>.<attempt>.parquet`` (modes ``append``,
  ``overwrite``, ``overwrite_partition``): written where the table's files live, and invisible to every Delta reader
  until a commit names them; ``merge``: ``<table>/_batch_scoring/<job_id>/data/`` (read back by the merge, then
  removed);
- the run's bookkeeping (:meth:`DeltaSink.staging_uri`): ``<table>/_batch_scoring/<job_id>/``: the attempt's lease,
  and per attempt ``<attempt>/_files-<shard>.json`` (every data file a replica opens, listed before it is written,
  so that a discard or the next attempt removes exactly what this attempt wrote, even after a kill),
  ``_actions-<shard>.json`` (the files' sizes, rows and partition values) and ``_shard-<shard>.json`` (the report,
  last); after the commit, ``_manifest.json`` with the table version committed.

The commit (:mod:`~airflow_batch_scoring.sinks.delta_commit`) records the run in the commit itself: Delta's
idempotent-write ``txn`` action (application id ``airflow-batch-scoring:<job_id>``) and the run id and attempt in
the commit's metadata. An attempt that finds its run committed already scores nothing and commits nothing (a retry
after a commit whose success was lost).

Shared with the runtime: never imports Airflow.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from airflow_batch_scoring.errors import ConfigurationError, InputError, ReplicaError
from airflow_batch_scoring.io.bad_rows.quarantine import ErrorOutput
from airflow_batch_scoring.io.delta import APP_ID_PREFIX, open_table, partition_text, table_types, writable
from airflow_batch_scoring.io.files import check_sink_root, filesystem, is_local
from airflow_batch_scoring.job import ScoringJob
from airflow_batch_scoring.runtime.shards import ShardReport, report_name
from airflow_batch_scoring.sinks import delta_commit
from airflow_batch_scoring.sinks.base import Published, Resumption, ShardWriter
from airflow_batch_scoring.sinks.file_staging import read_json, take_lease, write_json
from airflow_batch_scoring.sinks.table_files import MANIFEST, TableFilesSink
from airflow_batch_scoring.specs import DataSpec, DeltaSpec, narrow


def files_name(shard: int) -> str:
    return f"_files-{shard:05d}.json"


def actions_name(shard: int) -> str:
    return f"_actions-{shard:05d}.json"


def _folder(column: str, text: str | None) -> str:
    """A partition folder's name (only for tidiness: readers take the values from the log)."""
    value = "__HIVE_DEFAULT_PARTITION__" if text is None else re.sub(r"[^A-Za-z0-9_.-]", "_", text)[:100]
    return f"{column}={value}"


class DeltaShardWriter:
    """One shard's Parquet data files (one per partition value met), listed before they are written."""

    quarantine: ErrorOutput | None = None
    #: whether the partition columns stay in the data files (Iceberg's do; Delta's are in the log only).
    keeps_partition_columns = False

    def __init__(self, job: ScoringJob, shard: int, secrets: Mapping[str, Any] | None):
        self.job = job
        self.spec = narrow(job.sink, DeltaSpec)
        self.shard = shard
        self.fs, self.root = filesystem(self.spec.uri, secrets)
        _, staging = filesystem(job.staging_uri, secrets)
        self.attempt_folder = f"{staging}/{job.attempt}"
        if is_local(self.fs):
            self.fs.makedirs(self.attempt_folder, exist_ok=True)
        self.partition_columns: list[str] = []
        if self.spec.mode != "merge":
            table = open_table(self.spec.uri, secrets)
            if table is not None:
                self.partition_columns = list(table.metadata().partition_columns)
            else:
                self.partition_columns = list(self.spec.partition_by or ())
        self.data_folder = f"{staging}/data" if self.spec.mode == "merge" else self.root
        self.writers: dict[tuple[str | None, ...], tuple[str, Any, Any]] = {}
        self.rows: dict[tuple[str | None, ...], int] = {}
        self.listed: list[str] = []
        self.actions: list[dict[str, Any]] = []
        self.schema: pa.Schema | None = None

    def _writer(self, key: tuple[str | None, ...], schema: pa.Schema) -> Any:
        if key not in self.writers:
            folders = [_folder(c, v) for c, v in zip(self.partition_columns, key, strict=True)]
            name = f"part-{self.shard:05d}-{len(self.writers):03d}.{self.job.job_id}.{self.job.attempt}.parquet"
            path = "/".join([self.data_folder, *folders, name])
            self.listed.append(path)
            write_json(self.fs, f"{self.attempt_folder}/{files_name(self.shard)}", {"files": self.listed})
            if is_local(self.fs):
                self.fs.makedirs(path.rsplit("/", 1)[0], exist_ok=True)
            handle = self.fs.open(path, "wb")
            self.writers[key] = (path, handle, pq.ParquetWriter(handle, schema))
            self.rows[key] = 0
        return self.writers[key][2]

    def write(self, table: pa.Table) -> None:
        table = writable(table)
        if self.schema is None:
            self.schema = table.schema
        if not self.partition_columns:
            self._writer((), table.schema).write_table(table)
            self.rows[()] += table.num_rows
            return
        missing = [c for c in self.partition_columns if c not in table.column_names]
        if missing:
            raise ConfigurationError(
                f"The table {self.spec.uri} is partitioned by {self.partition_columns}, and the output has no "
                f"column(s) {missing}: add them to passthrough_columns."
            )
        data = table if self.keeps_partition_columns else table.drop_columns(self.partition_columns)
        keys = table.select(self.partition_columns).group_by(self.partition_columns).aggregate([])
        for values in keys.to_pylist():
            mask = None
            for column in self.partition_columns:
                value = values[column]
                term = (table.column(column).is_null() if value is None
                        else pa.compute.equal(table.column(column), pa.scalar(value, table.schema.field(column).type)))
                term = pa.compute.fill_null(term, False)
                mask = term if mask is None else pa.compute.and_(mask, term)
            key = tuple(partition_text(values[c]) for c in self.partition_columns)
            rows = data.filter(mask)
            self._writer(key, data.schema).write_table(rows)
            self.rows[key] += rows.num_rows

    def close(self) -> int:
        for key, (path, handle, writer) in self.writers.items():
            writer.close()
            handle.close()
            self.actions.append({
                "path": path[len(self.root) + 1:], "size": int(self.fs.size(path)), "rows": self.rows[key],
                "partition_values": dict(zip(self.partition_columns, key, strict=True)),
            })
        total = sum(self.rows.values())
        schema = self.schema
        write_json(self.fs, f"{self.attempt_folder}/{actions_name(self.shard)}", {
            "actions": self.actions, "partition_columns": self.partition_columns,
            "schema": delta_commit.encode_schema(schema) if schema is not None else None,
        })
        return total

    def abort(self) -> None:
        for path, handle, writer in self.writers.values():
            try:
                writer.close()
                handle.close()
            except Exception:  # best effort: the discard removes what was listed
                pass
            try:
                self.fs.rm(path)
            except (OSError, FileNotFoundError):
                pass

    @property
    def parts(self) -> list[str]:
        return [action["path"] for action in self.actions]

    def write_report(self, report: Mapping[str, Any]) -> None:
        write_json(self.fs, f"{self.attempt_folder}/{report_name(self.shard)}", dict(report))


class DeltaSink(TableFilesSink):
    """A Delta Lake table (local files, S3 and S3-compatible stores, GCS, Azure): modes ``append``, ``overwrite``,
    ``overwrite_partition`` and ``merge``, one commit per run.

    :param job: the job; its sink is a :class:`~airflow_batch_scoring.specs.DeltaSpec`.
    :param secrets: the fsspec options of the table's store.
    """

    spec_type = DeltaSpec

    def __init__(self, job: ScoringJob, secrets: Mapping[str, Any] | None):
        self.job = job
        self.spec = narrow(job.sink, DeltaSpec)
        self.secrets = secrets

    @staticmethod
    def precheck(spec: DataSpec, secrets: Mapping[str, Any] | None) -> None:
        check_sink_root(spec.uri, secrets, spec.conn_id)

    @staticmethod
    def published(spec: DataSpec, secrets: Mapping[str, Any] | None, job_id: str) -> bool:
        from airflow_batch_scoring.sinks.incremental import delta_published

        return delta_published(spec, secrets, job_id)

    @property
    def into(self) -> str:
        return f" into the Delta table {self.spec.uri} ({self.spec.mode})"

    @property
    def app_id(self) -> str:
        return f"{APP_ID_PREFIX}{self.job.job_id}"

    def check(self, if_exists: str) -> None:
        """The table may be written as asked: ``if_exists='fail'`` finds none; an existing table's partitioning and
        columns fit the mode."""
        if self.job.on_bad_rows != "fail":
            raise ConfigurationError("on_bad_rows='quarantine' is not supported with a Delta sink yet; use 'fail'.")
        table = open_table(self.spec.uri, self.secrets)
        spec = self.spec
        if table is None:
            if spec.mode == "overwrite_partition" and not spec.partition_by:
                raise ConfigurationError(
                    f"There is no Delta table at {spec.uri} yet, and mode='overwrite_partition' needs a partitioned "
                    "table: set sink['partition_by'] (the columns of sink['partition']) so that the run creates it."
                )
            return
        if if_exists == "fail":
            raise ConfigurationError(
                f"The Delta table {spec.uri} already exists and if_exists='fail'; write elsewhere, or set "
                "if_exists='replace' (then sink['mode'] decides)."
            )
        partitioned = list(table.metadata().partition_columns)
        if spec.partition_by is not None and list(spec.partition_by) != partitioned:
            raise ConfigurationError(
                f"The Delta table {spec.uri} is partitioned by {partitioned}, not by sink['partition_by'] "
                f"{list(spec.partition_by)}: an existing table keeps its partitioning; fix or remove partition_by."
            )
        if spec.mode == "overwrite_partition":
            named = sorted(name for name, _ in spec.partition or ())
            if named != sorted(partitioned):
                raise ConfigurationError(
                    f"sink['partition'] must give a value for each partition column of {spec.uri} ({partitioned}), "
                    f"got {named}."
                )
        if spec.mode == "merge":
            columns = list(table_types(table))
            missing = [k for k in spec.merge_keys or () if k not in columns]
            if missing:
                raise ConfigurationError(
                    f"The Delta table {spec.uri} has no column(s) {missing} named in sink['merge_keys']; its columns "
                    f"are {columns}."
                )

    def committed_version(self) -> int | None:
        """The table version that committed this run, or ``None`` when the run has not committed."""
        return delta_commit.committed_version(self.job, self.secrets)

    def resume_publish(self, if_exists: str, log: Callable[[str], None]) -> bool:
        version = self.committed_version()
        if version is None:
            return False
        log(
            f"Run {self.job.job_id!r} was already committed to the Delta table {self.spec.uri} (version {version}); "
            "nothing is scored or committed again"
        )
        return True

    def begin_attempt(self, fingerprint: str | None, *, reuse: bool, log: Callable[[str], None]) -> Resumption:
        """Take the run over, and remove the data files earlier attempts of the run wrote (never committed: the run
        has no commit); every shard is scored again."""
        fs, staging = filesystem(self.job.staging_uri, self.secrets)
        removed = 0
        if fs.exists(staging):
            for entry in fs.ls(staging, detail=True):
                name = entry["name"].rstrip("/").rsplit("/", 1)[-1]
                if entry.get("type") == "directory" and name != self.job.attempt and not name.startswith("_"):
                    removed += _remove_listed(fs, entry["name"].rstrip("/"))
            fs.invalidate_cache()
        take_lease(self.job, self.secrets)
        if is_local(fs):
            fs.makedirs(f"{staging}/{self.job.attempt}", exist_ok=True)
        if removed:
            log(f"Removed {removed} uncommitted data file(s) an earlier attempt of this run left in {self.spec.uri}")
        return Resumption(reason="a Delta sink scores every shard of a retry again" if removed else None)

    def open_writer(self, shard: int) -> ShardWriter:
        return DeltaShardWriter(self.job, shard, self.secrets)

    def read_reports(self) -> list[ShardReport]:
        fs, staging = filesystem(self.job.staging_uri, self.secrets)
        fs.invalidate_cache()
        reports, missing = [], []
        for shard in range(self.job.replicas):
            document = read_json(fs, f"{staging}/{self.job.attempt}/{report_name(shard)}")
            if document is None:
                missing.append(shard)
            else:
                reports.append(ShardReport(**document))
        if missing:
            raise ReplicaError(
                f"Shard(s) {missing} did not finish (no report); nothing was committed to the Delta table "
                f"{self.spec.uri}."
            )
        return reports

    def describe(self) -> dict[str, Any]:
        spec = self.spec
        return {
            "uri": spec.uri, "format": "delta", "mode": spec.mode,
            "partition_by": list(spec.partition_by) if spec.partition_by else None,
            "partition": dict(spec.partition) if spec.partition else None,
            "merge_keys": list(spec.merge_keys) if spec.merge_keys else None,
        }

    def finish_pending(self, if_exists: str) -> Published | None:
        """The run committed already (found by :meth:`resume_publish`): complete its manifest, publish nothing."""
        version = self.committed_version()
        if version is None:
            return None
        manifest = delta_commit.finish_manifest(self.job, self.secrets, version)
        return self._published(manifest, {"version": version, "already_committed": True}, parts=0)

    def publish(
        self, reports: list[ShardReport], manifest: Mapping[str, Any], if_exists: str, log: Callable[[str], None]
    ) -> Published:
        details = delta_commit.commit(self.job, reports, manifest, self.secrets, log)
        return self._published(details.pop("manifest"), details, parts=details["files"])

    def _published(self, manifest: dict[str, Any], details: dict[str, Any], parts: int) -> Published:
        uri = self.spec.uri
        return Published(
            manifest=manifest, output_uri=uri, manifest_uri=f"{self.job.staging_uri}/{MANIFEST}", parts=parts,
            target=f"the Delta table {uri} (version {details['version']}, {self.spec.mode})",
            extra={"delta": details},
        )

    def discard(self) -> None:
        """Remove the data files this attempt wrote, and its bookkeeping (best effort)."""
        try:
            fs, staging = filesystem(self.job.staging_uri, self.secrets)
            _remove_listed(fs, f"{staging}/{self.job.attempt}")
            if self.spec.mode == "merge" and fs.exists(f"{staging}/data"):
                fs.rm(f"{staging}/data", recursive=True)
        except (OSError, ConfigurationError, InputError):
            pass


def _remove_listed(fs: Any, folder: str) -> int:
    """Remove the data files an attempt's ``_files-*.json`` list, then the attempt's folder; return how many."""
    removed = 0
    for path in sorted(fs.glob(f"{folder}/_files-*.json")):
        listed = read_json(fs, path) or {}
        for data_file in listed.get("files", []):
            try:
                if fs.exists(data_file):
                    fs.rm(data_file)
                    removed += 1
            except (OSError, FileNotFoundError):
                pass
    try:
        if fs.exists(folder):
            fs.rm(folder, recursive=True)
    except (OSError, FileNotFoundError):
        pass
    return removed

