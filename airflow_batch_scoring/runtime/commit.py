"""Publishing a finished job: staged parts move into the sink folder, then the manifest, then ``_SUCCESS``.

Readers of the sink wait for ``_SUCCESS``; it is removed first and written last, so a reader that honours it never
sees a mix of two runs' parts. A failed job publishes nothing and its staging folder is removed.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from airflow_batch_scoring.errors import ConfigurationError, ReplicaError
from airflow_batch_scoring.io import bad_rows
from airflow_batch_scoring.io.files import filesystem, is_local
from airflow_batch_scoring.job import ScoringJob
from airflow_batch_scoring.runtime.resume import check_lease
from airflow_batch_scoring.runtime.shards import ShardReport, published_name, report_name

SUCCESS = "_SUCCESS"
MANIFEST = "_manifest.json"
STAGING = "_temporary"


def staging_uri(sink_uri: str, job_id: str) -> str:
    """The staging folder of one run (shared by its attempts), inside the sink folder (so publishing is a rename)."""
    return f"{sink_uri.rstrip('/')}/{STAGING}/{job_id}"


def read_reports(job: ScoringJob, storage_options: Mapping[str, Any] | None) -> list[ShardReport]:
    """Read every shard's report from the staging folder.

    :raises ReplicaError: naming the shards whose report is missing (they did not finish).
    """
    fs, staging = filesystem(job.staging_uri, storage_options)
    reports, missing = [], []
    for shard in range(job.replicas):
        path = f"{staging}/{report_name(shard)}"
        if not fs.exists(path):
            missing.append(shard)
            continue
        with fs.open(path, "r") as f:
            reports.append(ShardReport(**json.load(f)))
    if missing:
        raise ReplicaError(
            f"Shard(s) {missing} did not finish (no report in {job.staging_uri}); nothing was published."
        )
    return reports


def _previous_output(fs: Any, sink: str) -> list[str]:
    if not fs.exists(sink):
        return []
    names = [p.rstrip("/").rsplit("/", 1)[-1] for p in fs.ls(sink, detail=False)]
    return sorted(n for n in names if n.startswith("part-") or n in (SUCCESS, MANIFEST))


def check_sink(job: ScoringJob, storage_options: Mapping[str, Any] | None, if_exists: str) -> None:
    """Refuse early when the sink holds a previous output and ``if_exists="fail"``."""
    fs, sink = filesystem(job.sink.uri, storage_options)
    if if_exists == "fail" and _previous_output(fs, sink):
        raise ConfigurationError(
            f"The sink {job.sink.uri} already holds an output and if_exists='fail'; remove it, write elsewhere, "
            "or set if_exists='replace'."
        )


def publish(
    job: ScoringJob,
    reports: list[ShardReport],
    manifest: Mapping[str, Any],
    storage_options: Mapping[str, Any] | None,
    if_exists: str = "replace",
) -> list[str]:
    """Move the staged parts into the sink folder, then write the manifest and ``_SUCCESS``; return the parts' URIs.

    :raises SupersededError: when a newer attempt of the run holds the lease (checked before anything moves).
    """
    check_sink(job, storage_options, if_exists)
    check_lease(job, storage_options)
    fs, sink = filesystem(job.sink.uri, storage_options)
    _, staging = filesystem(job.staging_uri, storage_options)
    previous = _previous_output(fs, sink)
    for name in sorted(previous, key=lambda n: n != SUCCESS):  # _SUCCESS goes first
        fs.rm(f"{sink}/{name}")
    bad_rows.remove_published_errors(fs, sink)  # a previous run's _errors/ goes with its parts
    if is_local(fs):
        fs.makedirs(sink, exist_ok=True)
    published = []
    for report in reports:
        for part in report.parts:
            final = published_name(part)
            fs.mv(f"{staging}/{part}", f"{sink}/{final}")
            published.append(fs.unstrip_protocol(f"{sink}/{final}"))
    bad_rows.publish_errors(fs, staging, sink, reports, published_name)  # quarantined rows -> <sink>/_errors/
    with fs.open(f"{sink}/{MANIFEST}", "w") as f:
        f.write(json.dumps(manifest, indent=2, sort_keys=True, default=str))
    with fs.open(f"{sink}/{SUCCESS}", "w") as f:
        f.write("")
    discard(job, storage_options)
    return published


def discard(job: ScoringJob, storage_options: Mapping[str, Any] | None) -> None:
    """Remove the job's staging folder (and the staging root when it is left empty)."""
    fs, staging = filesystem(job.staging_uri, storage_options)
    if fs.exists(staging):
        fs.rm(staging, recursive=True)
    root = staging.rsplit("/", 1)[0]
    try:
        # Only when no other attempt has files there; stores that keep folder entries lose them too.
        if fs.exists(root) and not fs.find(root):
            fs.rm(root, recursive=True)
    except OSError:
        pass
    fs.invalidate_cache()
