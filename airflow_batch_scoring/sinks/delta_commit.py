"""Delta sinks, the commit: every data file of a run enters the table in ONE Delta transaction, at most once.

Before committing, the table is asked whether the run committed already (its ``txn`` application version, which
Delta keeps in the table's state); if so nothing is committed again. The commit carries that ``txn`` action and the
run id and attempt in its commit info (``custom_metadata``), so a table's history says which run wrote each version.

- ``append``: the files are added (``create_write_transaction``, mode ``append``); a missing table is created with
  them in its first version;
- ``overwrite``: the files replace every file of the table, in one version;
- ``overwrite_partition``: the files replace the files of ``sink['partition']`` (every file written must lie in it);
- ``merge``: the staged files are merged on ``merge_keys`` (rows whose keys exist are updated, the others inserted)
  by delta-rs's ``MERGE``, one version; the staged files are removed afterwards.

An existing table's schema must take the output: a column whose type differs is refused, naming the column and both
types; an output column the table lacks is refused too, unless ``allow_new_columns`` (then the columns are added by a
schema change committed just before the data).

Shared with the runtime: never imports Airflow.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable, Mapping
from datetime import datetime, timezone
from typing import Any

import pyarrow as pa

from airflow_batch_scoring.errors import ConfigurationError, InputError
from airflow_batch_scoring.io.delta import (
    APP_ID_PREFIX,
    ATTEMPT_KEY,
    RUN_ID_KEY,
    delta_storage_options,
    delta_types,
    open_table,
    partition_text,
    table_types,
    table_uri,
)
from airflow_batch_scoring.io.files import filesystem
from airflow_batch_scoring.job import ScoringJob
from airflow_batch_scoring.runtime.shards import ShardReport
from airflow_batch_scoring.sinks.file_staging import check_lease, read_json, write_json
from airflow_batch_scoring.specs import DeltaSpec, narrow

MANIFEST = "_manifest.json"


def encode_schema(schema: pa.Schema) -> str:
    return base64.b64encode(schema.serialize().to_pybytes()).decode()


def decode_schema(text: str) -> pa.Schema:
    return pa.ipc.read_schema(pa.py_buffer(base64.b64decode(text)))


def _app_id(job: ScoringJob) -> str:
    return f"{APP_ID_PREFIX}{job.job_id}"


def committed_version(job: ScoringJob, secrets: Mapping[str, Any] | None) -> int | None:
    """The table version that committed ``job``'s run, or ``None`` when it has not committed."""
    spec = narrow(job.sink, DeltaSpec)
    table = open_table(spec.uri, secrets)
    if table is None or table.transaction_version(_app_id(job)) is None:
        return None
    for commit in table.history(limit=1000):
        if commit.get(RUN_ID_KEY) == job.job_id:
            return int(commit["version"])
    return int(table.version())  # committed, its history entry gone (log clean-up): the table's version now


def _commit_properties(job: ScoringJob, rows: int) -> Any:
    from deltalake.transaction import CommitProperties, Transaction

    return CommitProperties(
        custom_metadata={RUN_ID_KEY: job.job_id, ATTEMPT_KEY: job.attempt, "airflow_batch_scoring.rows": rows},
        app_transactions=[Transaction(_app_id(job), 1, int(time.time() * 1000))],
    )


def _staged(job: ScoringJob, secrets: Mapping[str, Any] | None) -> tuple[list[dict[str, Any]], pa.Schema | None]:
    """The data files every shard wrote (their actions), and the output's schema."""
    fs, staging = filesystem(job.staging_uri, secrets)
    actions: list[dict[str, Any]] = []
    schema = None
    for shard in range(job.replicas):
        document = read_json(fs, f"{staging}/{job.attempt}/_actions-{shard:05d}.json") or {}
        actions += document.get("actions") or []
        if schema is None and document.get("schema"):
            schema = decode_schema(document["schema"])
    return actions, schema


def _check_files(job: ScoringJob, secrets: Mapping[str, Any] | None, actions: list[dict[str, Any]]) -> None:
    """Every file to commit is there, with the size its writer saw (a commit never names a missing file)."""
    spec = narrow(job.sink, DeltaSpec)
    fs, root = filesystem(spec.uri, secrets)
    fs.invalidate_cache()
    for action in actions:
        path = f"{root}/{action['path']}"
        if not fs.exists(path) or int(fs.size(path)) != int(action["size"]):
            raise InputError(
                f"the data file {action['path']} of this run is missing or changed in {spec.uri}; nothing was "
                "committed. Retry the run.",
                retryable=True,
            )


