"""Incremental scoring, the driver's side: score only what is new since the last run of the same key that
published, and move the watermark exactly when a run publishes.

One run of ``incremental=True``:

1. :func:`restrict` (in ``prepare_job``, after the source's listing, before its plan): find the state document of
   the key (:mod:`airflow_batch_scoring.io.watermarks`), settle an earlier run's ``pending`` (promoted when its sink
   says it published, else dropped), and let the source keep what is new since the committed watermark
   (:meth:`~airflow_batch_scoring.sources.base.Source.restrict_to_new`). The job carries the result
   (:attr:`~airflow_batch_scoring.job.ScoringJob.incremental`).
2. Nothing new: :func:`nothing_new_summary`; no replica starts, nothing is published, and the task succeeds.
3. :func:`before_publish` records ``pending`` (this job, the new watermark), then the sink publishes, then
   :func:`after_publish` promotes it (also when a retry finds the run published already). A run that fails before
   publishing leaves ``committed`` where it was: the next run scores what it missed.

Shared with the runtime: never imports Airflow.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from airflow_batch_scoring.errors import ConfigurationError
from airflow_batch_scoring.io import locations
from airflow_batch_scoring.io.files import InputFile
from airflow_batch_scoring.io.watermarks import WatermarkStore, state_name
from airflow_batch_scoring.job import ScoringJob
from airflow_batch_scoring.options import ScoringOptions
from airflow_batch_scoring.sinks import sink_class
from airflow_batch_scoring.sinks.incremental import store_of
from airflow_batch_scoring.sources.base import Source
from airflow_batch_scoring.specs import DataSpec, spec_from_dict, spec_to_dict


def _fsspec(secrets: Mapping[str, Any] | None) -> Mapping[str, Any] | None:
    """The fsspec options in a spec's secret material (an Iceberg spec's are under ``storage``)."""
    if isinstance(secrets, Mapping) and isinstance(secrets.get("storage"), Mapping):
        return secrets["storage"]
    return secrets


def _store(section: Mapping[str, Any], secrets: Mapping[str, Mapping[str, Any]] | None) -> WatermarkStore:
    role = section.get("state_on")  # the credentials of the sink's or the source's store, or none (local files)
    options = (secrets or {}).get(role) if role else None
    folder, name = section["state_uri"].rsplit("/", 1)
    return WatermarkStore(folder, name.removesuffix(".json"), _fsspec(options))


def describe_watermark(watermark: Mapping[str, Any] | None) -> str:
    """A watermark for the log: ``version 4``, ``snapshot 123``, ``12 file(s) scored``, or ``the start``."""
    if not watermark:
        return "the start (no run of this key has published yet)"
    if "files" in watermark or "files_scored" in watermark:
        return f"{len(watermark['files']) if 'files' in watermark else watermark['files_scored']} file(s) scored"
    if "version" in watermark:
        return f"version {watermark['version']}"
    return f"snapshot {watermark.get('snapshot_id')}"


def compact(watermark: Mapping[str, Any] | None) -> Any:
    """A watermark for XCom: a file set becomes its size."""
    if watermark and "files" in watermark:
        return {"files_scored": len(watermark["files"])}
    return dict(watermark) if watermark else None


def _check_state_apart(folder: str, source: DataSpec, sink: DataSpec) -> None:
    """Refuse a state folder that is or lies inside the source's or the sink's location: its documents would
    be read as input, or published among the output.

    :raises ConfigurationError: naming the state folder, the location and what to do instead.
    """
    for role, spec in (("source", source), ("sink", sink)):
        if not spec.uri:
            continue  # a SQL table
        for state in locations.locations_of(folder, "sink"):
            for place in locations.locations_of(spec.uri, role):
                if place.contains(state):
                    harm = "read as input" if role == "source" else "published among the output"
                    raise ConfigurationError(
                        f"incremental_state {folder!r} lies in the {role} {spec.uri!r} (compared as {state} and "
                        f"{place}): the watermark documents would be {harm}. Keep the state in a folder of its own, "
                        "e.g. a sibling 'state/' folder."
                    )


def restrict(
    options: ScoringOptions,
    reading: Source,
    source: DataSpec,
    sink: DataSpec,
    secrets: Mapping[str, Mapping[str, Any]] | None,
    job_id: str,
    log: Callable[[str], None],
) -> tuple[dict[str, Any], list[InputFile]]:
    """Settle the key's state and keep only the source's new data; return the job's ``incremental`` section and
    the files to score.

    :raises ConfigurationError: for a sink without a default state folder when ``incremental_state`` is not set.
    """
    key = str(options.incremental_key)
    writing = sink_class(sink)
    identity, default = writing.watermark_place(sink)
    folder = options.incremental_state or default
    if folder is None:
        raise ConfigurationError(
            f"incremental scoring into {sink.uri or 'a SQL table'} needs incremental_state: a folder (URI) that "
            "stays the same across runs, where the watermark of what was scored is kept (e.g. "
            "'s3://bucket/state/scoring/'). A Delta or Iceberg sink keeps it in the table's _batch_scoring/ folder."
        )
    if options.incremental_state:
        _check_state_apart(folder, source, sink)
    section: dict[str, Any] = {
        "key": key,
        "state_uri": f"{folder.rstrip('/')}/{state_name(key, identity)}.json",
        "state_on": next((role for role, spec in (("sink", sink), ("source", source))
                          if "://" in spec.uri and store_of(folder) == store_of(spec.uri)), None),
    }
    store = _store(section, secrets)
    sink_secrets = (secrets or {}).get("sink")

    def published(pending: Mapping[str, Any]) -> bool:
        spec = spec_from_dict(pending["sink"])
        return sink_class(spec).published(spec, sink_secrets, str(pending["job_id"]))

    resolved = store.resolve(job_id, published, log)
    since = resolved.retry_of.get("since") if resolved.retry_of is not None else resolved.since
    new = reading.restrict_to_new(since)
    # The job (which every replica reads) carries the watermarks compacted; the full ones wait in the state folder.
    section.update(since=compact(since), watermark=compact(new.watermark), nothing_new=not new.files, **new.counts)
    if new.files:
        store.write_planned(job_id, {"since": since, "watermark": new.watermark})
    if new.files:
        log(f"Incremental ({key}): scoring {len(new.files)} new file(s) of {reading.what} since "
            f"{describe_watermark(since)}")
    else:
        log(f"Incremental: nothing new in {reading.what} since {describe_watermark(since)}; nothing scored or "
            "published")
    return section, list(new.files)


def is_nothing_new(job: ScoringJob) -> bool:
    """Whether an incremental job found nothing new (it scores and publishes nothing)."""
    section = getattr(job, "incremental", None)  # (a test's stand-in job may have none)
    return bool(section and section.get("nothing_new"))


def summary_section(job: ScoringJob) -> dict[str, Any]:
    """The summary's ``incremental`` entry (the job's watermarks are compacted already: no file lists)."""
    section = job.incremental or {}
    return {k: section[k] for k in ("key", "since", "watermark", "new_files", "new_versions", "new_snapshots")
            if k in section}


def manifest_section(job: ScoringJob) -> dict[str, Any]:
    """The manifest's ``input.incremental``: the key, the watermarks and what was new (a file set as its size: the
    manifest's ``input.files`` lists the files this run scored)."""
    return summary_section(job)


