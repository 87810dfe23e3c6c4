"""What ``batch-scoring`` adds around the engine for shell users and CI: storage options from a file (never argv),
one field of a manifest, and a readable summary of a finished job."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from airflow_batch_scoring.errors import ConfigurationError

ROLES = ("source", "sink")


def read_storage_options(path: str | None) -> dict[str, dict[str, Any]]:
    """Read fsspec storage options from a JSON file: ``{"source": {...}, "sink": {...}}``, or one mapping for both.

    Credentials stay out of the command line (and so out of ``ps`` and shell history); the file is read once and
    its values go to the replicas on their standard input, like an Airflow connection's.

    :raises ConfigurationError: when the file cannot be read or is not a JSON object.
    """
    if not path:
        return {"source": {}, "sink": {}}
    try:
        with open(path) as f:
            value = json.load(f)
    except (OSError, ValueError) as err:
        raise ConfigurationError(
            f"Cannot read the storage options file {path!r} ({type(err).__name__}); it must hold a JSON object such "
            'as {"sink": {"key": "...", "secret": "...", "endpoint_url": "http://minio:9000"}}.'
        ) from None
    if not isinstance(value, Mapping):
        raise ConfigurationError(f"The storage options file {path!r} must hold a JSON object, not a list or a value.")
    if set(value) & set(ROLES):
        unknown = sorted(set(value) - set(ROLES))
        if unknown:
            raise ConfigurationError(f"Unknown key(s) {unknown} in {path!r}: use 'source' and 'sink'.")
        return {role: dict(value.get(role) or {}) for role in ROLES}
    return {role: dict(value) for role in ROLES}


def pick(manifest: Mapping[str, Any], field: str) -> Any:
    """One value of a manifest by a dotted path (``totals.rows_out``, ``shards.0.rows_in``, ``model.version``).

    :raises ConfigurationError: naming the keys there are, when the path does not exist.
    """
    value: Any = manifest
    walked: list[str] = []
    for part in field.split("."):
        if isinstance(value, Mapping) and part in value:
            value = value[part]
        elif isinstance(value, list) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        else:
            where = ".".join(walked) or "the manifest"
            keys = sorted(value) if isinstance(value, Mapping) else f"indexes 0..{len(value) - 1}" \
                if isinstance(value, list) else "no keys (a value)"
            raise ConfigurationError(f"{field!r}: {where} has no {part!r}; it has {keys}.")
        walked.append(part)
    return value


def summary(manifest: Mapping[str, Any]) -> str:
    """A few lines that say what a finished job did: model, input, output, rows, shards and time."""
    model = manifest.get("model") or {}
    source = manifest.get("input") or {}
    sink = manifest.get("output") or {}
    totals = manifest.get("totals") or {}
    files = source.get("files") or []
    size = sum(int(f.get("size") or 0) for f in files)
    lines = [
        f"job       {manifest.get('job_id')} ({manifest.get('runtime')} runtime, "
        f"airflow-batch-scoring {manifest.get('package_version')})",
        f"model     {model.get('resolved_uri') or model.get('uri')} ({model.get('flavor')}, {model.get('digest')})",
        f"input     {source.get('uri')} ({source.get('format')}, {len(files)} file(s), {size:,} bytes)",
        f"output    {sink.get('uri')} ({sink.get('format')})",
        f"rows      {totals.get('rows_in', 0):,} in, {totals.get('rows_out', 0):,} out"
        + (f", {totals['rows_bad']:,} bad" if totals.get("rows_bad") else ""),
        f"replicas  {manifest.get('replicas')} ({len(manifest.get('shards') or [])} shard report(s)), "
        f"batch size {manifest.get('batch_size')}",
        f"time      {manifest.get('started_at')} .. {manifest.get('finished_at')}: {manifest.get('duration_s')} s, "
        f"{manifest.get('rows_per_s')} rows/s",
    ]
    return "\n".join(lines)
