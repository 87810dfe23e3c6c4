"""Incremental scoring, the sources' side: what is new since a watermark, and the watermark after it.

A watermark is JSON-able and defined by its source:

- files: ``{"files": [<InputFile.to_dict()>, ...]}``, every file already scored. New files are the listed files not
  in it; a scored file whose size or version changed is refused (incremental scoring scores new files only).
- Delta: ``{"version": N}``, the last table version scored. New rows are the data files added with
  ``dataChange=true`` by the commits after it (read from ``_delta_log/<version>.json``); files that a compaction
  (OPTIMIZE) rewrote carry ``dataChange=false`` and are skipped; a commit that removes data (delete, update,
  overwrite, merge) is refused: incremental scoring reads appends only.
- Iceberg: ``{"snapshot_id": N}``, the last snapshot scored. New rows are the data files that the ``append``
  snapshots after it (in the current snapshot's ancestry) added; ``replace`` snapshots (compaction) are skipped,
  ``overwrite`` and ``delete`` ones refused.

Without a watermark (the first run) everything the pinned listing holds is new.

Shared with the runtime: never imports Airflow.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

from airflow_batch_scoring.errors import ConfigurationError, InputError
from airflow_batch_scoring.io.files import InputFile, filesystem


@dataclass
class NewData:
    """What a source found new since a watermark.

    :param files: the input files to score (a subset of the listing, or files a later compaction took out of it).
    :param watermark: the watermark once these are scored.
    :param counts: for the manifest and the summary: ``new_files`` and, for tables, ``new_versions`` or
        ``new_snapshots``.
    """

    files: list[InputFile]
    watermark: dict[str, Any]
    counts: dict[str, Any] = field(default_factory=dict)


def not_incremental(what: str) -> ConfigurationError:
    """The error of a source that cannot be read incrementally."""
    return ConfigurationError(
        f"incremental scoring reads files, Delta tables or Iceberg tables, not {what}; score it whole "
        "(incremental=False), or select the new rows in the query yourself (e.g. WHERE updated_at > the run's "
        "data_interval_start)."
    )


def new_files(listed: Sequence[InputFile], since: Mapping[str, Any] | None, what: str) -> NewData:
    """The listed files not scored yet.

    :raises InputError: when a file already scored changed (size or version), naming it.
    """
    scored = {str(f["uri"]): InputFile(**f) for f in (since or {}).get("files") or []}
    changed = [f.uri for f in listed if f.uri in scored and scored[f.uri] != f]
    if changed:
        raise InputError(
            f"the input {what} holds file(s) already scored that changed since: {', '.join(changed[:5])}"
            f"{' ...' if len(changed) > 5 else ''}. Incremental scoring scores new files only: land changed data "
            "under a new name (and leave scored files as they are)."
        )
    new = [f for f in listed if f.uri not in scored]
    everything = {**scored, **{f.uri: f for f in new}}
    watermark = {"files": [everything[uri].to_dict() for uri in sorted(everything)]}
    return NewData(new, watermark, {"new_files": len(new)})


def _commit_uri(root: str, version: int) -> str:
    return f"{root.rstrip('/')}/_delta_log/{version:020d}.json"


def _data_uri(root: str, path: str) -> str:
    return path if "://" in path else f"{root.rstrip('/')}/{unquote(path)}"


def read_delta_commit(root: str, version: int, storage_options: Mapping[str, Any] | None) -> list[dict[str, Any]]:
    """The actions of one Delta commit (``_delta_log/<version>.json``, one JSON object per line).

    :raises InputError: when the commit's file is gone (the log was cleaned up).
    """
    fs, path = filesystem(_commit_uri(root, version), storage_options)
    try:
        with fs.open(path, "r") as f:
            return [json.loads(line) for line in f if line.strip()]
    except FileNotFoundError:
        raise InputError(
            f"the commit of version {version} of the Delta table {root} is gone from its _delta_log (the log was "
            "cleaned up after its retention period), so what changed since the last incremental run cannot be "
            "told. Keep the log longer (delta.logRetentionDuration) than the time between runs; to start over, "
            "remove the incremental state (the next run then scores the whole table)."
        ) from None


def delta_new(
    root: str,
    since: Mapping[str, Any] | None,
    now: int,
    live: Sequence[InputFile],
    live_paths: set[str],
    partitioned: bool,
    storage_options: Mapping[str, Any] | None,
) -> NewData:
    """The data files the commits ``(since, now]`` appended to the Delta table at ``root``.

    :param live: the files of version ``now`` the source keeps (after its partition filter).
    :param live_paths: every data file of version ``now`` (before the filter).
    :raises InputError: for a commit that removes data, a table older than the watermark, or a cleaned-up log.
    """
    watermark = {"version": now}
    if not since or since.get("version") is None:
        return NewData(list(live), watermark, {"new_files": len(live), "new_versions": "all"})
    last = int(since["version"])
    if last > now:
        raise InputError(
            f"the Delta table {root} is at version {now}, older than version {last} that the last incremental run "
            "scored: was the table re-created or restored? Remove the incremental state to score it anew."
        )
    added: dict[str, InputFile] = {}
    for version in range(last + 1, now + 1):
        actions = read_delta_commit(root, version, storage_options)
        operation = next((a["commitInfo"].get("operation") for a in actions if "commitInfo" in a), "unknown")
        for action in actions:
            removed = action.get("remove")
            if removed is not None and removed.get("dataChange", True):
                raise InputError(
                    f"version {version} of the Delta table {root} ({operation}) removes or rewrites rows "
                    f"({removed.get('path')}); incremental scoring reads appended rows only. Score the table whole "
                    "(incremental=False), or append corrections as new rows."
                )
            add = action.get("add")
            if add is not None and add.get("dataChange", True):
                uri = _data_uri(root, add["path"])
                added[uri] = InputFile(uri, int(add.get("size") or 0), version=f"delta:{now}")
    kept = {f.uri for f in live}
    files = [f for f in live if f.uri in added]
    for uri, entry in added.items():
        if uri in live_paths:
            continue  # in version `now`: kept or left out by the source's filter
        if partitioned:
            raise InputError(
                f"the data file {uri}, appended to the Delta table {root} after version {last}, was compacted away "
                f"before version {now} (OPTIMIZE), and the table is partitioned; incremental scoring needs the "
                "appended files: compact after the incremental run, not before it."
            )
        if uri not in kept:
            files.append(entry)  # compacted later; its rows are still in this file until a VACUUM
    return NewData(files, watermark, {"new_files": len(files), "new_versions": now - last})


def iceberg_new(table: Any, since: Mapping[str, Any] | None, snapshot: Any, live: Sequence[InputFile],
                name: str) -> NewData:
    """The data files the ``append`` snapshots after ``since`` (up to ``snapshot``) added to the Iceberg table.

    :raises InputError: for an ``overwrite``/``delete`` snapshot, or a watermark that is no ancestor of ``snapshot``.
    """
    watermark = {"snapshot_id": snapshot.snapshot_id}
    if not since or since.get("snapshot_id") is None:
        return NewData(list(live), watermark, {"new_files": len(live), "new_snapshots": "all"})
    last = int(since["snapshot_id"])
    chain = []
    current = snapshot
    while current is not None and current.snapshot_id != last:
        chain.append(current)
        parent = current.parent_snapshot_id
        current = table.snapshot_by_id(parent) if parent is not None else None
    if current is None:
        raise InputError(
            f"the snapshot {last} that the last incremental run scored is not an ancestor of the current snapshot "
            f"{snapshot.snapshot_id} of the Iceberg table {name} (the table was rolled back, re-created or its "
            "snapshots expired); remove the incremental state to score it anew."
        )
    added: dict[str, InputFile] = {}
    for step in reversed(chain):
        kind = getattr(step.summary, "operation", None)
        operation = str(getattr(kind, "value", kind or "append"))
        if operation == "replace":
            continue  # a compaction: the same rows in other files
        if operation != "append":
            raise InputError(
                f"snapshot {step.snapshot_id} of the Iceberg table {name} is an {operation!r}, which removes or "
                "rewrites rows; incremental scoring reads appended rows only. Score the table whole "
                "(incremental=False), or append corrections as new rows."
            )
        for manifest in step.manifests(table.io):
            if manifest.added_snapshot_id != step.snapshot_id:
                continue
            for entry in manifest.fetch_manifest_entry(table.io, discard_deleted=True):
                if entry.snapshot_id == step.snapshot_id and int(entry.status) == 1:  # ADDED
                    data = entry.data_file
                    added[data.file_path] = InputFile(data.file_path, int(data.file_size_in_bytes),
                                                      version=f"iceberg:{snapshot.snapshot_id}")
    files = [f for f in live if f.uri in added]
    present = {f.uri for f in live}
    files += [f for uri, f in added.items() if uri not in present]
    return NewData(files, watermark, {"new_files": len(files), "new_snapshots": len(chain)})
