"""MLflow models (flavor ``mlflow``, artifact type ``python/mlflow``): registry versions and aliases, run artifacts,
and model folders.

- ``models:/name/version`` is checked against the registry; ``models:/name@alias`` is resolved to the version the
  alias points to *now*, and that fixed version is downloaded: every replica of the run scores it, even if the alias
  moves meanwhile. The registry name and version are recorded as ``source_model_name`` / ``source_model_version``.
- ``runs:/<run>/<path>`` is downloaded; a local MLflow model folder (with an ``MLmodel`` file) is used in place, or
  copied into the target.
- The schema comes from the model's signature, or from ``input_schema`` / ``output_schema`` in the MLmodel's
  ``metadata`` or in the registry version's tags (JSON ``[{"name": ..., "type": ...}]``); those win over the signature.
- A model folder's schemas and metadata are read from its ``MLmodel`` file without importing MLflow, and a replica
  loads the flavours :mod:`.mlmodel` knows (scikit-learn, XGBoost and LightGBM) natively, as MLflow's loaders do;
  any other model through MLflow: the ``sklearn`` flavour as the raw estimator, every other one as a pyfunc. Class
  probabilities: :mod:`.mlflow_probabilities`.

Never imports Airflow; MLflow is imported only to resolve and download ``models:/`` and ``runs:/`` references, and to
load the models :mod:`.mlmodel` leaves to it.
"""

from __future__ import annotations

import os
import re
from typing import Any

from airflow_batch_scoring.errors import ModelError
from airflow_batch_scoring.flavors.base import Flavor, Predictor
from airflow_batch_scoring.flavors.mlmodel import MLmodelFile, native_model
from airflow_batch_scoring.flavors.processing import (
    ArtifactRequest,
    first_schema,
    json_safe,
    local_path,
    redact_uri,
    schema_json,
    schemas_from_metadata,
    stage,
)
from airflow_batch_scoring.flavors.sklearn import EstimatorPredictor, feature_schema
from airflow_batch_scoring.job import ModelSpec
from airflow_batch_scoring.schema import ModelSchema

VERSION_URI = re.compile(r"^models:/(?P<name>[^/@]+)/(?P<version>\d+)/?$")
ALIAS_URI = re.compile(r"^models:/(?P<name>[^/@]+)@(?P<alias>[^/]+)/?$")
RUN_URI = re.compile(r"^runs:/(?P<run_id>[^/]+)/(?P<path>.+)$")


def is_mlflow_uri(uri: str) -> bool:
    return uri.startswith(("models:/", "runs:/"))


def is_mlflow_folder(path: str) -> bool:
    return os.path.isdir(path) and os.path.isfile(os.path.join(path, "MLmodel"))


def _client(tracking_uri: str | None, registry_uri: str | None) -> Any:
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=tracking_uri, registry_uri=registry_uri or tracking_uri)


def resolve_registry_uri(
    uri: str, tracking_uri: str | None = None, registry_uri: str | None = None
) -> tuple[str, str, str, dict[str, Any]]:
    """Return ``(name, version, fixed uri, source metadata)`` for a ``models:/`` reference.

    :raises ModelError: when the model, version or alias is not in the registry.
    """
    from mlflow.exceptions import MlflowException

    client = _client(tracking_uri, registry_uri)
    metadata: dict[str, Any] = {}
    where = "the tracking/registry URI (MLFLOW_TRACKING_URI, or the MLflow connection)"
    if match := ALIAS_URI.match(uri):
        name, alias = match["name"], match["alias"]
        try:
            model_version = client.get_model_version_by_alias(name, alias)
        except MlflowException as err:
            raise ModelError(
                f"Cannot resolve {uri!r}: the registry has no alias {alias!r} on model {name!r} ({err.message}). "
                f"Check the name and the alias, and {where}."
            ) from err
        metadata["alias"] = alias
    elif match := VERSION_URI.match(uri):
        name = match["name"]
        try:
            model_version = client.get_model_version(name, match["version"])
        except MlflowException as err:
            raise ModelError(
                f"Cannot find {uri!r} in the registry ({err.message}). Check the name and the version, and {where}."
            ) from err
    else:
        raise ModelError(
            f"Cannot read the model reference {uri!r}: use models:/<name>/<version> or models:/<name>@<alias>."
        )
    version = str(model_version.version)
    metadata.update(
        {
            "registry_uri": redact_uri(registry_uri or tracking_uri or _default_registry_uri()),
            "run_id": model_version.run_id,
            "source": model_version.source,
            "tags": dict(model_version.tags or {}),
            "aliases": list(getattr(model_version, "aliases", []) or []),
            "creation_timestamp": model_version.creation_timestamp,
        }
    )
    return name, version, f"models:/{name}/{version}", metadata


