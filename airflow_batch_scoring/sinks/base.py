"""What every sink is: the :class:`Sink` protocol (driver side) and its :class:`ShardWriter` (replica side).

A sink stages each shard's output where readers of the target do not look (a staging folder, staging tables), and
publishes the whole run at once: files move into the sink folder under ``_SUCCESS`` and a manifest, or rows move into
the target table in one transaction. The driver (:mod:`airflow_batch_scoring.driver.run`) walks this lifecycle once
for every sink: ``check`` -> ``begin_attempt`` -> replicas (``open_writer``) -> ``read_reports`` -> ``publish``, or
``discard`` on failure. :func:`airflow_batch_scoring.sinks.sink_class` picks the implementation from the spec.

Shared with the runtime: never imports Airflow.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import pyarrow as pa

from airflow_batch_scoring.io.bad_rows.quarantine import ErrorOutput
from airflow_batch_scoring.job import ScoringJob
from airflow_batch_scoring.runtime.shards import ShardReport
from airflow_batch_scoring.specs import DataSpec


class KeepsStaging:
    """Marks an error after which the run's staging must be kept (a newer attempt owns it, or it holds a publish
    plan a retry finishes): the driver does not discard it."""


@dataclass
class Resumption:
    """What an attempt found of its run's earlier attempts.

    :param completed: reports of the shards an earlier attempt finished (and whose output is still staged).
    :param reason: why earlier work was not reused, when there was some.
    """

    completed: dict[int, ShardReport] = field(default_factory=dict)
    reason: str | None = None


@dataclass
class Published:
    """What a publish did.

    :param manifest: the run's manifest as published.
    :param output_uri: where the output is (no credentials).
    :param manifest_uri: where the manifest is.
    :param parts: the number of parts (files, staging tables) published.
    :param target: the output for the log line (the folder, or the table with its counts).
    :param extra: sink-specific entries of the task's summary.
    """

    manifest: dict[str, Any]
    output_uri: str
    manifest_uri: str
    parts: int
    target: str
    extra: dict[str, Any] = field(default_factory=dict)


class ShardWriter(Protocol):
    """Writes one shard's scored rows into the sink's staging, then the shard's report (the shard is complete).

    :ivar quarantine: where the shard's bad rows go (``on_bad_rows="quarantine"``), else ``None``.
    """

    quarantine: ErrorOutput | None

    def write(self, table: pa.Table) -> None: ...

    def close(self) -> int:
        """Complete the staged output; return the rows written."""
        ...

    def abort(self) -> None: ...

    @property
    def parts(self) -> list[str]:
        """The staged parts (after :meth:`close`)."""
        ...

    def write_report(self, report: Mapping[str, Any]) -> None: ...


class Sink(Protocol):
    """Where a job's output goes, through staging and one publish.

    Built from the job and the sink's secret material (:func:`airflow_batch_scoring.sinks.open_sink`); the two static
    methods serve the driver before the job exists.
    """

    job: ScoringJob

    def __init__(self, job: ScoringJob, secrets: Mapping[str, Any] | None) -> None: ...

    @staticmethod
    def precheck(spec: DataSpec, secrets: Mapping[str, Any] | None) -> None:
        """Before anything is read: the target's store or database answers (never creates anything)."""
        ...

    @staticmethod
    def check_place(spec: DataSpec, source: DataSpec, source_files: str | None) -> DataSpec:
        """Refuse a place that would overwrite or mix with the source; return the spec with its location resolved.

        :param source_files: the source's files' location (``None`` for a table or a query).
        :raises ConfigurationError: naming the locations and what to do instead.
        """
        ...

    @staticmethod
    def staging_uri(job: ScoringJob) -> str:
        """Where the job's replicas stage their output."""
        ...

    @staticmethod
    def resolve(spec: DataSpec, source_format: str, detect_header: Callable[[], bool]) -> DataSpec:
        """The spec with what it left to the input decided before any replica starts (a file sink's format and
        ``header="auto"``).

        :param source_format: the source's file format (``""`` for a table or a query).
        :param detect_header: whether the input's first file has a header line (reads it).
        :raises ConfigurationError: for settings that do not go together (a compressed Parquet output).
        """
        ...

    @staticmethod
    def watermark_place(spec: DataSpec) -> tuple[str, str | None]:
        """Incremental scoring: what identifies this sink in the state's name, and the state folder used when
        ``incremental_state`` is not given (``None``: the user must give one)."""
        ...

    @staticmethod
    def published(spec: DataSpec, secrets: Mapping[str, Any] | None, job_id: str) -> bool:
        """Whether the run ``job_id`` published into the sink ``spec`` (settles its pending watermark)."""
        ...

    @property
    def location(self) -> str:
        """The output, for logs and XCom (no credentials)."""
        ...

    @property
    def into(self) -> str:
        """`` into <table> (<mode>)``, or nothing: the end of the "Scoring ..." log line."""
        ...

    def check(self, if_exists: str) -> None:
        """Before any replica starts: refuse a target that may not be written as asked."""
        ...

    def resume_publish(self, if_exists: str, log: Callable[[str], None]) -> bool:
        """Whether an earlier attempt of the run stopped while publishing (this attempt then finishes it)."""
        ...

    def begin_attempt(self, fingerprint: str | None, *, reuse: bool, log: Callable[[str], None]) -> Resumption:
        """Take the run over for this attempt; find the shards an earlier attempt with ``fingerprint`` completed
        (when ``reuse``), and drop the rest of its work."""
        ...

    def open_writer(self, shard: int) -> ShardWriter: ...

    def read_reports(self) -> list[ShardReport]:
        """Every shard's report.

        :raises ReplicaError: naming the shards without one.
        """
        ...

    def describe(self) -> dict[str, Any]:
        """The manifest's ``output`` section."""
        ...

    def finish_pending(self, if_exists: str) -> Published | None:
        """Finish the publish an earlier attempt stopped part-way, when :meth:`resume_publish` found one."""
        ...

    def publish(
        self, reports: list[ShardReport], manifest: Mapping[str, Any], if_exists: str, log: Callable[[str], None]
    ) -> Published: ...

    def discard(self) -> None:
        """Remove this attempt's staging (best effort)."""
        ...
