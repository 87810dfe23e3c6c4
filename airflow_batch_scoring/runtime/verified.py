"""The model a replica loads: a private copy whose bytes the replica hashed itself against the pinned digest.

The driver pins the processed artifact's digest; a replica copies the artifact (a file, or every file of an MLflow
folder) into a folder only its own user can open, hashing exactly the bytes it writes, and loads the model from that
copy. An artifact changed after the driver processed it is refused before anything of it is unpickled, and nothing
can change between the check and the load (there is no second read of the original).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import replace

from airflow_batch_scoring.artifacts.digest import verified_copy
from airflow_batch_scoring.flavors import Predictor, load_predictor
from airflow_batch_scoring.job import ModelSpec
from airflow_batch_scoring.schema import ModelSchema

_FOLDERS: list[str] = []


def verified_model(spec: ModelSpec) -> ModelSpec:
    """``spec`` pointing at a verified private copy of its artifact (``spec`` as it is when it pins no digest).

    :raises ModelError: when the artifact's digest is not the pinned one.
    """
    if not spec.digest:
        return spec
    folder = tempfile.mkdtemp(prefix="batch-scoring-verified-")  # mode 0700
    try:
        path = verified_copy(spec.path, spec.digest, folder, "The model")
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    _FOLDERS.append(folder)
    return replace(spec, path=path)


def load_verified(spec: ModelSpec, *, probabilities: bool, output_schema: ModelSchema | None) -> Predictor:
    """Load the model of ``spec`` as a replica does: every flavour from a verified private copy (a pickle, or a
    model's code, runs when it is loaded), so an artifact changed since it was processed is refused, never loaded.

    :raises ModelError: when the artifact is missing or changed, or holds no loadable model.
    """
    if os.path.exists(spec.path):  # else load_predictor says what is missing
        spec = verified_model(spec)
    return load_predictor(spec, probabilities=probabilities, output_schema=output_schema)


def discard_verified_copies() -> None:
    """Remove the copies :func:`verified_model` made (the replica calls it when it exits)."""
    while _FOLDERS:
        shutil.rmtree(_FOLDERS.pop(), ignore_errors=True)