def nothing_new_summary(job: ScoringJob) -> dict[str, Any]:
    """The task's summary when nothing is new (:func:`restrict` logged it): 0 rows, nothing published, success."""
    return {
        "output_uri": job.sink.uri, "manifest_uri": None, "parts": 0, "rows_in": 0, "rows_out": 0,
        "duration_s": 0.0, "rows_per_s": None, "model_uri": job.model.resolved_uri or job.model.uri,
        "model_version": job.model.version, "model_digest": job.model.digest, "replicas": 0, "resumed_shards": [],
        "new_files": 0, "incremental": summary_section(job),
    }


def before_publish(job: ScoringJob, secrets: Mapping[str, Mapping[str, Any]] | None) -> None:
    """Record the pending watermark of this run (before its sink publishes)."""
    if not job.incremental:
        return
    section = job.incremental
    store = _store(section, secrets)
    planned = store.read_planned(job.job_id)
    store.write_pending(section["key"], job.sink.uri, {
        "job_id": job.job_id, "since": planned.get("since"), "watermark": planned.get("watermark"),
        "sink": spec_to_dict(job.sink),
    })


def after_publish(job: ScoringJob, secrets: Mapping[str, Mapping[str, Any]] | None,
                  log: Callable[[str], None]) -> None:
    """Promote this run's pending watermark (its sink published); nothing when promoted already."""
    if not job.incremental:
        return
    store = _store(job.incremental, secrets)
    promoted = store.promote_if(job.job_id)
    store.remove_planned(job.job_id)
    if promoted is not None:
        log(f"Incremental ({job.incremental['key']}): the watermark is now "
            f"{describe_watermark(promoted.get('watermark'))}")
