"""A processed model staged on the sink's object store, for replicas that cannot see the worker's disk (pods).

The driver uploads the processed artifact (a file, or an MLflow model folder) once per run into
``<staging>/_model/`` and points the job's ``model.path`` at it; each replica downloads it into a local temporary
folder and checks its digest before loading it, so every pod scores exactly the artifact the worker processed and
checked. The staging folder, model included, is removed when the output is published.

Shared with the runtime: never imports Airflow.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from airflow_batch_scoring.artifacts.digest import verify_digest
from airflow_batch_scoring.errors import InputError
from airflow_batch_scoring.io.files import filesystem, normalize_uri, scheme_of

MODEL_FOLDER = "_model"
DIGEST_FILE = "_digest"


def is_remote(path: str) -> bool:
    """Whether ``path`` names an object on a store (``s3://``, ``gs://``, ``abfs://`` ...) rather than a local path."""
    return "://" in path and scheme_of(normalize_uri(path)) not in ("file", "local")


def staged_model_uri(staging_uri: str, local_path: str) -> str:
    """Where :func:`upload_model` puts the model at ``local_path`` for a job staged at ``staging_uri``."""
    return f"{staging_uri.rstrip('/')}/{MODEL_FOLDER}/{os.path.basename(local_path.rstrip('/'))}"


def upload_model(
    local_path: str, staging_uri: str, storage_options: Mapping[str, Any] | None, digest: str | None
) -> str:
    """Upload the processed model into the job's staging folder (skipped when the same digest is there already).

    :return: the model's URI on the store.
    :raises InputError: when the staging folder cannot be written.
    """
    return put_model(local_path, f"{staging_uri.rstrip('/')}/{MODEL_FOLDER}", storage_options, digest)


def put_model(local_path: str, folder_uri: str, storage_options: Mapping[str, Any] | None, digest: str | None) -> str:
    """Upload the model at ``local_path`` (a file or a folder) as ``<folder_uri>/<its name>``, with its digest in
    ``<folder_uri>/_digest`` (skipped when that digest is there already; ``folder_uri`` is replaced otherwise).

    :return: the model's URI on the store.
    :raises InputError: when the folder cannot be written.
    """
    folder_uri = folder_uri.rstrip("/")
    target_uri = f"{folder_uri}/{os.path.basename(local_path.rstrip('/'))}"
    fs, folder = filesystem(folder_uri, storage_options)
    _, target = filesystem(target_uri, storage_options)
    marker = f"{folder}/{DIGEST_FILE}"
    try:
        if digest and fs.exists(marker) and fs.cat_file(marker).decode() == digest:
            return target_uri
        if fs.exists(folder):
            fs.rm(folder, recursive=True)
        if os.path.isfile(local_path):
            fs.put_file(local_path, target)
        else:
            for root, _, names in os.walk(local_path):
                for name in sorted(names):
                    full = os.path.join(root, name)
                    relative = os.path.relpath(full, local_path).replace(os.sep, "/")
                    fs.put_file(full, f"{target}/{relative}")
        with fs.open(marker, "wb") as f:
            f.write((digest or "").encode())
    except PermissionError as err:
        raise InputError(
            f"cannot upload the model to {target_uri!r} ({err}); check that the connection may write there."
        ) from None
    fs.invalidate_cache()
    return target_uri


def fetch_model(uri: str, storage_options: Mapping[str, Any] | None, into: str, digest: str | None) -> str:
    """Download a staged model into the local folder ``into`` and check its digest.

    :return: the local path of the model (a file or a folder, as it was uploaded).
    :raises InputError: when the staged model is missing.
    :raises ModelError: when its digest differs from the one the worker pinned.
    """
    fs, path = filesystem(uri, storage_options)
    local = os.path.join(into, os.path.basename(path.rstrip("/")))
    if fs.isfile(path):
        fs.get_file(path, local)
    else:
        found = [p for p in fs.find(path) if p.rstrip("/") != path]
        if not found:
            raise InputError(
                f"the staged model {uri!r} does not exist (the run's staging folder was removed?); retry the task."
            )
        for remote in found:
            relative = remote[len(path) :].lstrip("/")
            destination = os.path.join(local, *relative.split("/"))
            os.makedirs(os.path.dirname(destination), exist_ok=True)
            fs.get_file(remote, destination)
    if digest:
        verify_digest(local, digest, "The staged model")
    return local