def check_schema(spec: DeltaSpec, existing: Mapping[str, str], output: pa.Schema) -> list[str]:
    """The output columns the table lacks (to add, when allowed).

    :raises ConfigurationError: naming the columns whose types differ, or the new columns when not allowed.
    """
    wanted = delta_types(output)
    differ = [f"{name!r} (table: {existing[name]}, output: {kind})" for name, kind in wanted.items()
              if name in existing and existing[name] != kind]
    if differ:
        raise ConfigurationError(
            f"The output does not fit the Delta table {spec.uri}: column(s) {', '.join(differ)} have other types; "
            "nothing was committed. Cast the outputs (output_schema, passthrough_schema) or write to a new table."
        )
    new = [name for name in wanted if name not in existing]
    if new and not spec.allow_new_columns:
        raise ConfigurationError(
            f"The output has column(s) {[f'{n} ({wanted[n]})' for n in new]} that the Delta table {spec.uri} lacks "
            f"(its columns: {list(existing)}); nothing was committed. Set sink['allow_new_columns'] = True to add "
            "them, or leave them out of the output."
        )
    return new


def _add_actions(actions: list[dict[str, Any]]) -> list[Any]:
    from deltalake.transaction import AddAction

    now = int(time.time() * 1000)
    return [
        AddAction(a["path"], int(a["size"]), dict(a["partition_values"]), now, True,
                  json.dumps({"numRecords": int(a["rows"])}))
        for a in actions
    ]


