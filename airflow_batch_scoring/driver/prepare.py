"""Preparing a job: list and plan the source, check the sink, build the ScoringJob every replica reads.

Shared with the runtime: never imports Airflow.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Any

from airflow_batch_scoring.driver import incremental
from airflow_batch_scoring.errors import ConfigurationError
from airflow_batch_scoring.io.files import InputFile
from airflow_batch_scoring.io.readers.columns import ReadPlan
from airflow_batch_scoring.job import ModelSpec, ScoringJob
from airflow_batch_scoring.options import ScoringOptions
from airflow_batch_scoring.runtime import passthrough
from airflow_batch_scoring.schema import ModelSchema
from airflow_batch_scoring.sinks import sink_class
from airflow_batch_scoring.sources import open_source, source_class
from airflow_batch_scoring.specs import DataSpec


def safe_job_id(text: str) -> str:
    """Make ``text`` usable as a folder name (letters, digits, ``._-``)."""
    cleaned = re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("._")
    return cleaned[:200] or "job"


def prepare_job(
    *,
    job_id: str,
    attempt: str = "try1",
    model: ModelSpec,
    source: DataSpec,
    sink: DataSpec,
    options: ScoringOptions | None = None,
    storage_options: Mapping[str, Mapping[str, Any]] | None = None,
    log: Callable[[str], None] = print,
) -> tuple[ScoringJob, list[InputFile]]:
    """List the inputs, check the sink's bucket, plan the shards and build the ScoringJob.

    :param job_id: names the run; every attempt of one run shares it (and its staging folder, for resuming).
    :param attempt: names this attempt of the run (letters, digits, ``_`` and ``-``).
    :param options: the run's scoring options, parsed once by the caller (default: :class:`ScoringOptions`'s).
    :param storage_options: fsspec options of the ``source`` and the ``sink`` (from their connections).
    :param log: where the incremental lines go (what is new; see :mod:`airflow_batch_scoring.driver.incremental`).
    :raises InputError: when the input does not exist, is empty or cannot be read, or the sink's bucket is missing.
    :raises ConfigurationError: for an invalid parameter.
    """
    opts = options or ScoringOptions()
    secrets = storage_options or {}
    policy = opts.bad_rows
    source, sink = check_places(source, sink)  # before anything is read or written
    reading = open_source(source, secrets.get("source"))
    files = reading.listing()
    writing = sink_class(sink)
    writing.precheck(sink, secrets.get("sink"))
    section = None
    if opts.incremental:  # keep what is new since the key's watermark
        section, files = incremental.restrict(opts, reading, source, sink, secrets, safe_job_id(job_id), log)
    schema = opts.input_schema or ModelSchema.parse(model.input_schema)
    plan = ReadPlan(list(schema.columns) if schema else None, opts.schema_check, list(opts.passthrough_columns))
    if policy.quarantine and not reading.row_errors:
        raise ConfigurationError(
            f"on_bad_rows='quarantine' is not supported with {reading.what} as the source yet; use 'fail'."
        )
    if section is not None and section["nothing_new"]:  # nothing to plan: no shard, no replica, nothing published
        job = ScoringJob(job_id=safe_job_id(job_id), model=model, source=reading.spec, sink=sink, staging_uri="",
                         incremental=section)
        return replace(job, staging_uri=writing.staging_uri(job)), files
    shards = reading.plan(opts.replicas, plan, opts.part_size)
    sink = writing.resolve(sink, reading.output_format(), lambda: reading.detect_header(plan, opts.part_size))
    run_types = reading.decide_passthrough(
        plan.passthrough, opts.passthrough_schema, schema.names if schema else None
    )
    job = ScoringJob(
        job_id=safe_job_id(job_id),
        model=model,
        source=reading.spec,  # (with what the listing told: the files' format)
        sink=sink,
        staging_uri="",
        shards=tuple(tuple(pieces) for pieces in shards),
        batch_size=opts.batch_size,
        passthrough_columns=tuple(opts.passthrough_columns),
        input_schema=opts.input_schema.to_json() if opts.input_schema else None,
        output_schema=opts.output_schema.to_json() if opts.output_schema else None,
        schema_check=opts.schema_check,
        predict_probabilities=opts.predict_probabilities,
        part_size=opts.part_size,
        write_concurrency=opts.write_concurrency,
        attempt=re.sub(r"[^A-Za-z0-9_-]+", "_", str(attempt)) or "try1",
        on_bad_rows=policy.mode,
        max_bad_rows=policy.max_bad_rows,
        max_bad_fraction=policy.max_bad_fraction,
        passthrough_types=passthrough.encode(run_types),
        incremental=section,
    )
    return replace(job, staging_uri=writing.staging_uri(job)), files


def check_places(source: DataSpec, sink: DataSpec) -> tuple[DataSpec, DataSpec]:
    """Resolve ``..`` in the source and sink locations, then refuse a sink at a filesystem's or bucket's root and a
    sink that is, holds or lies inside the source (or, for SQL, replaces the source table).

    :returns: the source and the sink with their locations resolved.
    :raises ConfigurationError: naming the locations and what to do instead.
    """
    source, files = source_class(source).place(source)
    return source, sink_class(sink).check_place(sink, source, files)
