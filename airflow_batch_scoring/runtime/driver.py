"""The driver: plan a job, run its replicas, publish the output with its manifest, and summarise.

The operator and the ``batch-scoring score`` command both drive jobs through these two functions, so a shell run and
an Airflow run are the same run.
"""

from __future__ import annotations

import os
import re
import tempfile
import time
from collections.abc import Callable, Mapping
from datetime import datetime, timezone
from typing import Any

from airflow_batch_scoring.errors import ConfigurationError, InputError
from airflow_batch_scoring.io.files import InputFile, check_sink_root, filesystem, list_inputs
from airflow_batch_scoring.job import (
    DEFAULT_PART_SIZE,
    DEFAULT_WRITE_CONCURRENCY,
    DataSpec,
    ModelSpec,
    ScoringJob,
    infer_format,
)
from airflow_batch_scoring.runtime import commit
from airflow_batch_scoring.runtime.local import LocalLauncher
from airflow_batch_scoring.runtime.planner import plan_shards
from airflow_batch_scoring.runtime.shards import ShardReport
from airflow_batch_scoring.schema import ModelSchema

IF_EXISTS = ("replace", "fail")
DEFAULT_BATCH_SIZE = 100_000


def safe_job_id(text: str) -> str:
    """Make ``text`` usable as a folder name (letters, digits, ``._-``)."""
    cleaned = re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("._")
    return cleaned[:200] or "job"


def positive_int(value: Any, name: str) -> int:
    """Read a positive integer parameter (templated values arrive as strings)."""
    if isinstance(value, int) and not isinstance(value, bool):
        number = value
    elif isinstance(value, str) and value.strip().isdigit():
        number = int(value)
    else:
        raise ConfigurationError(f"{name} must be a positive integer, got {value!r}.")
    if number < 1:
        raise ConfigurationError(f"{name} must be a positive integer, got {value!r}.")
    return number


def format_of_listing(uri: str, files: list[InputFile]) -> str:
    """Infer the input format from the listed files' suffixes (a folder or glob URI tells none itself).

    :raises ConfigurationError: when the suffixes disagree or tell nothing.
    """
    formats = {infer_format(f.uri) for f in files}
    if len(formats) == 1 and None not in formats:
        return formats.pop()  # type: ignore[return-value]
    raise ConfigurationError(
        f"Cannot tell the format of the input {uri!r} from its files' names ({', '.join(f.uri for f in files[:3])}): "
        "set source['format'] to csv, jsonl or parquet."
    )


def prepare_job(
    *,
    job_id: str,
    model: ModelSpec,
    source: DataSpec,
    sink: DataSpec,
    replicas: int = 1,
    batch_size: int = DEFAULT_BATCH_SIZE,
    passthrough_columns: list[str] | None = None,
    input_schema: Any = None,
    output_schema: Any = None,
    schema_check: bool = True,
    predict_probabilities: bool = False,
    part_size: int = DEFAULT_PART_SIZE,
    write_concurrency: int = DEFAULT_WRITE_CONCURRENCY,
    storage_options: Mapping[str, Mapping[str, Any]] | None = None,
) -> tuple[ScoringJob, list[InputFile]]:
    """List the inputs, check the sink's bucket, plan the shards and build the ScoringJob.

    :param storage_options: fsspec options of the ``source`` and the ``sink`` (from their connections).
    :raises InputError: when the input does not exist, is empty or cannot be read, or the sink's bucket is missing.
    :raises ConfigurationError: for an invalid parameter.
    """
    options = storage_options or {}
    replicas = positive_int(replicas, "replicas")
    batch_size = positive_int(batch_size, "batch_size")
    part_size = positive_int(part_size, "part_size")
    write_concurrency = positive_int(write_concurrency, "write_concurrency")
    files = list_inputs(source.uri, options.get("source"), conn_id=source.conn_id)
    check_sink_root(sink.uri, options.get("sink"), sink.conn_id)
    if not source.format:
        source.format = format_of_listing(source.uri, files)
    if not sink.format:
        sink.format = source.format
    source_fs, _ = filesystem(source.uri, options.get("source"))
    shards = plan_shards(source, files, replicas, source_fs, part_size)
    parsed_input = ModelSchema.parse(input_schema)
    parsed_output = ModelSchema.parse(output_schema)
    job = ScoringJob(
        job_id=safe_job_id(job_id),
        model=model,
        source=source,
        sink=sink,
        staging_uri=commit.staging_uri(sink.uri, safe_job_id(job_id)),
        shards=shards,
        batch_size=batch_size,
        passthrough_columns=list(passthrough_columns or []),
        input_schema=parsed_input.to_json() if parsed_input else None,
        output_schema=parsed_output.to_json() if parsed_output else None,
        schema_check=schema_check,
        predict_probabilities=predict_probabilities,
        part_size=part_size,
        write_concurrency=write_concurrency,
    )
    return job, files


