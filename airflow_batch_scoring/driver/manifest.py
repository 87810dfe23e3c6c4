"""The run's manifest (what was scored, with what, into what, how fast) and the task's summary of it.

Shared with the runtime: never imports Airflow.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from datetime import datetime, timezone
from typing import Any

from airflow_batch_scoring.io.bad_rows import policy as bad_rows
from airflow_batch_scoring.job import ScoringJob
from airflow_batch_scoring.runtime.shards import ShardReport


def schema_hash(columns: list[dict[str, str]] | None) -> str | None:
    """``sha256:<hex>`` of a schema's columns (names lower-cased, in order), to compare runs' schemas at a glance."""
    if not columns:
        return None
    canonical = json.dumps([[c["name"].lower(), c["type"]] for c in columns])
    return "sha256:" + hashlib.sha256(canonical.encode()).hexdigest()


def image_digest(image: str | None) -> str | None:
    """The digest an image reference pins (``registry/scoring@sha256:<hex>`` -> ``sha256:<hex>``), else ``None``."""
    if not image or "@" not in image:
        return None
    digest = image.rsplit("@", 1)[1]
    return digest if ":" in digest else None


def policy_of(job: ScoringJob) -> bad_rows.BadRowPolicy:
    """The job's bad-row policy."""
    return bad_rows.BadRowPolicy.parse(job.on_bad_rows, job.max_bad_rows, job.max_bad_fraction)


def build_manifest(
    job: ScoringJob,
    reports: list[ShardReport],
    started: datetime,
    runtime: str,
    *,
    input_section: Mapping[str, Any],
    output_section: Mapping[str, Any],
) -> dict[str, Any]:
    """Describe the finished job: model, input (the source's own description), output (the sink's), schemas,
    per-shard and total counts, timings."""
    finished = datetime.now(timezone.utc)
    duration = (finished - started).total_seconds()
    rows_in = sum(r.rows_in for r in reports)
    rows_out = sum(r.rows_out for r in reports)
    rows_bad = sum(r.rows_bad for r in reports)
    first = next((r for r in reports if r.output_columns), None)
    from airflow_batch_scoring import __version__

    return {
        "job_id": job.job_id,
        "attempt": job.attempt,
        "runtime_image": job.runtime_image,
        "runtime_image_digest": image_digest(job.runtime_image),
        # where the replicas ran Python: a model environment, the worker's, or (Kubernetes) their image
        "environment": dict(job.environment or {"mode": "image" if job.runtime_image else "worker"}),
        "package_version": __version__,
        "runtime": runtime,
        "model": {
            "uri": job.model.uri,
            "resolved_uri": job.model.resolved_uri,
            "name": job.model.name,
            "version": job.model.version,
            "flavor": job.model.flavor,
            "digest": job.model.digest,
        },
        "input": dict(input_section),
        "output": dict(output_section),
        "input_schema": first.input_schema if first else job.input_schema,
        "schema_hash": schema_hash(first.input_schema if first else job.input_schema),
        "output_columns": first.output_columns if first else None,
        "schema_check": job.schema_check,
        "replicas": job.replicas,
        "batch_size": job.batch_size,
        "shards": [r.to_dict() for r in reports],
        "totals": {"rows_in": rows_in, "rows_out": rows_out, "rows_bad": rows_bad},
        "bad_rows": bad_rows.manifest_section(policy_of(job), reports, job.sink.uri),
        "started_at": started.isoformat(),
        "finished_at": finished.isoformat(),
        "duration_s": round(duration, 3),
        "rows_per_s": round(rows_in / duration, 1) if duration > 0 else None,
    }


def job_summary(
    job: ScoringJob, manifest: Mapping[str, Any], duration: float, *, output_uri: str, manifest_uri: str, parts: int
) -> dict[str, Any]:
    """The task's XCom summary of a published job: where the output is, counts, throughput (over ``duration``
    seconds, from the job's start) and the model."""
    rows_in = manifest["totals"]["rows_in"]
    return {
        "output_uri": output_uri,
        "manifest_uri": manifest_uri,
        "parts": parts,
        "rows_in": rows_in,
        "rows_out": manifest["totals"]["rows_out"],
        "duration_s": round(duration, 3),
        "rows_per_s": round(rows_in / duration, 1) if duration > 0 else None,
        "model_uri": job.model.resolved_uri or job.model.uri,
        "model_version": job.model.version,
        "model_digest": job.model.digest,
        "replicas": job.replicas,
        "resumed_shards": list(manifest.get("resumed_shards") or []),
    }
