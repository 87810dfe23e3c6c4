"""The driver: begin a job (check the sink, preflight the source, take the run over), run its replicas, then
publish the output with its manifest and summarise; written once against
:class:`~airflow_batch_scoring.sources.base.Source` and :class:`~airflow_batch_scoring.sinks.base.Sink`.

The operator and the ``batch-scoring score`` command both drive jobs through these functions, so a shell run and
an Airflow run are the same run.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from airflow_batch_scoring.driver import incremental
from airflow_batch_scoring.driver.launcher import Launcher
from airflow_batch_scoring.driver.local import LocalLauncher
from airflow_batch_scoring.driver.manifest import build_manifest, job_summary, policy_of
from airflow_batch_scoring.errors import ConfigurationError, InputError, is_retryable
from airflow_batch_scoring.io.bad_rows import policy as bad_rows
from airflow_batch_scoring.io.files import InputFile
from airflow_batch_scoring.job import ScoringJob
from airflow_batch_scoring.sinks import open_sink
from airflow_batch_scoring.sinks.base import KeepsStaging, Published, Sink
from airflow_batch_scoring.sources import open_source
from airflow_batch_scoring.sources.base import Source

IF_EXISTS = ("replace", "fail")


@dataclass
class JobStart:
    """What :func:`begin_job` found: the shards to run, the shards an earlier attempt completed, when the run began.

    It is JSON-able, so a deferred task (the Kubernetes runtime) can hand it to the commit after resuming.
    """

    todo: list[int]
    resumed: list[int]
    started: str
    clock: float | None = None

    def elapsed(self) -> float:
        """Seconds since the run began (by this process's clock when it began here)."""
        if self.clock is not None:
            return time.perf_counter() - self.clock
        return (datetime.now(timezone.utc) - datetime.fromisoformat(self.started)).total_seconds()

    def to_dict(self) -> dict[str, Any]:
        return {"todo": self.todo, "resumed": self.resumed, "started": self.started}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> JobStart:
        return cls(todo=list(data["todo"]), resumed=list(data["resumed"]), started=data["started"])


def shards_left(
    replicas: int, completed: Mapping[int, Any], reason: str | None, log: Callable[[str], None]
) -> list[int]:
    """The shards still to score, given those an earlier attempt completed; the log says what is reused, or why
    nothing is."""
    if reason:
        log(f"Not resuming: {reason}.")
    todo = [shard for shard in range(replicas) if shard not in completed]
    if completed:
        log(
            f"Resuming: shard(s) {sorted(completed)} completed in an earlier attempt and are kept; "
            f"scoring shard(s) {todo}"
        )
    return todo


def _places(
    job: ScoringJob, files: list[InputFile], storage_options: Mapping[str, Mapping[str, Any]] | None
) -> tuple[Source, Sink]:
    options = storage_options or {}
    return open_source(job.source, options.get("source"), files), open_sink(job, options.get("sink"))


def begin_job(
    job: ScoringJob,
    files: list[InputFile],
    *,
    storage_options: Mapping[str, Mapping[str, Any]] | None = None,
    log: Callable[[str], None] = print,
    if_exists: str = "replace",
    resume_shards: bool = True,
    runtime: str = "local",
) -> JobStart:
    """Check the sink, preflight the source, take the run over for this attempt and find the shards still to score.

    An earlier attempt's shards are reused when the source is resumable (its fingerprint: the model, the input
    listing and the options unchanged); a table or a query is scored whole again.
    """
    if if_exists not in IF_EXISTS:
        raise ConfigurationError(f"if_exists must be one of {IF_EXISTS}, got {if_exists!r}.")
    source, sink = _places(job, files, storage_options)
    started = datetime.now(timezone.utc)
    clock = time.perf_counter()
    if sink.resume_publish(if_exists, log):  # an earlier attempt stopped while publishing: finish it, score nothing
        return JobStart(todo=[], resumed=list(range(job.replicas)), started=started.isoformat(), clock=clock)
    sink.check(if_exists)
    log(source.preflight(job))
    fingerprint = source.fingerprint(job)
    resumption = sink.begin_attempt(fingerprint, reuse=resume_shards and fingerprint is not None, log=log)
    todo = shards_left(job.replicas, resumption.completed, resumption.reason, log)
    log(
        f"Scoring {source.what} with {job.model.resolved_uri or job.model.uri} on {len(todo)} {runtime} "
        f"replica(s){sink.into}"
    )
    return JobStart(todo=todo, resumed=sorted(resumption.completed), started=started.isoformat(), clock=clock)


def execute_job(
    job: ScoringJob,
    files: list[InputFile],
    *,
    storage_options: Mapping[str, Mapping[str, Any]] | None = None,
    log: Callable[[str], None] = print,
    launcher: Launcher | None = None,
    if_exists: str = "replace",
    resume_shards: bool = True,
    keep_on_failure: bool = False,
) -> dict[str, Any]:
    """Preflight the input, run the replicas of the shards not done yet, publish the output, return the summary.

    Nothing is published unless every shard succeeded, the input is unchanged since it was listed, and this attempt
    still holds the run's lease (see :mod:`airflow_batch_scoring.sinks.file_staging`).

    :param launcher: runs the replicas (:class:`~airflow_batch_scoring.driver.launcher.Launcher`): a
        :class:`LocalLauncher` (default), or the Kubernetes launcher.
    :param resume_shards: reuse shards an earlier attempt of the same ``job_id`` completed, when the model, the input
        listing and the options are unchanged.
    :param keep_on_failure: on failure, keep the completed shards in the staging folder for a retry to resume
        (the operator sets it while Airflow retries remain); otherwise the staging folder is removed.
    """
    options = storage_options or {}
    if incremental.is_nothing_new(job):  # nothing to score: no replica starts, nothing is published
        if launcher is not None:
            launcher.discard()
        return incremental.nothing_new_summary(job)
    launcher = launcher or LocalLauncher(log)
    runtime = launcher.runtime
    launcher.finish_siblings = keep_on_failure  # a retry will come: running replicas may finish their shards first
    # The replicas load the model during the preflight (a no-op if started already, or for a launcher that cannot).
    launcher.prestart(
        job.model, job.replicas, probabilities=job.predict_probabilities, output_schema=job.output_model_schema()
    )
    try:
        start = begin_job(
            job, files, storage_options=options, log=log, if_exists=if_exists, resume_shards=resume_shards,
            runtime=runtime,
        )

        def launch() -> None:
            if start.todo:
                with tempfile.TemporaryDirectory(prefix="batch-scoring-job-") as folder:
                    job_path = os.path.join(folder, "job.json")
                    with open(job_path, "w") as f:
                        f.write(job.to_json())
                    launcher.run(job_path, job.replicas, secrets=options, shards=start.todo)

        return finish_job(
            job, files, start, storage_options=options, log=log, if_exists=if_exists,
            keep_on_failure=keep_on_failure, runtime=runtime, launch=launch,
        )
    finally:
        launcher.discard()  # prestarted replicas never given a shard


def finish_job(
    job: ScoringJob,
    files: list[InputFile],
    start: JobStart,
    *,
    storage_options: Mapping[str, Mapping[str, Any]] | None = None,
    log: Callable[[str], None] = print,
    if_exists: str = "replace",
    keep_on_failure: bool = False,
    runtime: str = "local",
    launch: Callable[[], None] | None = None,
) -> dict[str, Any]:
    """Run ``launch`` (the replicas; for a deferred task: judge the finished Job), then read the shard reports,
    check them and publish the output with its manifest; return the summary.

    On failure the staging is discarded, unless ``keep_on_failure`` and a retry can resume (a resumable source and
    an error a retry may not meet again).
    """
    source, sink = _places(job, files, storage_options)
    started = datetime.fromisoformat(start.started)
    pending = sink.finish_pending(if_exists)  # begin_job found it: roll the earlier publish forward
    if pending is not None:
        incremental.after_publish(job, storage_options, log)  # (the run published: its watermark moves)
        return _published(job, pending, start, log)
    try:
        if launch is not None:
            launch()
        reports = sink.read_reports()
        rows_in = sum(r.rows_in for r in reports)
        bad_rows.check_thresholds(policy_of(job), rows_in, reports)  # quarantine: too many bad rows fail the run
        if rows_in == 0 and not sum(r.rows_bad for r in reports) and not job.incremental:
            raise InputError(
                f"the input {source.what} holds no data rows (only blank lines or a header); nothing was "
                f"published{sink.into}. Check the input, and header=True/False."
            )
        source.check_unchanged(job)
        input_section = source.describe(job)
        if job.incremental:
            input_section["incremental"] = incremental.manifest_section(job)
        manifest = build_manifest(
            job, reports, started, runtime=runtime, input_section=input_section, output_section=sink.describe()
        )
        manifest["resumed_shards"] = list(start.resumed)
        incremental.before_publish(job, storage_options)  # the watermark this run moves to, pending
        published = sink.publish(reports, manifest, if_exists, log)
    except BaseException as err:
        if isinstance(err, KeepsStaging):
            raise  # a newer attempt owns the staging, or it holds a publish plan that a retry finishes
        resumable = source.fingerprint(job) is not None
        if not keep_on_failure or not resumable or not is_retryable(err):  # no retry will resume this
            sink.discard()
        raise
    incremental.after_publish(job, storage_options, log)
    return _published(job, published, start, log)


def _published(job: ScoringJob, published: Published, start: JobStart, log: Callable[[str], None]) -> dict[str, Any]:
    """The summary of a published job (and its log line)."""
    summary = job_summary(
        job, published.manifest, start.elapsed(), output_uri=published.output_uri, manifest_uri=published.manifest_uri,
        parts=published.parts,
    )
    summary.update(published.extra)
    if job.incremental:
        summary["incremental"] = incremental.summary_section(job)
        summary["new_files"] = job.incremental.get("new_files")
    log(
        f"Scored {summary['rows_in']:,} rows into {published.target} in {summary['duration_s']:.1f}s "
        f"({summary['rows_per_s'] or 0:,.0f} rows/s)"
    )
    return summary
