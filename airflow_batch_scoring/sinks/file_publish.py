"""Publishing a finished job: staged parts move into the sink folder, then the manifest, then ``_SUCCESS``.

Readers of the sink wait for ``_SUCCESS``; it is removed first and written last, so a reader that honours it never
sees a mix of two runs' parts. A job that fails before publishing publishes nothing and its staging folder is removed
(or kept for a retry to resume).

Publishing removes only what an earlier run of this provider published in the sink: the files its ``_manifest.json``
lists (``output.files`` and ``bad_rows.files``, or the shards' parts of a manifest written before those existed), that
manifest and ``_SUCCESS``. A sink holding output files no such manifest lists (another tool's ``part-*`` files, a
foreign ``_SUCCESS``) is refused before anything is scored.

Publishing rolls forward: before the sink changes, the whole publish (the previous files to remove, the moves, the new
manifest) is written as ``_publish.json`` into the run's staging folder. Every step is idempotent, so when a publish
stops part-way (a store outage, a killed worker), the next attempt of the same run (an Airflow retry, or
``batch-scoring score --job-id`` with the same name) finds the plan and finishes it, scoring nothing again.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from airflow_batch_scoring.errors import ConfigurationError, ReplicaError, StorageError
from airflow_batch_scoring.io.bad_rows.policy import ERRORS_FOLDER
from airflow_batch_scoring.io.files import filesystem, is_local
from airflow_batch_scoring.io.store_ops import StepsFailed, list_files, move_files, read_files, remove_files
from airflow_batch_scoring.job import ScoringJob
from airflow_batch_scoring.runtime.shards import ShardReport, published_name, report_name
from airflow_batch_scoring.sinks.base import KeepsStaging
from airflow_batch_scoring.sinks.file_staging import check_lease, read_json, write_json

SUCCESS = "_SUCCESS"
MANIFEST = "_manifest.json"
STAGING = "_temporary"
#: the publish plan (journal), in the run's staging folder while a publish is under way.
PUBLISH_PLAN = "_publish.json"


class PublishError(StorageError, KeepsStaging):
    """Publishing stopped part-way; the plan is kept in the staging folder and a retry of the same run finishes it."""


def staging_uri(sink_uri: str, job_id: str) -> str:
    """The staging folder of one run (shared by its attempts), inside the sink folder (so publishing is a rename)."""
    return f"{sink_uri.rstrip('/')}/{STAGING}/{job_id}"


def read_reports(job: ScoringJob, storage_options: Mapping[str, Any] | None) -> list[ShardReport]:
    """Read every shard's report from the staging folder (one listing, the reports read concurrently).

    :raises ReplicaError: naming the shards whose report is missing (they did not finish).
    """
    fs, staging = filesystem(job.staging_uri, storage_options)
    staged = list_files(fs, staging)
    paths = {shard: f"{staging}/{report_name(shard)}" for shard in range(job.replicas)}
    documents = read_files(fs, [path for path in paths.values() if path in staged])
    missing = [shard for shard, path in paths.items() if path not in documents]
    if missing:
        raise ReplicaError(
            f"Shard(s) {missing} did not finish (no report in {job.staging_uri}); nothing was published."
        )
    return [ShardReport(**json.loads(documents[paths[shard]])) for shard in range(job.replicas)]


def manifest_files(manifest: Any) -> list[str] | None:
    """The files (relative to the sink) a manifest of this provider says its run published, or ``None`` when the
    document is not such a manifest."""
    if not isinstance(manifest, dict) or "job_id" not in manifest or not isinstance(manifest.get("output"), dict):
        return None
    output, errors = manifest["output"], manifest.get("bad_rows") or {}
    if isinstance(output.get("files"), list):
        listed = [*output["files"], *(errors.get("files") or [])]
        return [str(f["name"]) for f in listed if isinstance(f, dict) and f.get("name")]
    # a manifest written before output.files: its shards' staged names, as they were published
    shards = [s for s in manifest.get("shards") or [] if isinstance(s, dict)]
    return [published_name(str(p)) for s in shards for p in [*(s.get("parts") or []), *(s.get("error_parts") or [])]]


def _sink_files(fs: Any, sink: str) -> list[str]:
    """The output-like files in the sink (``part-*``, ``_SUCCESS``, ``_manifest.json``, ``_errors/*``), relative."""
    if not fs.exists(sink):
        return []
    found = []
    for entry in fs.ls(sink, detail=True):
        name = entry["name"].rstrip("/").rsplit("/", 1)[-1]
        if entry.get("type") == "directory":
            if name == ERRORS_FOLDER:
                root = entry["name"].rstrip("/")
                found += [f"{ERRORS_FOLDER}/{p[len(root) + 1:]}" for p, info in fs.find(root, detail=True).items()
                          if info.get("type") != "directory"]
        elif name.startswith("part-") or name in (SUCCESS, MANIFEST):
            found.append(name)
    return sorted(found)


def previous_output(fs: Any, sink: str, sink_uri: str, pending: Mapping[str, Any] | None = None) -> list[str]:
    """The files of the output an earlier run of this provider published in ``sink`` (``_SUCCESS`` first, then the
    manifest, then the parts), as its manifest (or this run's own pending publish plan) lists them.

    :raises ConfigurationError: when the sink holds output files that no manifest of this provider lists: publishing
        would overwrite or mix with files this provider did not write.
    """
    present = _sink_files(fs, sink)
    manifest = read_json(fs, f"{sink}/{MANIFEST}", unreadable=False) if MANIFEST in present else None
    listed = manifest_files(manifest) if manifest else None
    owned: set[str] = set()
    if pending is not None:  # this run's own publish, stopped part-way: what it removes and what it moved in
        owned = {SUCCESS, MANIFEST, *pending["previous"], *(final for _, final in pending["moves"]), *(listed or [])}
    elif manifest is not None and listed is None:
        raise ConfigurationError(
            f"The sink {sink_uri} holds a {MANIFEST} that this provider did not write; nothing was read or written. "
            "Write the output to a folder of its own (an empty one, or one this provider published to)."
        )
    elif listed is not None:
        owned = {SUCCESS, MANIFEST, *listed}
    foreign = [name for name in present if name not in owned]
    if foreign:
        unfinished = sorted(p.rstrip("/").split("/")[-2] for p in fs.glob(f"{sink}/{STAGING}/*/{PUBLISH_PLAN}"))
        hint = (
            f" They may be the output of run(s) {', '.join(unfinished)}, whose publish stopped part-way: retry that "
            "run (the same job id) to finish it." if unfinished else ""
        )
        raise ConfigurationError(
            f"The sink {sink_uri} holds files that no run of this provider published ({', '.join(foreign[:5])}"
            f"{' ...' if len(foreign) > 5 else ''}; no {MANIFEST} of this provider lists them), and publishing only "
            "ever replaces its own output; nothing was read or written. Move those files away, or write the output "
            f"to a folder of its own.{hint}"
        )
    return sorted((n for n in present if n in owned), key=lambda n: (n != SUCCESS, n != MANIFEST, n))


def pending_publish(job: ScoringJob, storage_options: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """The plan of a publish an earlier attempt of this run started and did not finish, or ``None``."""
    fs, staging = filesystem(job.staging_uri, storage_options)
    fs.invalidate_cache()
    plan = read_json(fs, f"{staging}/{PUBLISH_PLAN}", unreadable=False)
    if not isinstance(plan, dict) or not {"previous", "moves", "manifest"} <= set(plan):
        return None  # none (a plan cut short while being written was written before the sink changed)
    return plan


def check_sink(
    job: ScoringJob, storage_options: Mapping[str, Any] | None, if_exists: str,
    pending: Mapping[str, Any] | None = None,
) -> list[str]:
    """Refuse early when the sink holds files this provider did not publish, or a previous output and
    ``if_exists="fail"``; return the previous output's files.

    :raises ConfigurationError: saying what the sink holds and what to do.
    """
    fs, sink = filesystem(job.sink.uri, storage_options)
    fs.invalidate_cache()
    previous = previous_output(fs, sink, job.sink.uri, pending)
    if if_exists == "fail" and previous and pending is None:
        raise ConfigurationError(
            f"The sink {job.sink.uri} already holds an output and if_exists='fail'; remove it, write elsewhere, "
            "or set if_exists='replace'."
        )
    return previous


def plan_publish(
    job: ScoringJob, reports: list[ShardReport], manifest: Mapping[str, Any], previous: list[str], fs: Any,
    staging: str, sink: str,
) -> dict[str, Any]:
    """The publish plan: the previous files to remove, the staged files to move (staged name -> published name), and
    the manifest, completed with the published files' names, URIs, sizes and row counts."""
    sizes = list_files(fs, staging)
    moves: list[list[str]] = []
    files: list[dict[str, Any]] = []
    errors: list[dict[str, Any]] = []
    shards = []
    for report in reports:
        entry = report.to_dict()
        for key, rows, into in (("parts", report.rows_out, files), ("error_parts", report.rows_bad, errors)):
            names = list(entry.get(key) or [])
            for staged in names:
                final = published_name(staged)
                moves.append([staged, final])
                into.append({
                    "name": final,
                    "uri": fs.unstrip_protocol(f"{sink}/{final}"),
                    "size": sizes.get(f"{staging}/{staged}", 0),
                    "rows": rows if len(names) == 1 else None,
                })
            entry[key] = [published_name(n) for n in names]
        shards.append(entry)
    document = dict(manifest)
    document["output"] = {**dict(manifest.get("output") or {}), "files": files}
    document["bad_rows"] = {**dict(manifest.get("bad_rows") or {}), "files": errors}
    document["shards"] = shards
    return {"attempt": job.attempt, "previous": previous, "moves": moves, "manifest": document, "removed": False}


def publish(
    job: ScoringJob,
    reports: list[ShardReport],
    manifest: Mapping[str, Any],
    storage_options: Mapping[str, Any] | None,
    if_exists: str = "replace",
) -> tuple[dict[str, Any], list[str]]:
    """Plan the publish (written to the staging folder first), then carry it out; return the published manifest and
    the parts' URIs.

    :raises SupersededError: when a newer attempt of the run holds the lease (checked before anything moves).
    :raises PublishError: when the publish stops part-way; a retry of the same run finishes it.
    """
    previous = check_sink(job, storage_options, if_exists)
    check_lease(job, storage_options)
    fs, sink = filesystem(job.sink.uri, storage_options)
    _, staging = filesystem(job.staging_uri, storage_options)
    plan = plan_publish(job, reports, manifest, previous, fs, staging, sink)
    before = read_json(fs, f"{sink}/{MANIFEST}", unreadable=False) if MANIFEST in previous else None
    plan["previous_job"] = before.get("job_id") if isinstance(before, dict) else None
    write_json(fs, f"{staging}/{PUBLISH_PLAN}", plan)
    return finish_publish(job, plan, storage_options)


def finish_publish(
    job: ScoringJob, plan: Mapping[str, Any], storage_options: Mapping[str, Any] | None
) -> tuple[dict[str, Any], list[str]]:
    """Carry out a publish plan from wherever an earlier attempt left it: remove the previous output's files (once),
    move each staged file still staged, write the manifest and ``_SUCCESS``, remove the staging folder.

    :raises PublishError: when a step fails: the message says how far it got and how to finish it.
    """
    fs, sink = filesystem(job.sink.uri, storage_options)
    _, staging = filesystem(job.staging_uri, storage_options)
    plan = dict(plan)
    current = read_json(fs, f"{sink}/{MANIFEST}", unreadable=False)
    if isinstance(current, dict) and current.get("job_id") not in (plan.get("previous_job"), job.job_id):
        discard(job, storage_options)  # its plan is obsolete: finishing it would overwrite the other run's output
        raise ConfigurationError(
            f"Run {current.get('job_id')!r} published to {job.sink.uri} after this run's publish stopped part-way, "
            "so this run's publish cannot be finished and was dropped; run the job again to publish its output."
        )
    moves = [tuple(m) for m in plan["moves"]]
    total = (0 if plan.get("removed") else len(plan["previous"])) + len(moves) + 2
    done = 0
    present = list_files(fs, sink)  # the sink and, inside it, the staging folder: one listing for every step
    try:
        if not plan.get("removed"):
            names = list(plan["previous"])
            # _SUCCESS first and alone: readers stop trusting the folder before anything else in it changes
            for group in ([n for n in names if n == SUCCESS], [n for n in names if n != SUCCESS]):
                remove_files(fs, [f"{sink}/{name}" for name in group if f"{sink}/{name}" in present])
                done += len(group)
            _remove_empty(fs, f"{sink}/{ERRORS_FOLDER}")
            plan["removed"] = True
            write_json(fs, f"{staging}/{PUBLISH_PLAN}", plan)
        if is_local(fs):
            fs.makedirs(sink, exist_ok=True)
        staged_moves = []
        for staged, final in moves:
            source, target = f"{staging}/{staged}", f"{sink}/{final}"
            if source in present:
                staged_moves.append((source, target))
            elif target in present:
                done += 1  # moved by the attempt that stopped
            else:
                raise PublishError(
                    f"the staged file {job.staging_uri}/{staged} is gone and {final} was not published; the output "
                    f"in {job.sink.uri} cannot be completed. Run the job again under a new job id."
                )
        done += move_files(fs, staged_moves)
        write_json(fs, f"{sink}/{MANIFEST}", plan["manifest"])
        done += 1
        with fs.open(f"{sink}/{SUCCESS}", "w") as f:
            f.write("")
        done += 1
    except Exception as failure:
        err = failure.error if isinstance(failure, StepsFailed) else failure
        if isinstance(err, PublishError):
            raise err from None
        done += failure.done if isinstance(failure, StepsFailed) else 0  # the steps beside the failed one
        raise PublishError(
            f"Publishing to {job.sink.uri} stopped after {done} of {total} step(s) ({type(err).__name__}: {err}). "
            f"The output there is incomplete and has no {SUCCESS}; the publish plan is kept in "
            f"{job.staging_uri}/{PUBLISH_PLAN}. Retry the task (or run again with --job-id {job.job_id}) to finish "
            "it: nothing is scored again."
        ) from None
    discard(job, storage_options)
    return plan["manifest"], [f["uri"] for f in plan["manifest"]["output"]["files"]]


def _remove_empty(fs: Any, folder: str) -> None:
    """Remove ``folder`` when it holds no file any more (local folders; stores drop empty prefixes themselves)."""
    try:
        if fs.exists(folder) and not fs.find(folder):
            fs.rm(folder, recursive=True)
    except OSError:
        pass


def discard(job: ScoringJob, storage_options: Mapping[str, Any] | None) -> None:
    """Remove the job's staging folder (and the staging root when it is left empty)."""
    fs, staging = filesystem(job.staging_uri, storage_options)
    if fs.exists(f"{staging}/{PUBLISH_PLAN}"):
        fs.rm(f"{staging}/{PUBLISH_PLAN}")  # first: a staging folder left half removed holds no publish to finish
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