def build_manifest(
    job: ScoringJob, files: list[InputFile], reports: list[ShardReport], started: datetime, runtime: str
) -> dict[str, Any]:
    """Describe the finished job: model, input listing, schemas, per-shard and total counts, timings."""
    finished = datetime.now(timezone.utc)
    duration = (finished - started).total_seconds()
    rows_in = sum(r.rows_in for r in reports)
    rows_out = sum(r.rows_out for r in reports)
    first = next((r for r in reports if r.output_columns), None)
    from airflow_batch_scoring import __version__

    return {
        "job_id": job.job_id,
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
        "input": {
            "uri": job.source.uri,
            "format": job.source.format,
            "header": job.source.header,
            "files": [f.to_dict() for f in files],
        },
        "output": {"uri": job.sink.uri, "format": job.sink.format, "header": job.sink.header},
        "input_schema": first.input_schema if first else job.input_schema,
        "output_columns": first.output_columns if first else None,
        "schema_check": job.schema_check,
        "replicas": job.replicas,
        "batch_size": job.batch_size,
        "shards": [r.to_dict() for r in reports],
        "totals": {"rows_in": rows_in, "rows_out": rows_out},
        "started_at": started.isoformat(),
        "finished_at": finished.isoformat(),
        "duration_s": round(duration, 3),
        "rows_per_s": round(rows_in / duration, 1) if duration > 0 else None,
    }


def execute_job(
    job: ScoringJob,
    files: list[InputFile],
    *,
    storage_options: Mapping[str, Mapping[str, Any]] | None = None,
    log: Callable[[str], None] = print,
    launcher: LocalLauncher | None = None,
    if_exists: str = "replace",
) -> dict[str, Any]:
    """Run every replica of ``job`` locally, publish its output, and return the summary.

    On any failure the staging folder is removed and nothing is published.
    """
    if if_exists not in IF_EXISTS:
        raise ConfigurationError(f"if_exists must be one of {IF_EXISTS}, got {if_exists!r}.")
    options = storage_options or {}
    sink_options = options.get("sink")
    commit.check_sink(job, sink_options, if_exists)
    started = datetime.now(timezone.utc)
    clock = time.perf_counter()
    launcher = launcher or LocalLauncher(log)
    log(f"Scoring {job.source.uri} with {job.model.resolved_uri or job.model.uri} on {job.replicas} local replica(s)")
    try:
        with tempfile.TemporaryDirectory(prefix="batch-scoring-job-") as folder:
            job_path = os.path.join(folder, "job.json")
            with open(job_path, "w") as f:
                f.write(job.to_json())
            launcher.run(job_path, job.replicas, secrets=options)
        reports = commit.read_reports(job, sink_options)
        rows_in = sum(r.rows_in for r in reports)
        if rows_in == 0:
            raise InputError(
                f"the input {job.source.uri} holds no data rows (only blank lines or a header); nothing was "
                "published. Check the input, and header=True/False."
            )
        manifest = build_manifest(job, files, reports, started, runtime="local")
        parts = commit.publish(job, reports, manifest, sink_options, if_exists)
    except BaseException:
        commit.discard(job, sink_options)
        raise
    duration = time.perf_counter() - clock
    summary = {
        "output_uri": job.sink.uri,
        "manifest_uri": f"{job.sink.uri.rstrip('/')}/{commit.MANIFEST}",
        "parts": len(parts),
        "rows_in": manifest["totals"]["rows_in"],
        "rows_out": manifest["totals"]["rows_out"],
        "duration_s": round(duration, 3),
        "rows_per_s": round(manifest["totals"]["rows_in"] / duration, 1) if duration > 0 else None,
        "model_uri": job.model.resolved_uri or job.model.uri,
        "model_version": job.model.version,
        "model_digest": job.model.digest,
        "replicas": job.replicas,
    }
    log(
        f"Scored {summary['rows_in']:,} rows into {summary['output_uri']} in {summary['duration_s']:.1f}s "
        f"({summary['rows_per_s'] or 0:,.0f} rows/s)"
    )
    return summary
