"""Job documents too large for a Kubernetes ConfigMap, staged on the sink's store beside the model.

A pod reads its ScoringJob from the Job's ConfigMap, which Kubernetes caps at 1 MiB. The job lists every input piece,
so a run over some thousands of input files (about 125 bytes each in the job, as many again in the input listing the
commit reads) outgrows it. Then the driver writes the document gzipped into ``<staging>/_job/<name>.gz`` (the
staging folder the model is uploaded to, removed when the output is published) and the ConfigMap holds a pointer:
its URI and the SHA-256 of the bytes written. A replica (or the task resuming a deferred run) reads the pointer,
fetches the document with the sink's credentials and checks the digest, so every pod scores exactly the plan the
driver made.

Shared with the runtime: never imports Airflow.
"""

from __future__ import annotations

import gzip
import hashlib
import json
from collections.abc import Mapping
from typing import Any

from airflow_batch_scoring.errors import InputError
from airflow_batch_scoring.io.files import filesystem

#: the pointer's key; a pointer document starts with it (a ScoringJob or a listing never does).
STAGED_KEY = "staged_document"
FOLDER = "_job"


def stage_document(staging_uri: str, name: str, text: str, storage_options: Mapping[str, Any] | None) -> str:
    """Write ``text`` gzipped to ``<staging_uri>/_job/<name>.gz``; return the pointer document (JSON) to use in its
    place.

    :raises InputError: when the staging folder cannot be written.
    """
    data = gzip.compress(text.encode(), mtime=0)
    uri = f"{staging_uri.rstrip('/')}/{FOLDER}/{name}.gz"
    fs, path = filesystem(uri, storage_options)
    try:
        fs.pipe_file(path, data)
    except PermissionError as err:
        raise InputError(f"cannot stage the job document at {uri!r} ({err}); check that the sink's connection may "
                         "write there.") from None
    return json.dumps({STAGED_KEY: uri, "sha256": hashlib.sha256(data).hexdigest(), "bytes": len(text.encode())})


def read_document(text: str, storage_options: Mapping[str, Any] | None) -> str:
    """The document itself: ``text``, or the document a pointer written by :func:`stage_document` names.

    :raises InputError: when the staged document is gone or is not the one the driver wrote.
    """
    if not text.lstrip().startswith(f'{{"{STAGED_KEY}"'):
        return text
    pointer = json.loads(text)
    uri = pointer[STAGED_KEY]
    fs, path = filesystem(uri, storage_options)
    try:
        data = fs.cat_file(path)
    except FileNotFoundError:
        raise InputError(
            f"the staged job document {uri!r} does not exist (the run's staging folder was removed?); retry the task."
        ) from None
    if hashlib.sha256(data).hexdigest() != pointer.get("sha256"):
        raise InputError(
            f"the staged job document {uri!r} is not the one the driver wrote (its SHA-256 differs): another run "
            "wrote into this run's staging folder. Retry the task."
        )
    return gzip.decompress(data).decode()
