"""A folder of files as a sink: replicas stage parts in ``<sink>/_temporary/<job_id>/``, one publish moves them in.

The staging folder, its plan and its lease are :mod:`~airflow_batch_scoring.sinks.file_staging`; the publish (and its
roll-forward after a stop part-way) is :mod:`~airflow_batch_scoring.sinks.file_publish`. Quarantined bad rows are
staged next to the parts (``_errors/``) and published with them.

Shared with the runtime: never imports Airflow.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Any

import pyarrow as pa

from airflow_batch_scoring.errors import ConfigurationError
from airflow_batch_scoring.formats import AUTO
from airflow_batch_scoring.io import locations
from airflow_batch_scoring.io.bad_rows.quarantine import ErrorOutput, open_error_output
from airflow_batch_scoring.io.files import check_sink_root, filesystem, is_local
from airflow_batch_scoring.io.writers import make_writer
from airflow_batch_scoring.job import ScoringJob
from airflow_batch_scoring.runtime.shards import ShardReport, part_name, report_name
from airflow_batch_scoring.sinks import file_publish, file_staging, incremental
from airflow_batch_scoring.sinks.base import Published, Resumption, ShardWriter
from airflow_batch_scoring.specs import DataSpec, FileSpec, narrow


class FileShardWriter:
    """One shard's part file (and its error part, quarantining) in the staging folder, then its report."""

    def __init__(self, job: ScoringJob, shard: int, secrets: Mapping[str, Any] | None):
        self.fs, self.staging = filesystem(job.staging_uri, secrets)
        if is_local(self.fs):
            self.fs.makedirs(self.staging, exist_ok=True)
        self.shard = shard
        #: on_bad_rows="quarantine" only
        self.quarantine: ErrorOutput | None = open_error_output(job, shard, self.fs, self.staging)
        spec = narrow(job.sink, FileSpec)
        sink_format = spec.format or (job.source.format if isinstance(job.source, FileSpec) else "")
        self.name = part_name(shard, sink_format, job.attempt, spec.compression)
        self.writer = make_writer(
            sink_format, self.fs, f"{self.staging}/{self.name}", header=spec.header is True,
            compression=spec.compression, part_size=job.part_size, write_concurrency=job.write_concurrency,
        )
        self.rows = 0

    def write(self, table: pa.Table) -> None:
        self.writer.write(table)

    def close(self) -> int:
        self.rows = self.writer.close()
        return self.rows

    def abort(self) -> None:
        self.writer.abort()
        if self.quarantine is not None:
            self.quarantine.abort()

    @property
    def parts(self) -> list[str]:
        return [self.name] if self.rows else []

    def write_report(self, report: Mapping[str, Any]) -> None:
        with self.fs.open(f"{self.staging}/{report_name(self.shard)}", "w") as f:
            f.write(json.dumps(dict(report)))


class FileSink:
    """A folder (local, S3, GCS, Azure) that receives ``part-*`` files, ``_manifest.json`` and ``_SUCCESS``.

    :param job: the job.
    :param secrets: the sink's fsspec options.
    """

    def __init__(self, job: ScoringJob, secrets: Mapping[str, Any] | None):
        self.job = job
        self.secrets = secrets
        self._pending: dict[str, Any] | None = None

    @staticmethod
    def precheck(spec: DataSpec, secrets: Mapping[str, Any] | None) -> None:
        check_sink_root(spec.uri, secrets, spec.conn_id)

    @staticmethod
    def check_place(spec: DataSpec, source: DataSpec, source_files: str | None) -> DataSpec:
        """Refuse a sink at a filesystem's or bucket's root, and one that is, holds or lies inside the source."""
        resolved = replace(narrow(spec, FileSpec), uri=locations.normalize_location(spec.uri, "sink"))
        locations.check_sink_not_root(resolved.uri)
        if source_files is not None:
            locations.check_apart(source_files, resolved.uri)
        return resolved

    @staticmethod
    def staging_uri(job: ScoringJob) -> str:
        return file_publish.staging_uri(job.sink.uri, job.job_id)

    @staticmethod
    def resolve(spec: DataSpec, source_format: str, detect_header: Callable[[], bool]) -> DataSpec:
        """The format the source's when none is given; ``header="auto"``: a header line when the input has one."""
        resolved = narrow(spec, FileSpec)
        resolved = replace(resolved, format=resolved.format or source_format)
        if resolved.header == AUTO:  # a CSV output gets a header when the input has one
            resolved = replace(resolved, header=detect_header())
        if resolved.compression and resolved.format == "parquet":
            raise ConfigurationError(
                "sink['compression'] is for CSV and JSON lines: Parquet compresses its columns itself (snappy)."
            )
        return resolved

    @staticmethod
    def watermark_place(spec: DataSpec) -> tuple[str, str | None]:
        return incremental.file_place(spec)

    @staticmethod
    def published(spec: DataSpec, secrets: Mapping[str, Any] | None, job_id: str) -> bool:
        return incremental.file_published(spec, secrets, job_id)

    @property
    def location(self) -> str:
        return self.job.sink.uri

    @property
    def into(self) -> str:
        return ""

    def check(self, if_exists: str) -> None:
        file_publish.check_sink(self.job, self.secrets, if_exists)

    def resume_publish(self, if_exists: str, log: Callable[[str], None]) -> bool:
        pending = file_publish.pending_publish(self.job, self.secrets)
        if pending is None:
            return False
        file_publish.check_sink(self.job, self.secrets, if_exists, pending)
        file_staging.take_lease(self.job, self.secrets)
        log(
            f"Finishing the publish that attempt {pending.get('attempt')!r} of this run started into "
            f"{self.job.sink.uri} (it stopped part-way); nothing is scored again"
        )
        return True

    def begin_attempt(self, fingerprint: str | None, *, reuse: bool, log: Callable[[str], None]) -> Resumption:
        return file_staging.begin_attempt(self.job, fingerprint, self.secrets, resume=reuse)

    def open_writer(self, shard: int) -> ShardWriter:
        return FileShardWriter(self.job, shard, self.secrets)

    def read_reports(self) -> list[ShardReport]:
        return file_publish.read_reports(self.job, self.secrets)

    def describe(self) -> dict[str, Any]:
        spec = narrow(self.job.sink, FileSpec)
        return {"uri": spec.uri, "format": spec.format, "header": spec.header, "compression": spec.compression}

    def finish_pending(self, if_exists: str) -> Published | None:
        """Roll an earlier attempt's publish forward (never discard it)."""
        pending = file_publish.pending_publish(self.job, self.secrets)
        if pending is None:
            return None
        file_staging.check_lease(self.job, self.secrets)
        file_publish.check_sink(self.job, self.secrets, if_exists, pending)
        return self._published(*file_publish.finish_publish(self.job, pending, self.secrets))

    def publish(
        self, reports: list[ShardReport], manifest: Mapping[str, Any], if_exists: str, log: Callable[[str], None]
    ) -> Published:
        return self._published(*file_publish.publish(self.job, reports, manifest, self.secrets, if_exists))

    def _published(self, manifest: dict[str, Any], parts: list[str]) -> Published:
        uri = self.job.sink.uri
        return Published(
            manifest=manifest, output_uri=uri, manifest_uri=f"{uri.rstrip('/')}/{file_publish.MANIFEST}",
            parts=len(parts), target=uri,
            extra={"rows_bad": manifest["totals"]["rows_bad"], "errors_uri": manifest["bad_rows"]["errors_uri"]},
        )

    def discard(self) -> None:
        file_publish.discard(self.job, self.secrets)