def _default_registry_uri() -> str:
    import mlflow

    return mlflow.get_registry_uri()


def download(uri: str, target: str, tracking_uri: str | None, registry_uri: str | None = None) -> str:
    """Download an MLflow artifact URI into ``target`` and return the local path.

    :raises ModelError: when the download fails.
    """
    import mlflow.artifacts
    from mlflow.exceptions import MlflowException

    os.makedirs(target, exist_ok=True)
    try:
        match = re.fullmatch(r"models:/([^/@]+)/(\d+)(/.*)?", uri)
        if match and (tracking_uri or registry_uri):
            # MLflow's models:/ artifact repository reads the registry from the process-wide settings, not from the
            # registry_uri argument: ask an explicit client where the version's files are, and download those.
            client = mlflow.MlflowClient(tracking_uri=tracking_uri, registry_uri=registry_uri or tracking_uri)
            location = client.get_model_version_download_uri(match.group(1), match.group(2))
            uri = location.rstrip("/") + (match.group(3) or "")
        # Explicit URIs, never mlflow.set_*_uri: those change the process (and its children's) environment.
        return mlflow.artifacts.download_artifacts(
            artifact_uri=uri, dst_path=target, tracking_uri=tracking_uri, registry_uri=registry_uri or tracking_uri
        )
    except (MlflowException, OSError) as err:
        raise ModelError(f"Cannot download the model {uri!r}: {err}") from err


def read_schemas(path: str, tags: dict[str, Any] | None = None) -> tuple[ModelSchema | None, ModelSchema | None]:
    """The schemas an MLflow model folder tells: registry tags, then MLmodel metadata, then the signature (read
    without importing MLflow: :class:`~.mlmodel.MLmodelFile`)."""
    model_file = MLmodelFile.read(path)
    tag_in, tag_out = schemas_from_metadata(tags, "the registry version's tags")
    meta_in, meta_out = schemas_from_metadata(model_file.metadata, f"{path}/MLmodel metadata")
    sig_in, sig_out = model_file.input_schema(), model_file.output_schema()
    return first_schema(tag_in, meta_in, sig_in), first_schema(tag_out, meta_out, sig_out)


class MlflowFlavor(Flavor):
    """An MLflow model: a registry version or alias, a run artifact, or a model folder (with an ``MLmodel`` file)."""

    name = "mlflow"
    artifact_type = "python/mlflow"
    aliases = ("mlflow", "pyfunc", "python/pyfunc")
    description = "an MLflow model folder (with an MLmodel file)"

    def claims_uri(self, uri: str) -> bool:
        return is_mlflow_uri(uri)

    def detect(self, path: str) -> bool:
        return is_mlflow_folder(path)

    def process(self, request: ArtifactRequest) -> ModelSpec:
        return process_mlflow(request)

    def load(self, spec: ModelSpec, *, probabilities: bool, output_schema: ModelSchema | None) -> Predictor:
        return load_mlflow(spec, probabilities=probabilities, output_schema=output_schema)