def commit(
    job: ScoringJob,
    reports: list[ShardReport],
    manifest: Mapping[str, Any],
    secrets: Mapping[str, Any] | None,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Commit the run's data files in one transaction (or nothing, when the run committed already).

    :returns: ``{"version", "mode", "files", "rows", "created", "already_committed", "manifest", ...}``.
    :raises ConfigurationError: for a schema that does not fit, or rows outside the partition overwritten.
    """
    from deltalake import DeltaTable, Schema
    from deltalake.exceptions import DeltaError
    from deltalake.transaction import create_table_with_add_actions

    spec = narrow(job.sink, DeltaSpec)
    check_lease(job, secrets)  # a newer attempt of the run took over: it commits, not this one
    rows = sum(r.rows_out for r in reports)
    details: dict[str, Any] = {"mode": spec.mode, "rows": rows, "files": 0, "created": False,
                               "already_committed": False, "added_columns": []}
    version = committed_version(job, secrets)
    if version is not None:
        log(f"Run {job.job_id!r} was already committed to {spec.uri} (version {version}); it is not committed again")
        details.update(version=version, already_committed=True, manifest=dict(manifest))
        return details
    actions, schema = _staged(job, secrets)
    if schema is None:
        raise InputError(f"the run wrote no data file for {spec.uri}; nothing was committed.")
    _check_files(job, secrets, actions)
    location, options = table_uri(spec.uri), delta_storage_options(spec.uri, secrets)
    properties = _commit_properties(job, rows)
    partition = dict(spec.partition or ())
    if spec.mode == "overwrite_partition":
        wanted = {k: _text(v) for k, v in partition.items()}
        outside = sorted({json.dumps(a["partition_values"]) for a in actions
                          if {k: a["partition_values"].get(k) for k in wanted} != wanted})
        if outside:
            raise ConfigurationError(
                f"The run's output holds rows outside the partition {wanted} it overwrites (e.g. {outside[0]}); "
                "nothing was committed. Filter the input to that partition, or fix sink['partition']."
            )
    table = open_table(spec.uri, secrets)
    try:
        if table is None:
            partition_by = list(spec.partition_by or ())
            full = _with_partitions(schema, actions, partition_by)
            if spec.mode == "merge":
                DeltaTable.create(location, Schema.from_arrow(full), partition_by=partition_by or None,
                                  storage_options=options)
                table = open_table(spec.uri, secrets)
            else:
                create_table_with_add_actions(
                    location, Schema.from_arrow(full), _add_actions(actions), mode="error",
                    partition_by=partition_by or None, storage_options=options, commit_properties=properties,
                )
                details["created"] = True
                log(f"Created the Delta table {spec.uri} with the run's {len(actions)} data file(s)")
        else:
            full = _with_partitions(schema, actions, list(table.metadata().partition_columns))
        if table is not None:
            new = check_schema(spec, table_types(table), full)
            if new:
                from deltalake import Field

                fields = [f for f in Schema.from_arrow(full).fields if f.name in new]
                table.alter.add_columns([Field(f.name, f.type, nullable=True) for f in fields])
                details["added_columns"] = new
                log(f"Added the column(s) {new} to the Delta table {spec.uri} (allow_new_columns)")
            if spec.mode == "merge":
                details["merge"] = _merge(job, table, actions, secrets, properties)
            else:
                table.create_write_transaction(
                    _add_actions(actions), "append" if spec.mode == "append" else "overwrite", table.schema(),
                    partition_by=list(table.metadata().partition_columns) or None,
                    partition_filters=[(k, "=", _text(v)) for k, v in partition.items()] or None,
                    commit_properties=properties,
                )
    except DeltaError as err:
        raise InputError(f"the commit to the Delta table {spec.uri} failed: {str(err).splitlines()[0]}; nothing "
                         "was committed.", retryable=True) from None
    version = committed_version(job, secrets)
    details.update(version=version, files=len(actions))
    final = _write_manifest(job, secrets, manifest, version)
    details["manifest"] = final
    return details


def _text(value: Any) -> str | None:
    return partition_text(value)


def _with_partitions(schema: pa.Schema, actions: list[dict[str, Any]], partition_by: list[str]) -> pa.Schema:
    """The output's schema with its partition columns (the files hold the others; their values are strings)."""
    missing = [c for c in partition_by if c not in schema.names]
    return schema if not missing else pa.schema([*schema, *(pa.field(c, pa.string()) for c in missing)])


def _merge(job: ScoringJob, table: Any, actions: list[dict[str, Any]], secrets: Mapping[str, Any] | None,
           properties: Any) -> dict[str, Any]:
    """Merge the staged files into the table on the merge keys, then remove them."""
    import pyarrow.dataset as ds
    from pyarrow.fs import FSSpecHandler, PyFileSystem

    spec = narrow(job.sink, DeltaSpec)
    fs, root = filesystem(spec.uri, secrets)
    paths = [f"{root}/{a['path']}" for a in actions]
    source = ds.dataset(paths, format="parquet", filesystem=PyFileSystem(FSSpecHandler(fs)))
    keys = list(spec.merge_keys or ())
    predicate = " AND ".join(f"t.`{k}` = s.`{k}`" for k in keys)
    metrics = (
        table.merge(source=source.scanner().to_reader(), predicate=predicate, source_alias="s", target_alias="t",
                    commit_properties=properties)
        .when_matched_update_all()
        .when_not_matched_insert_all()
        .execute()
    )
    for path in paths:
        try:
            fs.rm(path)
        except (OSError, FileNotFoundError):
            pass
    return {"inserted": metrics.get("num_target_rows_inserted"), "updated": metrics.get("num_target_rows_updated")}


def _write_manifest(job: ScoringJob, secrets: Mapping[str, Any] | None, manifest: Mapping[str, Any],
                    version: int | None) -> dict[str, Any]:
    """The run's manifest with the committed version, in ``<table>/_batch_scoring/<job_id>/``; the attempt's
    bookkeeping (lists, actions, reports) goes."""
    fs, staging = filesystem(job.staging_uri, secrets)
    final = dict(manifest)
    output = dict(final.get("output") or {})
    output.update(version=version, committed_at=datetime.now(timezone.utc).isoformat())
    final["output"] = output
    write_json(fs, f"{staging}/{MANIFEST}", final)
    for entry in fs.ls(staging, detail=True):
        name = entry["name"].rstrip("/").rsplit("/", 1)[-1]
        if entry.get("type") == "directory" and name != "data":
            try:
                fs.rm(entry["name"], recursive=True)
            except (OSError, FileNotFoundError):
                pass
    return final


def finish_manifest(job: ScoringJob, secrets: Mapping[str, Any] | None, version: int) -> dict[str, Any]:
    """The manifest of a run that committed already (written again with its version when it is missing)."""
    fs, staging = filesystem(job.staging_uri, secrets)
    manifest = read_json(fs, f"{staging}/{MANIFEST}")
    if isinstance(manifest, dict):
        return manifest
    spec = narrow(job.sink, DeltaSpec)
    return _write_manifest(job, secrets, {
        "job_id": job.job_id, "output": {"uri": spec.uri, "format": "delta", "mode": spec.mode},
        "totals": {"rows_in": 0, "rows_out": 0, "rows_bad": 0},
        "note": "the commit's manifest was lost; the table's history holds the commit",
    }, version)


__all__ = ["commit", "committed_version", "check_schema", "encode_schema", "decode_schema", "finish_manifest"]
