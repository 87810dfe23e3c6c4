"""A file sink's staging folder: which shards an earlier attempt of the run finished, and who may publish.

A run (one Airflow task instance of one DAG run, or one ``batch-scoring score --job-id`` name) stages everything in
``<sink>/_temporary/<job_id>/``. Every attempt of that run shares the folder:

- ``_plan.json`` holds the run's fingerprint: the model digest, the input listing (names, sizes, etags or
  modification times) and every scoring option, shard plan included. A later attempt whose fingerprint differs
  (the model or the input changed meanwhile) removes the folder and starts clean, and says why.
- ``_attempt.json`` is the lease: the attempt that wrote it last is the only one allowed to publish. An older
  attempt still running (a zombie) finds the lease taken and refuses to publish.
- each replica writes its parts under names that carry the attempt (``part-00001.try2.csv``) and, last, its report
  ``_shard-00001.json``: a shard with a report whose parts all exist is complete and is not scored again.

Shared with the runtime: never imports Airflow.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from airflow_batch_scoring.errors import BatchScoringError, InputError
from airflow_batch_scoring.io.files import filesystem, is_local
from airflow_batch_scoring.io.store_ops import list_files, read_files
from airflow_batch_scoring.job import ScoringJob
from airflow_batch_scoring.runtime.shards import ShardReport, report_name
from airflow_batch_scoring.sinks.base import KeepsStaging, Resumption

PLAN = "_plan.json"
LEASE = "_attempt.json"


class SupersededError(BatchScoringError, KeepsStaging):
    """A newer attempt of the same run has taken over; this attempt must not publish."""

    retryable = True


def read_json(fs: Any, path: str, unreadable: Any = None) -> Any:
    """The JSON document at ``path``: ``None`` when there is none, ``unreadable`` when it is there but not JSON."""
    try:
        with fs.open(path, "r") as f:
            return json.load(f)
    except FileNotFoundError:
        return None
    except (ValueError, OSError):
        return unreadable


def write_json(fs: Any, path: str, document: Mapping[str, Any]) -> None:
    """Write ``document`` as JSON to ``path`` (values JSON does not know, e.g. datetimes, as their text)."""
    with fs.open(path, "w") as f:
        f.write(json.dumps(document, indent=2, sort_keys=True, default=str))


def begin_attempt(
    job: ScoringJob,
    current: str | None,
    storage_options: Mapping[str, Any] | None,
    *,
    resume: bool = True,
) -> Resumption:
    """Take the run's lease for ``job.attempt`` and find the shards an earlier attempt completed.

    Writing the plan and the lease is also the sink's writability check: it runs before any replica starts.

    :param current: the run's fingerprint (:meth:`~airflow_batch_scoring.sources.base.Source.fingerprint`; ``None``
        for a source that cannot be resumed).
    :param resume: reuse completed shards when the fingerprint matches; ``False`` always starts clean.
    :raises InputError: when the staging folder cannot be written (naming the location and what to check).
    """
    fs, staging = filesystem(job.staging_uri, storage_options)
    result = Resumption()
    try:
        plan = read_json(fs, f"{staging}/{PLAN}") if fs.exists(staging) else None
        if plan is not None and plan.get("fingerprint") != current:
            result.reason = (
                "the model, the input listing or the scoring options changed since the earlier attempt "
                f"{plan.get('attempt')!r}, so it starts clean"
            )
        elif plan is not None and resume and current is not None:
            result.completed = _completed_shards(fs, staging, job)
        if plan is None or plan.get("fingerprint") != current or not resume:
            if fs.exists(staging):
                fs.rm(staging, recursive=True)
            if is_local(fs):
                fs.makedirs(staging, exist_ok=True)
            write_json(fs, f"{staging}/{PLAN}", {"fingerprint": current, "attempt": job.attempt})
        take_lease(job, storage_options)
    except PermissionError as err:
        raise InputError(
            f"cannot write to the sink {job.sink.uri!r} ({err}); check that the sink's connection may create, "
            "write and delete objects under that location."
        ) from None
    fs.invalidate_cache()
    return result


def take_lease(job: ScoringJob, storage_options: Mapping[str, Any] | None) -> None:
    """Make ``job.attempt`` the attempt of the run allowed to publish (an older one still running then refuses)."""
    fs, staging = filesystem(job.staging_uri, storage_options)
    if is_local(fs):
        fs.makedirs(staging, exist_ok=True)
    write_json(fs, f"{staging}/{LEASE}", {"attempt": job.attempt})


def _completed_shards(fs: Any, staging: str, job: ScoringJob) -> dict[int, ShardReport]:
    """The shards whose report is staged with every part it names (one listing; the reports read concurrently)."""
    staged = list_files(fs, staging)
    paths = {shard: f"{staging}/{report_name(shard)}" for shard in range(job.replicas)}
    documents = read_files(fs, [path for path in paths.values() if path in staged])
    completed = {}
    for shard, path in paths.items():
        try:
            report = ShardReport(**json.loads(documents[path]))
        except (KeyError, ValueError, TypeError):
            continue  # no report, or one cut short: the shard is scored again
        names = list(report.parts) + list(report.error_parts or [])
        if all(f"{staging}/{name}" in staged for name in names):
            completed[shard] = report
    return completed


def check_lease(job: ScoringJob, storage_options: Mapping[str, Any] | None) -> None:
    """Refuse to publish when a newer attempt of the run has taken the lease.

    :raises SupersededError: naming both attempts.
    """
    fs, staging = filesystem(job.staging_uri, storage_options)
    fs.invalidate_cache()
    lease = read_json(fs, f"{staging}/{LEASE}")
    holder = (lease or {}).get("attempt")
    if holder != job.attempt:
        raise SupersededError(
            f"attempt {job.attempt!r} of {job.job_id!r} did not publish: attempt {holder!r} of the same run has "
            "taken over its staging folder (a retry started while this attempt was still running)."
        )