def process_mlflow(request: ArtifactRequest) -> ModelSpec:
    """Process an MLflow model reference or folder (see the module docstring).

    :raises ModelError: for a reference that does not resolve or a folder without an MLmodel file.
    """
    uri = request.uri
    name = version = resolved = None
    source_metadata: dict[str, Any] = {}
    if uri.startswith("models:/"):
        name, version, resolved, source_metadata = resolve_registry_uri(
            uri, request.tracking_uri, request.registry_uri
        )
        path = download(resolved, request.target_dir, request.tracking_uri, request.registry_uri)
    elif match := RUN_URI.match(uri):
        resolved = uri
        source_metadata = {"run_id": match["run_id"], "artifact_path": match["path"]}
        path = download(uri, request.target_dir, request.tracking_uri, request.registry_uri)
    else:
        local = local_path(uri)
        if local is None:
            raise ModelError(
                f"Cannot read the MLflow model {uri!r}: use models:/name/version, models:/name@alias, "
                "runs:/<run_id>/<path>, or a local model folder."
            )
        path = local
        if not os.path.exists(path):
            raise ModelError(
                f"The model path {path!r} does not exist. Give an existing MLflow model folder, or a registry URI "
                "such as models:/name@alias."
            )
        path = stage(path, request.target_dir, request.copy)
    if not is_mlflow_folder(path):
        raise ModelError(
            f"{path!r} (from {uri!r}) is not an MLflow model folder: it has no MLmodel file. Point model at the "
            "folder mlflow.<flavor>.log_model/save_model wrote, or choose another artifact_type."
        )
    inputs, outputs = read_schemas(path, source_metadata.get("tags"))
    return ModelSpec(
        uri=uri,
        path=path,
        flavor=MlflowFlavor.name,
        resolved_uri=resolved,
        name=name,
        version=version,
        input_schema=schema_json(inputs),
        output_schema=schema_json(outputs),
        artifact_type=MlflowFlavor.artifact_type,
        source_model_name=name,
        source_model_version=version,
        source_metadata=json_safe(source_metadata) or None,
    )


def load_mlflow(spec: ModelSpec, *, probabilities: bool, output_schema: ModelSchema | None) -> Predictor:
    """Load the MLflow model folder at ``spec.path`` (see the module docstring): natively when its flavour allows
    (:func:`~.mlmodel.native_model`), else through MLflow.

    :raises ModelError: when it is not a loadable MLflow model, or has no class probabilities but they are asked.
    """
    model_file = MLmodelFile.read(spec.path)
    input_schema = model_file.input_schema()
    if output_schema is None:
        declared = model_file.output_schema()
        output_schema = declared if declared is not None and len(declared) > 1 else None
    native = native_model(model_file)
    if native is not None and (not probabilities or hasattr(native.model, "predict_proba")):
        if input_schema is None and "sklearn" in model_file.flavors:
            input_schema = feature_schema(native.model)
        return EstimatorPredictor(
            native.model,
            input_schema=input_schema,
            output_schema=output_schema,
            probabilities=probabilities,
            wants_frame=native.wants_frame,
        )
    return _load_through_mlflow(
        spec, probabilities=probabilities, input_schema=input_schema, output_schema=output_schema
    )


def _load_through_mlflow(
    spec: ModelSpec, *, probabilities: bool, input_schema: ModelSchema | None, output_schema: ModelSchema | None
) -> Predictor:
    """Load the model with MLflow: a flavour, or a case, this provider does not load itself."""
    from mlflow.models import Model

    try:
        meta = Model.load(os.path.join(spec.path, "MLmodel"))
    except Exception as err:
        raise ModelError(f"{spec.path!r} is not an MLflow model folder (no readable MLmodel file): {err}") from err
    try:
        if "sklearn" in meta.flavors:
            import mlflow.sklearn

            model: Any = mlflow.sklearn.load_model(spec.path)
            wants_frame = getattr(model, "feature_names_in_", None) is not None
        else:
            import mlflow.pyfunc

            model = mlflow.pyfunc.load_model(spec.path)
            wants_frame = True
    except Exception as err:
        raise ModelError(f"Cannot load the MLflow model at {spec.path!r} ({type(err).__name__}: {err}).") from err
    input_schema = input_schema or (feature_schema(model) if "sklearn" in meta.flavors else None)
    if probabilities:  # the flavour's native classifier, or an output that already is per-class probabilities
        from airflow_batch_scoring.flavors.mlflow_probabilities import probability_predictor  # (pandas)

        return probability_predictor(
            model, meta, input_schema=input_schema, output_schema=output_schema, wants_frame=wants_frame
        )
    return EstimatorPredictor(model, input_schema=input_schema, output_schema=output_schema, wants_frame=wants_frame)
