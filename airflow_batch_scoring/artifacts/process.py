"""Process a model: name -> artifact type -> processed artifact (pinned version, digest, schema) as a ModelSpec.

The artifact type names a model flavour (:mod:`airflow_batch_scoring.flavors`, built in or a plug-in), which detects
and processes it, or an artifact processor plug-in (:mod:`.plugins`) that turns it into a flavour's artifact first.

``process_model`` is what both operators call. It accepts the model as the user names it (an MLflow URI, a folder, a
file) or the mapping ``ProcessArtifactOperator`` returns (its XCom output), which it checks and returns as it is.

Shared with the runtime: never imports Airflow.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import fields, replace
from typing import Any

from airflow_batch_scoring import flavors
from airflow_batch_scoring.artifacts import plugins
from airflow_batch_scoring.artifacts.digest import sha256_of, verify_digest
from airflow_batch_scoring.errors import ModelError
from airflow_batch_scoring.flavors.base import Flavor
from airflow_batch_scoring.flavors.mlflow import download, is_mlflow_uri
from airflow_batch_scoring.flavors.processing import ArtifactRequest, json_safe, local_path, schema_json
from airflow_batch_scoring.io.files import check_user_info
from airflow_batch_scoring.job import ModelSpec
from airflow_batch_scoring.schema import ModelSchema

AUTO = "auto"


def detect_type(uri: str) -> str:
    """The artifact type of the flavour ``uri`` is (``artifact_type="auto"``).

    :raises ModelError: when the path does not exist, or no flavour recognises it.
    """
    path = local_path(uri)
    found = flavors.detect(uri, path if path is not None and os.path.exists(path) else None)
    if found is not None:
        return found.artifact_type
    if path is None:
        raise ModelError(
            f"Cannot load a model from {uri!r}: use models:/name@alias, models:/name/version, runs:/<run>/<path>, "
            "a local path or a file:// URI."
        )
    if not os.path.exists(path):
        raise ModelError(
            f"The model path {path!r} does not exist. Give an existing MLflow model folder, a .joblib/.pkl, .onnx "
            "or MOJO .zip file, or a registry URI such as models:/name@alias."
        )
    kinds = [flavor.description for flavor in flavors.installed() if flavor.description]
    raise ModelError(
        f"Cannot tell the artifact type of {path!r}: it is neither {', '.join(kinds[:-1])} nor {kinds[-1]}. Set "
        f"artifact_type to one of {', '.join(known_types())}."
    )


def known_types() -> list[str]:
    """The artifact types of the installed flavours, then the names of the installed artifact processors."""
    types = [flavor.artifact_type for flavor in flavors.installed()]
    return [*types, *(name for name in plugins.plugin_names() if name not in types)]


def normalize_type(artifact_type: str | None) -> str:
    """The canonical name of ``artifact_type`` (case-insensitive; ``mlflow`` -> ``python/mlflow`` ...)."""
    value = str(artifact_type or AUTO).strip().lower()
    flavor = flavors.flavor_for_type(value) if value != AUTO else None
    return flavor.artifact_type if flavor is not None else value


def _process_as(flavor: Flavor, request: ArtifactRequest) -> ModelSpec:
    """The flavour's processed model, its artifact's digest pinned (every replica checks it before loading)."""
    spec = flavor.process(request)
    return replace(spec, digest=sha256_of(spec.path))


def spec_from_mapping(value: Mapping[str, Any]) -> ModelSpec:
    """The ModelSpec a ProcessArtifactOperator returned, checked: the artifact is there and has its digest.

    :raises ModelError: for a mapping that is not a processed model, a missing artifact, or a changed one.
    """
    known = {f.name for f in fields(ModelSpec)}
    missing = sorted({"uri", "path", "flavor"} - set(value))
    if missing:
        raise ModelError(
            f"The model mapping lacks {missing}: pass the output of ProcessArtifactOperator (model=process.output), "
            "or a model URI or path."
        )
    spec = ModelSpec(**{k: v for k, v in value.items() if k in known})
    if not os.path.exists(spec.path):
        raise ModelError(
            f"The processed model {spec.path!r} (from {spec.uri!r}) does not exist here: the processing task wrote it "
            "where this worker cannot read it. Give ProcessArtifactOperator a target every worker can read, or "
            "process the model again."
        )
    if spec.digest:
        verify_digest(spec.path, spec.digest, "The processed model")
    return spec


def apply_schemas(spec: ModelSpec, input_schema: Any = None, output_schema: Any = None) -> ModelSpec:
    """``spec`` with the explicit ``input_schema`` / ``output_schema`` winning over what the artifact tells."""
    parsed_in, parsed_out = ModelSchema.parse(input_schema), ModelSchema.parse(output_schema)
    if parsed_in is not None:
        spec = replace(spec, input_schema=schema_json(parsed_in))
    if parsed_out is not None:
        spec = replace(spec, output_schema=schema_json(parsed_out))
    return spec


def process_model(
    model: str | Mapping[str, Any],
    target_dir: str,
    tracking_uri: str | None = None,
    *,
    registry_uri: str | None = None,
    artifact_type: str | None = AUTO,
    expected_sha256: str | None = None,
    input_schema: Any = None,
    output_schema: Any = None,
    require_input_schema: bool = False,
    copy: bool = False,
    options: Mapping[str, Any] | None = None,
) -> ModelSpec:
    """Resolve ``model`` to a processed artifact (under ``target_dir`` when it is downloaded or copied).

    :param model: ``models:/name/version``, ``models:/name@alias``, ``runs:/<run>/<path>``, a local path or
        ``file://`` URI, or the mapping ProcessArtifactOperator returned.
    :param tracking_uri: the MLflow tracking URI; ``None`` uses ``MLFLOW_TRACKING_URI``.
    :param registry_uri: the MLflow registry URI; ``None`` uses the tracking URI.
    :param artifact_type: ``auto`` (from the URI and the file), ``python/mlflow``, ``sklearn/joblib``, ``onnx``,
        ``h2o3/mojo``, or a plug-in's name.
    :param expected_sha256: the artifact's sha256 (``sha256sum`` of a file); checked before anything else reads it.
    :param input_schema: the input columns; win over the artifact's own schema.
    :param output_schema: the output columns; win over the artifact's own schema.
    :param require_input_schema: refuse a model whose input schema stays unknown (scikit-learn files excepted: their
        feature names are read when the replica loads them).
    :param copy: copy a local artifact into ``target_dir`` rather than use it in place.
    :param options: options passed to a plug-in processor.
    :raises ModelError: for an unknown type, a model that does not resolve or exist, a changed artifact, or a
        missing schema.
    """
    if isinstance(model, Mapping):
        return apply_schemas(spec_from_mapping(model), input_schema, output_schema)
    uri = str(model).strip()
    if not uri:
        raise ModelError(
            "No model was given: set model to an MLflow URI (models:/name@alias), a model file or folder path, or "
            "the output of ProcessArtifactOperator."
        )
    check_user_info(uri, "model")  # before any message could quote it
    kind = normalize_type(artifact_type)
    request = ArtifactRequest(
        uri=uri,
        target_dir=target_dir,
        tracking_uri=tracking_uri,
        registry_uri=registry_uri,
        copy=copy,
        options=dict(options or {}),
    )
    source_path = local_path(uri)
    if expected_sha256 and source_path is not None and os.path.exists(source_path):
        verify_digest(source_path, expected_sha256, "The model file")
    if kind == AUTO:
        kind = detect_type(uri)
    flavor = flavors.flavor_for_type(kind)
    spec = _process_as(flavor, request) if flavor is not None else _process_with_plugin(kind, request)
    if expected_sha256 and (source_path is None or not os.path.exists(source_path)):
        verify_digest(spec.path, expected_sha256, "The downloaded model")
    spec = apply_schemas(spec, input_schema, output_schema)
    schema_at_load = flavors.flavor_named(spec.flavor).input_schema_from_model  # e.g. scikit-learn feature names
    if require_input_schema and spec.input_schema is None and not schema_at_load:
        raise ModelError(
            f"The input schema of the model {uri!r} ({spec.artifact_type}) is unknown: it has no signature and no "
            'input_schema metadata. Give input_schema=[{"name": "x", "type": "Float64"}, ...] (types: Boolean, '
            "Time64, Float32, Float64, Int32, Int64, String), or log the model with a signature or with input_schema "
            "metadata, or set schema_check=False to send the input columns to the model unchecked."
        )
    return spec


def _process_with_plugin(name: str, request: ArtifactRequest) -> ModelSpec:
    processor = plugins.find_plugin(name)
    if processor is None:
        raise ModelError(
            f"Unknown artifact type {name!r}: use one of {', '.join([AUTO, *known_types()])}, or install a package "
            f"that provides it through the {plugins.ENTRY_POINT_GROUP!r} (a processor) or "
            f"{flavors.ENTRY_POINT_GROUP!r} (a model flavour) entry point."
        )
    uri = request.uri
    if is_mlflow_uri(uri):
        source_path = download(
            uri, os.path.join(request.target_dir, "source"), request.tracking_uri, request.registry_uri
        )
    else:
        source_path = local_path(uri) or uri
        if not os.path.exists(source_path):
            raise ModelError(f"The model path {source_path!r} does not exist: name an existing file or folder.")
    result = plugins.run_processor(
        name, processor, source_path, os.path.join(request.target_dir, "processed"), request.options
    )
    produced = normalize_type(result.get("artifact_type") or detect_type(result["path"]))
    flavor = flavors.flavor_for_type(produced)
    if flavor is None:
        types = [flavor.artifact_type for flavor in flavors.installed()]
        raise ModelError(
            f"The artifact processor {name!r} says it wrote a {produced!r} model; it must write one of "
            f"{', '.join(types)}."
        )
    processed = _process_as(flavor, ArtifactRequest(uri=result["path"], target_dir=request.target_dir))
    spec = replace(
        processed,
        uri=uri,
        artifact_type=name,
        source_metadata=json_safe(
            {**(processed.source_metadata or {}), "processor": name, "processed_as": produced,
             "source_path": source_path, **dict(result.get("metadata") or {})}
        ),
    )
    return apply_schemas(spec, result.get("input_schema"), result.get("output_schema"))
