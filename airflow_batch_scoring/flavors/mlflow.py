"""MLflow models (flavor ``mlflow``, artifact type ``python/mlflow``): registry versions and aliases, run artifacts,
and model folders.

- ``models:/name/version`` is checked against the registry; ``models:/name@alias`` (``/latest``, ``/<stage>``) is
  resolved to the version it points to *now* (:mod:`.mlflow_registry`), and that fixed version is downloaded: every
  replica of the run scores it, even if the alias moves meanwhile. The registry name and version are recorded as
  ``source_model_name`` / ``source_model_version``. An HTTP(S) tracking server is asked through its REST API without
  importing MLflow (:mod:`.mlflow_rest`); any other registry, or what that client cannot answer, through MlflowClient.
- ``runs:/<run>/<path>`` is downloaded; a local MLflow model folder (with an ``MLmodel`` file) is used in place, or
  copied into the target.
- The schema comes from the model's signature, or from ``input_schema`` / ``output_schema`` in the MLmodel's
  ``metadata`` or in the registry version's tags (JSON ``[{"name": ..., "type": ...}]``); those win over the signature.
- A model folder's schemas and metadata are read from its ``MLmodel`` file without importing MLflow, and a replica
  loads the flavours :mod:`.mlmodel` knows (scikit-learn, XGBoost and LightGBM) natively, as MLflow's loaders do;
  any other model through MLflow: the ``sklearn`` flavour as the raw estimator, every other one as a pyfunc. Class
  probabilities: :mod:`.mlflow_probabilities`.

Never imports Airflow; MLflow is imported only to resolve and download ``models:/`` references of registries other
than an HTTP(S) server (or what its REST API cannot answer) and ``runs:/`` references, and to load the models
:mod:`.mlmodel` leaves to it.
"""

from __future__ import annotations

import os
import re
from typing import Any

from airflow_batch_scoring.errors import ModelError
from airflow_batch_scoring.flavors.base import Flavor, Predictor
from airflow_batch_scoring.flavors.mlflow_registry import (
    RegistryLookupError,
    VersionInfo,
    parse_reference,
    resolve_reference,
)
from airflow_batch_scoring.flavors.mlflow_rest import RestRegistry, RestUnavailable
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

RUN_URI = re.compile(r"^runs:/(?P<run_id>[^/]+)/(?P<path>.+)$")


def is_mlflow_uri(uri: str) -> bool:
    return uri.startswith(("models:/", "runs:/"))


def is_mlflow_folder(path: str) -> bool:
    return os.path.isdir(path) and os.path.isfile(os.path.join(path, "MLmodel"))


def _client(tracking_uri: str | None, registry_uri: str | None) -> Any:
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=tracking_uri, registry_uri=registry_uri or tracking_uri)


class _ClientRegistry:
    """MLflow's ``MlflowClient`` as a :class:`~.mlflow_registry.Registry` (any store MLflow knows)."""

    def __init__(self, tracking_uri: str | None, registry_uri: str | None) -> None:
        from mlflow.exceptions import MlflowException

        self._client = _client(tracking_uri, registry_uri)
        self._errors = MlflowException

    def _info(self, model_version: Any) -> VersionInfo:
        return VersionInfo(
            name=model_version.name,
            version=str(model_version.version),
            run_id=model_version.run_id,
            source=model_version.source,
            tags=dict(model_version.tags or {}),
            aliases=list(getattr(model_version, "aliases", []) or []),
            creation_timestamp=model_version.creation_timestamp,
        )

    def version_by_alias(self, name: str, alias: str) -> VersionInfo:
        try:
            return self._info(self._client.get_model_version_by_alias(name, alias))
        except self._errors as err:
            raise RegistryLookupError(err.message) from err

    def version(self, name: str, version: str) -> VersionInfo:
        try:
            return self._info(self._client.get_model_version(name, version))
        except self._errors as err:
            raise RegistryLookupError(err.message) from err

    def latest_versions(self, name: str, stage: str | None) -> list[str]:
        import warnings

        try:
            with warnings.catch_warnings():  # stages are deprecated in MLflow 3, and still answered
                warnings.simplefilter("ignore", FutureWarning)
                found = self._client.get_latest_versions(name, None if stage is None else [stage])
        except self._errors as err:
            raise RegistryLookupError(err.message) from err
        return [str(v.version) for v in found]


def resolve_registry_uri(
    uri: str, tracking_uri: str | None = None, registry_uri: str | None = None
) -> tuple[str, str, str, dict[str, Any]]:
    """Return ``(name, version, fixed uri, source metadata)`` for a ``models:/`` reference, through the server's REST
    API when it is an HTTP(S) server (:mod:`.mlflow_rest`), else (or when that cannot answer) through MlflowClient.

    :raises ModelError: when the model, version, alias or stage is not in the registry.
    """
    reference = parse_reference(uri)
    rest = RestRegistry.for_uris(tracking_uri, registry_uri)
    if rest is not None:
        try:
            return resolve_reference(reference, rest, redact_uri(rest.registry_uri))
        except RestUnavailable:
            pass  # MlflowClient answers (and retries, and reports) as it always did
    registry = _ClientRegistry(tracking_uri, registry_uri)
    return resolve_reference(
        reference, registry, redact_uri(registry_uri or tracking_uri or _default_registry_uri())
    )


def _default_registry_uri() -> str:
    import mlflow

    return mlflow.get_registry_uri()


def download_version(name: str, version: str, target: str, tracking_uri: str | None,
                     registry_uri: str | None = None) -> str:
    """Download registry version ``version`` of ``name`` into ``target`` and return the local folder: from an HTTP(S)
    server without MLflow when it serves the files or they are local (:meth:`.mlflow_rest.RestRegistry.download`),
    else with MLflow (:func:`download`).

    :raises ModelError: when the download fails.
    """
    rest = RestRegistry.for_uris(tracking_uri, registry_uri)
    if rest is not None:
        try:
            return rest.download(name, version, target)
        except (RestUnavailable, RegistryLookupError):
            pass  # MLflow downloads it, or reports why it cannot
        except OSError as err:  # the local disk: MLflow would fail the same way
            raise ModelError(f"Cannot download the model 'models:/{name}/{version}': {err}") from err
    return download(f"models:/{name}/{version}", target, tracking_uri, registry_uri)


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
        path = download_version(name, version, request.target_dir, request.tracking_uri, request.registry_uri)
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
