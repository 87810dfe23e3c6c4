"""The state of incremental scoring: one small JSON document per key (a task into a sink), with a two-phase record.

The document, at ``<state folder>/<name>.json`` (:func:`state_name`)::

    {"key": "dag.task.-1", "sink": "<where the key's output goes>",
     "committed": {"watermark": ..., "job_id": "...", "at": "<when it was promoted>"},
     "pending": {"watermark": ..., "since": ..., "job_id": "...", "sink": {<the run's sink spec>}}}

A run writes ``pending`` (its job id and the watermark it will have scored) before it publishes, and promotes it to
``committed`` once the sink published; a later run that finds a ``pending`` asks the sink whether that job published
(then promotes it) or not (then drops it). A failed run leaves ``committed`` as it was, so the next run scores what
the failed one missed. Every write replaces the whole document (an object store's put; a local file is written
under a temporary name and renamed), so a reader sees the old document or the new one, never half of one.

Shared with the runtime: never imports Airflow.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from airflow_batch_scoring.errors import InputError
from airflow_batch_scoring.io.files import filesystem, is_local

#: the state folder of a table sink when ``incremental_state`` is not given (in the table's bookkeeping folder).
TABLE_STATE_FOLDER = "_batch_scoring/incremental"
#: the subfolder of the state folder where a run keeps the watermarks it plans to move from and to.
PLANNED = "_planned"


def state_name(key: str, sink_identity: str) -> str:
    """The state document's name: the key made safe for a file name, and a short digest of the sink's identity (so
    one task writing two sinks keeps two watermarks).

    >>> state_name("daily.score.-1", "file:///data/out")
    'daily.score.-1-bbeca02573cb'
    """
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", key).strip("._")[:150] or "key"
    digest = hashlib.sha256(sink_identity.encode()).hexdigest()[:12]
    return f"{safe}-{digest}"


@dataclass(frozen=True)
class Resolved:
    """What a run found in the state once an earlier run's ``pending`` was settled.

    :param since: the committed watermark (``None``: no run of this key has published yet).
    :param retry_of: the ``pending`` of an earlier attempt of this same job (a retry), else ``None``.
    """

    since: Any
    retry_of: Mapping[str, Any] | None


class WatermarkStore:
    """The state document of one key.

    :param folder: the state folder's URI (``file://``, ``s3://``, ...).
    :param name: the document's name (:func:`state_name`), without ``.json``.
    :param storage_options: the fsspec options of the folder's store.
    """

    def __init__(self, folder: str, name: str, storage_options: Mapping[str, Any] | None):
        self.uri = f"{folder.rstrip('/')}/{name}.json"
        self.storage_options = storage_options

    def _fs(self) -> tuple[Any, str]:
        return filesystem(self.uri, self.storage_options)

    def read(self) -> dict[str, Any]:
        """The document (``{}`` when there is none yet).

        :raises InputError: when the document is there but is not this provider's state (naming it).
        """
        fs, path = self._fs()
        try:
            fs.invalidate_cache()
            with fs.open(path, "r") as f:
                document = json.load(f)
        except FileNotFoundError:
            return {}
        except ValueError:
            document = None
        if not isinstance(document, dict):
            raise InputError(
                f"the incremental state {self.uri} is not a state document of this provider; move it away (the next "
                "run then scores everything the source holds) or point incremental_state elsewhere."
            )
        return document

    def write(self, document: Mapping[str, Any]) -> None:
        """Replace the document as a whole (local: a temporary file renamed over it)."""
        fs, path = self._fs()
        text = json.dumps(dict(document), indent=2, sort_keys=True, default=str)
        if is_local(fs):
            folder = os.path.dirname(path)
            os.makedirs(folder, exist_ok=True)
            temporary = os.path.join(folder, f".{os.path.basename(path)}.{uuid.uuid4().hex[:8]}.tmp")
            with open(temporary, "w") as f:
                f.write(text)
            os.replace(temporary, path)
            return
        with fs.open(path, "w") as f:  # one PUT: the object is replaced whole or not at all
            f.write(text)

    def resolve(
        self,
        job_id: str,
        published: Callable[[Mapping[str, Any]], bool],
        log: Callable[[str], None],
    ) -> Resolved:
        """Settle an earlier run's ``pending``: promote it when its sink published (``published(pending)``), else
        drop it; return the committed watermark this run starts from.

        A ``pending`` of this same ``job_id`` (an earlier attempt of this run) is kept when unpublished: the retry
        scores from its ``since`` again and rewrites it.
        """
        document = self.read()
        pending = document.get("pending")
        retry_of = None
        if isinstance(pending, Mapping):
            if published(pending):
                document = promote(document, pending)
                log(f"Incremental: run {pending.get('job_id')!r} published; its watermark is now the committed one")
                self.write(document)
                if pending.get("job_id") == job_id:
                    retry_of = pending
            elif pending.get("job_id") == job_id:
                retry_of = pending
            else:
                log(
                    f"WARNING: Incremental: run {pending.get('job_id')!r} recorded what it would score but never "
                    "published (it failed, or it is still running: run one at a time, e.g. max_active_runs=1); its "
                    "record is dropped and what it would have scored is scored again"
                )
                document = {k: v for k, v in document.items() if k != "pending"}
                self.write(document)
        committed = document.get("committed")
        return Resolved(since=committed.get("watermark") if isinstance(committed, Mapping) else None,
                        retry_of=retry_of)

    def planned_uri(self, job_id: str) -> str:
        """Where a run keeps the watermarks it plans to move from and to (kept out of the job, which every replica
        reads: a file set can be large)."""
        folder, name = self.uri.rsplit("/", 1)
        return f"{folder}/{PLANNED}/{name.removesuffix('.json')}.{job_id}.json"

    def write_planned(self, job_id: str, planned: Mapping[str, Any]) -> None:
        """Record this run's planned watermarks; remove other runs' (one run of a key at a time)."""
        fs, path = filesystem(self.planned_uri(job_id), self.storage_options)
        folder, name = path.rsplit("/", 1)
        prefix = name.rsplit(".", 2)[0] + "."
        if is_local(fs):
            os.makedirs(folder, exist_ok=True)
        try:
            for other in fs.ls(folder, detail=False):
                base = other.rstrip("/").rsplit("/", 1)[-1]
                if base.startswith(prefix) and base != name:
                    fs.rm(other)
        except FileNotFoundError:
            pass
        with fs.open(path, "w") as f:
            f.write(json.dumps(dict(planned), sort_keys=True, default=str))

    def read_planned(self, job_id: str) -> dict[str, Any]:
        """This run's planned watermarks.

        :raises InputError: when they are gone (removed while the run scored).
        """
        fs, path = filesystem(self.planned_uri(job_id), self.storage_options)
        try:
            with fs.open(path, "r") as f:
                return dict(json.load(f))
        except FileNotFoundError:
            raise InputError(
                f"the incremental plan {self.planned_uri(job_id)} of this run is gone (another run of the same key "
                "started meanwhile?); nothing was published. Run one at a time (max_active_runs=1), then retry.",
                retryable=True,
            ) from None

    def remove_planned(self, job_id: str) -> None:
        """Remove this run's planned watermarks (best effort)."""
        fs, path = filesystem(self.planned_uri(job_id), self.storage_options)
        try:
            fs.rm(path)
        except (FileNotFoundError, OSError):
            pass

    def write_pending(self, key: str, sink: str, pending: Mapping[str, Any]) -> None:
        """Record what the run about to publish will have scored (before it publishes)."""
        document = self.read()
        document.update(key=key, sink=sink, pending=dict(pending))
        self.write(document)

    def promote_if(self, job_id: str) -> Mapping[str, Any] | None:
        """After ``job_id`` published: make its ``pending`` the committed watermark; return it (``None`` when the
        state holds no pending of that job, e.g. promoted already)."""
        document = self.read()
        pending = document.get("pending")
        if not isinstance(pending, Mapping) or pending.get("job_id") != job_id:
            return None
        self.write(promote(document, pending))
        return pending


def promote(document: Mapping[str, Any], pending: Mapping[str, Any]) -> dict[str, Any]:
    """The document with ``pending`` as its committed watermark (and no pending)."""
    result = {k: v for k, v in document.items() if k != "pending"}
    result["committed"] = {
        "watermark": pending.get("watermark"),
        "job_id": pending.get("job_id"),
        "at": datetime.now(timezone.utc).isoformat(),
    }
    return result
