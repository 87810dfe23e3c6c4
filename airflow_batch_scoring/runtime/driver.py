"""The driver: plan a job, run its replicas, publish the output with its manifest, and summarise.

The operator and the ``batch-scoring score`` command both drive jobs through these two functions, so a shell run and
an Airflow run are the same run.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from airflow_batch_scoring.driver.launcher import Launcher
from airflow_batch_scoring.driver.local import LocalLauncher
from airflow_batch_scoring.errors import ConfigurationError, InputError, is_retryable
from airflow_batch_scoring.io import locations
from airflow_batch_scoring.io.bad_rows import policy as bad_rows
from airflow_batch_scoring.io.files import InputFile, check_sink_root, filesystem, list_inputs
from airflow_batch_scoring.io.readers import make_reader
from airflow_batch_scoring.io.readers.columns import ReadPlan
from airflow_batch_scoring.job import (
    AUTO,
    DEFAULT_PART_SIZE,
    DEFAULT_WRITE_CONCURRENCY,
    DataSpec,
    ModelSpec,
    Piece,
    ScoringJob,
    infer_format,
)
from airflow_batch_scoring.runtime import commit, passthrough, resume
from airflow_batch_scoring.runtime.planner import plan_shards
from airflow_batch_scoring.runtime.preflight import SAMPLE_BYTES, preflight
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
    attempt: str = "try1",
    model: ModelSpec,
    source: DataSpec,
    sink: DataSpec,
    replicas: int = 1,
    batch_size: int = DEFAULT_BATCH_SIZE,
    passthrough_columns: list[str] | None = None,
    passthrough_schema: Any = None,
    input_schema: Any = None,
    output_schema: Any = None,
    schema_check: bool = True,
    predict_probabilities: bool = False,
    part_size: int = DEFAULT_PART_SIZE,
    write_concurrency: int = DEFAULT_WRITE_CONCURRENCY,
    storage_options: Mapping[str, Mapping[str, Any]] | None = None,
    on_bad_rows: str = "fail",
    max_bad_rows: int | str | None = None,
    max_bad_fraction: float | str | None = None,
) -> tuple[ScoringJob, list[InputFile]]:
    """List the inputs, check the sink's bucket, plan the shards and build the ScoringJob.

    :param job_id: names the run; every attempt of one run shares it (and its staging folder, for resuming).
    :param attempt: names this attempt of the run (letters, digits, ``_`` and ``-``).
    :param storage_options: fsspec options of the ``source`` and the ``sink`` (from their connections).
    :param passthrough_schema: types for some passthrough columns, ``[{"name": "id", "type": "Int64"}]`` (the form of
        ``input_schema``); the others get the source's own type (Parquet, SQL) or text (CSV, JSON lines): see
        :mod:`airflow_batch_scoring.runtime.passthrough`.
    :raises InputError: when the input does not exist, is empty or cannot be read, or the sink's bucket is missing.
    :raises ConfigurationError: for an invalid parameter.
    """
    options = storage_options or {}
    replicas = positive_int(replicas, "replicas")
    batch_size = positive_int(batch_size, "batch_size")
    part_size = positive_int(part_size, "part_size")
    write_concurrency = positive_int(write_concurrency, "write_concurrency")
    policy = bad_rows.BadRowPolicy.parse(on_bad_rows, max_bad_rows, max_bad_fraction)
    check_places(source, sink)  # before anything is read or written
    files = [] if source.is_sql else list_inputs(source.uri, options.get("source"), conn_id=source.conn_id)
    if sink.is_sql:  # SQL tables: see io/sql_source.py and runtime/sql_commit.py (imported only when used)
        from airflow_batch_scoring.runtime import sql_commit

        sql_commit.check_sink(sink, options.get("sink"))
    else:
        check_sink_root(sink.uri, options.get("sink"), sink.conn_id)
    schema = ModelSchema.parse(input_schema) or ModelSchema.parse(model.input_schema)
    given_types = ModelSchema.parse(passthrough_schema)
    plan = ReadPlan(list(schema.columns) if schema else None, schema_check, list(passthrough_columns or []))
    sql_columns: list[tuple[str, Any]] = []
    parquet_schemas: list[tuple[str, Any]] = []
    if source.is_sql:
        if policy.quarantine:
            raise ConfigurationError("on_bad_rows='quarantine' is not supported with a SQL source yet; use 'fail'.")
        from airflow_batch_scoring.io import sql_source

        shards = sql_source.plan_shards(source, options.get("source"), replicas, plan, sql_columns)
        sink.format = sink.format or ("" if sink.is_sql else "parquet")
    else:
        if not source.format:
            source.format = format_of_listing(source.uri, files)
        if not sink.format and not sink.is_sql:
            sink.format = source.format
        source_fs, _ = filesystem(source.uri, options.get("source"))
        shards = plan_shards(source, files, replicas, source_fs, part_size, parquet_schemas)
        if sink.header == AUTO and source.format == "csv":  # a CSV output gets a header when the input has one
            reader = make_reader(source, plan, source_fs, block_size=min(part_size, SAMPLE_BYTES), batch_size=1)
            sink.header = reader.detect_header(Piece(files[0].uri))  # type: ignore[attr-defined]
    if sink.header == AUTO:
        sink.header = False
    run_types = passthrough.decide(
        source, plan.passthrough, given_types, schema.names if schema else None,
        parquet_schemas=parquet_schemas, sql_columns=sql_columns,
    )
    if sink.compression and sink.format == "parquet":
        raise ConfigurationError(
            "sink['compression'] is for CSV and JSON lines: Parquet compresses its columns itself (snappy)."
        )
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
        attempt=re.sub(r"[^A-Za-z0-9_-]+", "_", str(attempt)) or "try1",
        on_bad_rows=policy.mode,
        max_bad_rows=policy.max_bad_rows,
        max_bad_fraction=policy.max_bad_fraction,
        passthrough_types=passthrough.encode(run_types),
    )
    if sink.is_sql:
        from airflow_batch_scoring.io.sql_sink import staging_location

        job.staging_uri = staging_location(job)
    return job, files


def check_places(source: DataSpec, sink: DataSpec) -> None:
    """Resolve ``..`` in the source and sink URIs (in place), then refuse a sink at a filesystem's or bucket's root
    and a sink that is, holds or lies inside the source (or, for SQL, replaces the source table).

    :raises ConfigurationError: naming the locations and what to do instead.
    """
    if not source.is_sql:
        source.uri = locations.normalize_location(source.uri, "source")
    if sink.is_sql:
        locations.check_tables_apart(
            source.table, (source.conn_id, source.uri), sink.table, (sink.conn_id, sink.uri), sink.mode
        )
        return
    sink.uri = locations.normalize_location(sink.uri, "sink")
    locations.check_sink_not_root(sink.uri)
    if not source.is_sql:
        locations.check_apart(source.uri, sink.uri)


def schema_hash(columns: list[dict[str, str]] | None) -> str | None:
    """``sha256:<hex>`` of a schema's columns (names lower-cased, in order), to compare runs' schemas at a glance."""
    if not columns:
        return None
    canonical = json.dumps([[c["name"].lower(), c["type"]] for c in columns])
    return "sha256:" + hashlib.sha256(canonical.encode()).hexdigest()


def _policy(job: ScoringJob) -> bad_rows.BadRowPolicy:
    return bad_rows.BadRowPolicy.parse(job.on_bad_rows, job.max_bad_rows, job.max_bad_fraction)


def build_manifest(
    job: ScoringJob, files: list[InputFile], reports: list[ShardReport], started: datetime, runtime: str
) -> dict[str, Any]:
    """Describe the finished job: model, input listing, schemas, per-shard and total counts, timings."""
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
        "output": {"uri": job.sink.uri, "format": job.sink.format, "header": job.sink.header,
                   "compression": job.sink.compression},
        "input_schema": first.input_schema if first else job.input_schema,
        "schema_hash": schema_hash(first.input_schema if first else job.input_schema),
        "output_columns": first.output_columns if first else None,
        "schema_check": job.schema_check,
        "replicas": job.replicas,
        "batch_size": job.batch_size,
        "shards": [r.to_dict() for r in reports],
        "totals": {"rows_in": rows_in, "rows_out": rows_out, "rows_bad": rows_bad},
        "bad_rows": bad_rows.manifest_section(_policy(job), reports, job.sink.uri),
        "started_at": started.isoformat(),
        "finished_at": finished.isoformat(),
        "duration_s": round(duration, 3),
        "rows_per_s": round(rows_in / duration, 1) if duration > 0 else None,
    }


@dataclass
class JobStart:
    """What :func:`begin_job` found: the shards to run, the shards an earlier attempt completed, when the run began.

    It is JSON-able, so a deferred task (the Kubernetes runtime) can hand it to the commit after resuming.
    """

    todo: list[int]
    resumed: list[int]
    started: str
    clock: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"todo": self.todo, "resumed": self.resumed, "started": self.started}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> JobStart:
        return cls(todo=list(data["todo"]), resumed=list(data["resumed"]), started=data["started"])


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
    """Check the sink, preflight the input, take the run's lease and find the shards still to score."""
    if if_exists not in IF_EXISTS:
        raise ConfigurationError(f"if_exists must be one of {IF_EXISTS}, got {if_exists!r}.")
    options = storage_options or {}
    if job.sink.is_sql:  # staging tables, then one commit transaction: runtime/sql_commit.py
        from airflow_batch_scoring.runtime import sql_commit

        return sql_commit.begin_job(
            job, files, storage_options=options, log=log, if_exists=if_exists, runtime=runtime,
            resume_shards=resume_shards,
        )
    sink_options = options.get("sink")
    started = datetime.now(timezone.utc)
    clock = time.perf_counter()
    pending = commit.pending_publish(job, sink_options)
    if pending is not None:  # an earlier attempt stopped while publishing: finish that publish, score nothing
        commit.check_sink(job, sink_options, if_exists, pending)
        resume.take_lease(job, sink_options)
        log(
            f"Finishing the publish that attempt {pending.get('attempt')!r} of this run started into {job.sink.uri} "
            "(it stopped part-way); nothing is scored again"
        )
        return JobStart(todo=[], resumed=list(range(job.replicas)), started=started.isoformat(), clock=clock)
    commit.check_sink(job, sink_options, if_exists)
    if job.source.is_sql:  # a table has no listing to fingerprint: a retry scores every shard again
        from airflow_batch_scoring.io import sql_source

        sample_rows = sql_source.preflight(job, options.get("source"))
        log(f"Preflight: read {sample_rows:,} sample rows; {sql_source.plan_text(job)}: OK")
    else:
        sample_rows = preflight(job, files, options.get("source"))
        log(f"Preflight: read {sample_rows:,} sample rows from {min(len(files), 20)} of {len(files)} input file(s): OK")
    resumption = resume.begin_attempt(job, files, sink_options, resume=resume_shards and not job.source.is_sql)
    todo = resume.shards_left(job.replicas, resumption.completed, resumption.reason, log)
    what = job.source.uri or job.source.table or "the source query"
    log(f"Scoring {what} with {job.model.resolved_uri or job.model.uri} on {len(todo)} {runtime} replica(s)")
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
    still holds the run's lease (see :mod:`airflow_batch_scoring.runtime.resume`).

    :param launcher: runs the replicas (:class:`~airflow_batch_scoring.driver.launcher.Launcher`): a
        :class:`LocalLauncher` (default), or the Kubernetes launcher.
    :param resume_shards: reuse shards an earlier attempt of the same ``job_id`` completed, when the model, the input
        listing and the options are unchanged.
    :param keep_on_failure: on failure, keep the completed shards in the staging folder for a retry to resume
        (the operator sets it while Airflow retries remain); otherwise the staging folder is removed.
    """
    options = storage_options or {}
    launcher = launcher or LocalLauncher(log)
    runtime = launcher.runtime
    launcher.finish_siblings = keep_on_failure  # a retry will come: running replicas may finish their shards first
    # The replicas load the model during the preflight (a no-op if started already, or for a launcher that cannot).
    launcher.prestart(job.model, job.replicas, probabilities=job.predict_probabilities, output_schema=job.output_schema)
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


def job_summary(
    job: ScoringJob, manifest: Mapping[str, Any], start: JobStart, *, output_uri: str, manifest_uri: str, parts: int
) -> dict[str, Any]:
    """The task's XCom summary of a published job: where the output is, counts, throughput and the model."""
    if start.clock is not None:
        duration = time.perf_counter() - start.clock
    else:
        duration = (datetime.now(timezone.utc) - datetime.fromisoformat(start.started)).total_seconds()
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

    On failure the staging folder is removed, unless ``keep_on_failure`` (a retry will resume).
    """
    options = storage_options or {}
    if job.sink.is_sql:
        from airflow_batch_scoring.runtime import sql_commit

        return sql_commit.finish_job(
            job, files, start, storage_options=options, log=log, runtime=runtime, launch=launch,
            keep_on_failure=keep_on_failure,
        )
    sink_options = options.get("sink")
    started = datetime.fromisoformat(start.started)
    pending = commit.pending_publish(job, sink_options)
    if pending is not None:  # begin_job found it: roll the earlier attempt's publish forward (never discard it)
        resume.check_lease(job, sink_options)
        commit.check_sink(job, sink_options, if_exists, pending)
        manifest, parts = commit.finish_publish(job, pending, sink_options)
        return _published(job, manifest, start, parts, log)
    try:
        if launch is not None:
            launch()
        reports = commit.read_reports(job, sink_options)
        rows_in = sum(r.rows_in for r in reports)
        bad_rows.check_thresholds(_policy(job), rows_in, reports)  # quarantine: too many bad rows fail the run
        if rows_in == 0 and not sum(r.rows_bad for r in reports):
            raise InputError(
                f"the input {job.source.uri} holds no data rows (only blank lines or a header); nothing was "
                "published. Check the input, and header=True/False."
            )
        if not job.source.is_sql:
            resume.check_inputs_unchanged(job, files, options.get("source"))
        manifest = build_manifest(job, files, reports, started, runtime=runtime)
        if job.source.is_sql:
            from airflow_batch_scoring.io import sql_source

            manifest["input"] = sql_source.describe_source(job.source, options.get("source"), job.shards)
        manifest["resumed_shards"] = list(start.resumed)
        manifest, parts = commit.publish(job, reports, manifest, sink_options, if_exists)
    except resume.SupersededError:
        raise  # the newer attempt owns the staging folder
    except commit.PublishError:
        raise  # the staging folder holds the publish plan: a retry of the run finishes the publish
    except BaseException as err:
        if not keep_on_failure or not is_retryable(err):  # no retry will come for an error only the user can fix
            commit.discard(job, sink_options)
        raise
    return _published(job, manifest, start, parts, log)


def _published(
    job: ScoringJob, manifest: Mapping[str, Any], start: JobStart, parts: list[str], log: Callable[[str], None]
) -> dict[str, Any]:
    """The summary of a published job (and its log line)."""
    summary = job_summary(
        job, manifest, start, output_uri=job.sink.uri, manifest_uri=f"{job.sink.uri.rstrip('/')}/{commit.MANIFEST}",
        parts=len(parts),
    )
    summary.update(rows_bad=manifest["totals"]["rows_bad"], errors_uri=manifest["bad_rows"]["errors_uri"])
    log(
        f"Scored {summary['rows_in']:,} rows into {summary['output_uri']} in {summary['duration_s']:.1f}s "
        f"({summary['rows_per_s'] or 0:,.0f} rows/s)"
    )
    return summary
