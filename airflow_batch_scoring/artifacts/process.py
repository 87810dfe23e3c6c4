"""Resolve a model reference and make it a local artifact: MLflow models and scikit-learn joblib/pickle files.

- ``models:/name/version`` and ``models:/name@alias`` are resolved against the MLflow registry to a fixed version
  (an alias is read once, so every replica scores the same version even if the alias moves meanwhile), then
  downloaded; ``runs:/<run>/<path>`` is downloaded; a local MLflow model folder is used in place.
- ``*.joblib``, ``*.pkl``, ``*.pickle`` files are scikit-learn estimators, used in place.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import unquote, urlparse

from airflow_batch_scoring.artifacts.digest import sha256_of
from airflow_batch_scoring.errors import ModelError
from airflow_batch_scoring.job import ModelSpec
from airflow_batch_scoring.schema import ModelSchema

SKLEARN_SUFFIXES = (".joblib", ".pkl", ".pickle")
_VERSION = re.compile(r"^models:/(?P<name>[^/@]+)/(?P<version>\d+)/?$")
_ALIAS = re.compile(r"^models:/(?P<name>[^/@]+)@(?P<alias>[^/]+)/?$")


def _local_path(uri: str) -> str | None:
    if uri.startswith("file://"):
        return unquote(urlparse(uri).path)
    if "://" not in uri and not uri.startswith(("models:", "runs:")):
        return os.path.abspath(os.path.expanduser(uri))
    return None


def _mlflow_schemas(path: str) -> tuple[ModelSchema | None, ModelSchema | None]:
    from mlflow.models import Model

    signature = Model.load(os.path.join(path, "MLmodel")).signature
    if signature is None:
        return None, None
    return ModelSchema.from_mlflow(signature.inputs), ModelSchema.from_mlflow(signature.outputs)


def _resolve_registry(uri: str, tracking_uri: str | None) -> tuple[str, str, str]:
    """Return ``(name, version, fixed uri)`` for a ``models:/`` reference."""
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
    if match := _ALIAS.match(uri):
        name, alias = match["name"], match["alias"]
        try:
            version = client.get_model_version_by_alias(name, alias).version
        except MlflowException as err:
            raise ModelError(
                f"Cannot resolve {uri!r}: the registry has no alias {alias!r} on model {name!r} ({err.message}). "
                "Check the name and the alias, and the tracking URI (MLFLOW_TRACKING_URI)."
            ) from err
    elif match := _VERSION.match(uri):
        name, version = match["name"], match["version"]
        try:
            client.get_model_version(name, version)
        except MlflowException as err:
            raise ModelError(
                f"Cannot find {uri!r} in the registry ({err.message}). Check the name and the version, and the "
                "tracking URI (MLFLOW_TRACKING_URI)."
            ) from err
    else:
        raise ModelError(
            f"Cannot read the model reference {uri!r}: use models:/<name>/<version> or models:/<name>@<alias>."
        )
    return name, str(version), f"models:/{name}/{version}"


@contextmanager
def _mlflow_uris(tracking_uri: str | None) -> Iterator[None]:
    """Point MLflow's tracking and registry URIs at ``tracking_uri`` for the block (``models:/`` downloads read
    the process-wide registry URI), and restore them afterwards."""
    import mlflow

    if not tracking_uri:
        yield
        return
    previous_tracking, previous_registry = mlflow.get_tracking_uri(), mlflow.get_registry_uri()
    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_registry_uri(tracking_uri)
    try:
        yield
    finally:
        mlflow.set_tracking_uri(previous_tracking)
        mlflow.set_registry_uri(previous_registry)


def _download(uri: str, target: str, tracking_uri: str | None) -> str:
    import mlflow.artifacts
    from mlflow.exceptions import MlflowException

    os.makedirs(target, exist_ok=True)
    try:
        with _mlflow_uris(tracking_uri):
            return mlflow.artifacts.download_artifacts(artifact_uri=uri, dst_path=target)
    except (MlflowException, OSError) as err:
        raise ModelError(f"Cannot download the model {uri!r}: {err}") from err


def process_model(uri: str, target_dir: str, tracking_uri: str | None = None) -> ModelSpec:
    """Resolve ``uri`` to a local artifact under ``target_dir`` (when it must be downloaded) and describe it.

    :param tracking_uri: the MLflow tracking/registry URI; ``None`` uses ``MLFLOW_TRACKING_URI``.
    :raises ModelError: for a reference that does not resolve, a path that does not exist, or an unknown artifact.
    """
    uri = str(uri).strip()
    if not uri:
        raise ModelError("No model was given: set model to an MLflow URI (models:/name@alias) or a model file path.")
    name = version = resolved = None
    path = _local_path(uri)
    if path is not None:
        if not os.path.exists(path):
            raise ModelError(
                f"The model path {path!r} does not exist. Give an existing MLflow model folder, a .joblib/.pkl "
                "file, or a registry URI such as models:/name@alias."
            )
    elif uri.startswith("models:/"):
        name, version, resolved = _resolve_registry(uri, tracking_uri)
        path = _download(resolved, target_dir, tracking_uri)
    elif uri.startswith("runs:/"):
        resolved = uri
        path = _download(uri, target_dir, tracking_uri)
    else:
        raise ModelError(
            f"Cannot load a model from {uri!r} yet: use a local path, file://, runs:/ or models:/ (object-store "
            "model locations come with artifact processing)."
        )
    if os.path.isfile(path) and path.lower().endswith(SKLEARN_SUFFIXES):
        return ModelSpec(uri=uri, path=path, flavor="sklearn", resolved_uri=resolved, digest=sha256_of(path))
    if os.path.isdir(path) and os.path.exists(os.path.join(path, "MLmodel")):
        inputs, outputs = _mlflow_schemas(path)
        return ModelSpec(
            uri=uri,
            path=path,
            flavor="mlflow",
            resolved_uri=resolved,
            name=name,
            version=version,
            digest=sha256_of(path),
            input_schema=inputs.to_json() if inputs else None,
            output_schema=outputs.to_json() if outputs else None,
        )
    raise ModelError(
        f"{path!r} is neither an MLflow model folder (with an MLmodel file) nor a scikit-learn file "
        f"({', '.join(SKLEARN_SUFFIXES)}); point model at one of those."
    )
