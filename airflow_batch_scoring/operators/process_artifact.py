"""ProcessArtifactOperator: turn a model reference into a pinned, processed artifact that BatchScoringOperator scores.

Its XCom return value describes the processed artifact (location, artifact type, runtime flavor, sha256 digest,
input and output schema, registry name and version, source metadata); ``BatchScoringOperator(model=process.output)``
takes it as it is, checks the digest and scores exactly that artifact.

The target is a local folder or a folder on an object store (``s3://``, ``gs://``, ``abfs://``, through an Airflow
connection as sources and sinks are): on Celery or Kubernetes executors the scoring task usually runs on another
machine, and fetches the artifact from the store (:func:`fetch_processed_model`), checking its digest.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import fsspec
from airflow.sdk import BaseOperator

from airflow_batch_scoring.artifacts.process import process_model
from airflow_batch_scoring.coercion import to_bool
from airflow_batch_scoring.errors import ConfigurationError, ModelError
from airflow_batch_scoring.flavors.processing import local_path
from airflow_batch_scoring.hooks.storage import mask_uri_credentials, storage_options
from airflow_batch_scoring.io.files import check_user_info, filesystem
from airflow_batch_scoring.job import ModelSpec
from airflow_batch_scoring.links import LINKS_ATTRIBUTE, ModelVersionLink
from airflow_batch_scoring.operators.failures import no_retry_for_user_errors
from airflow_batch_scoring.runtime.remote_model import fetch_model, is_remote, put_model

if TYPE_CHECKING:
    from airflow.sdk import Context

MARKER = "_artifact.json"
#: The key of the XCom value that names the Airflow connection of an object-store target (the scoring task fetches
#: the artifact with it).
CONN_KEY = "storage_conn_id"


class ProcessArtifactOperator(BaseOperator):
    """Resolve, fetch, check and describe a model artifact once per run.

    An MLflow alias is resolved to a fixed version here, so every replica of the scoring task scores that version
    even if the alias moves meanwhile.

    :param model: ``models:/name@alias``, ``models:/name/version``, ``runs:/<run>/<path>``, an MLflow model folder,
        a ``.joblib``/``.pkl`` file, a ``.onnx`` file or an H2O MOJO ``.zip`` (a path or ``file://``). (templated)
    :param artifact_type: ``"auto"`` (from the reference and the file), ``"python/mlflow"``, ``"sklearn/joblib"``,
        ``"onnx"``, ``"h2o3/mojo"``, or the name of an installed plug-in processor. (templated)
    :param target: the folder the processed artifact is written to: a local folder every scoring worker can read,
        or an object-store URI (``s3://``, ``gs://``, ``abfs://`` ...; see ``target_conn_id``) that any worker can
        fetch it from. It must be empty or hold a previous output of this operator (which is replaced). Default:
        ``$BATCH_SCORING_ARTIFACTS_DIR`` (a folder or a store URI; else the temp folder)
        ``/<dag_id>/<run_id>/<task_id>``. (templated)
    :param target_conn_id: the Airflow connection of an object-store target (as a source's or sink's ``conn_id``);
        the scoring task fetches the artifact through the same connection. (templated)
    :param expected_sha256: the artifact's sha256 (``sha256sum FILE``); a file that differs is refused before it is
        read. Strongly advised for pickles, which run code when loaded. (templated)
    :param input_schema: the input columns, ``[{"name": ..., "type": ...}]`` (Boolean, Time64, Float32, Float64,
        Int32, Int64, String; case-insensitive); wins over the signature and metadata. (templated)
    :param output_schema: the names and types of the model's outputs, in order. (templated)
    :param schema_check: refuse a model whose input schema stays unknown (``False``: score unchecked).
    :param mlflow_conn_id: an Airflow connection of type ``mlflow`` (tracking URI, registry URI, token).
    :param stage: a stage (``DEV``, ``SIT``, ``UAT``, ``PROD``, or one configured in ``[batch_scoring] stages``):
        ``model="models:/churn"`` then processes the stage's registry alias (``models:/churn@prod``). (templated)
    :param mlflow_tracking_uri: the MLflow tracking URI when no connection is given; default ``MLFLOW_TRACKING_URI``.
        (templated)
    :param mlflow_registry_uri: the MLflow registry URI; default the tracking URI. (templated)
    :param processor_options: keyword options for a plug-in processor. (templated)
    """

    template_fields: Sequence[str] = (
        "model",
        "artifact_type",
        "target",
        "target_conn_id",
        "expected_sha256",
        "input_schema",
        "output_schema",
        "mlflow_tracking_uri",
        "mlflow_registry_uri",
        "processor_options",
        "stage",
    )
    template_fields_renderers = {"input_schema": "json", "output_schema": "json", "processor_options": "json"}
    ui_color = "#e8daef"
    operator_extra_links = (ModelVersionLink(),)

    def __init__(
        self,
        *,
        model: str,
        artifact_type: str = "auto",
        target: str | None = None,
        target_conn_id: str | None = None,
        expected_sha256: str | None = None,
        input_schema: Any = None,
        output_schema: Any = None,
        schema_check: bool = True,
        mlflow_conn_id: str | None = None,
        stage: str | None = None,
        mlflow_tracking_uri: str | None = None,
        mlflow_registry_uri: str | None = None,
        processor_options: Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.model = model
        self.artifact_type = artifact_type
        self.target = target
        self.target_conn_id = target_conn_id
        self.expected_sha256 = expected_sha256
        self.input_schema = input_schema
        self.output_schema = output_schema
        self.schema_check = schema_check
        self.mlflow_conn_id = mlflow_conn_id
        self.stage = stage
        self.mlflow_tracking_uri = mlflow_tracking_uri
        self.mlflow_registry_uri = mlflow_registry_uri
        self.processor_options = processor_options

    def render_template_fields(self, context: Context, jinja_env: Any = None) -> None:
        super().render_template_fields(context, jinja_env)
        # Credentials written into a URI (refused when the task runs) never reach the log or the rendered fields.
        mask_uri_credentials([self.model, self.target])

    def _target(self, context: Context) -> str:
        """The target folder: a local path, or an object-store URI (without a trailing slash)."""
        if self.target:
            target = str(self.target).strip()
            check_user_info(target, "target")
            if is_remote(target):
                return target.rstrip("/")
            path = local_path(target)
            if path is None:
                raise ConfigurationError(
                    f"target must be a local folder, a file:// URI or an object-store URI (s3://, gs://, abfs://), "
                    f"got {self.target!r}."
                )
            return path
        ti = context["ti"]
        base = os.environ.get("BATCH_SCORING_ARTIFACTS_DIR") or os.path.join(
            tempfile.gettempdir(), "batch-scoring-artifacts"
        )
        parts = [ti.dag_id, ti.run_id, ti.task_id]
        if getattr(ti, "map_index", -1) >= 0:
            parts.append(str(ti.map_index))
        if is_remote(base):
            return "/".join([base.rstrip("/"), *(p.replace("/", "_") for p in parts)])
        return os.path.join(base, *(p.replace(os.sep, "_") for p in parts))

    @staticmethod
    def _prepare(target: str, options: Mapping[str, Any] | None = None) -> None:
        """Empty ``target`` when it holds a previous output of this operator; refuse any other content."""
        fs, folder = filesystem(target, options) if is_remote(target) else (fsspec.filesystem("file"), target)
        if fs.isdir(folder) and fs.ls(folder, detail=False):
            if not fs.exists(f"{folder}/{MARKER}"):
                raise ConfigurationError(
                    f"The target folder {target!r} is not empty and was not written by ProcessArtifactOperator; "
                    "name an empty folder (e.g. one per run: '/models/processed/{{ run_id }}')."
                )
            fs.rm(folder, recursive=True)
        fs.makedirs(folder, exist_ok=True)
        with fs.open(f"{folder}/{MARKER}", "w") as f:
            json.dump({"status": "processing"}, f)
        fs.invalidate_cache()

    def execute(self, context: Context) -> dict[str, Any]:
        setattr(self, LINKS_ATTRIBUTE, {})  # the links this run stores (read by the links when the task ends)
        with no_retry_for_user_errors():  # an error a retry cannot change fails the task without its retries
            return self._execute(context)

    def _execute(self, context: Context) -> dict[str, Any]:
        target = self._target(context)
        if not is_remote(target):
            self._prepare(target)
            return self._process_into(context, os.path.join(target, "artifact"), target)
        options = storage_options(target, self.target_conn_id)
        self._prepare(target, options)
        work = tempfile.mkdtemp(prefix="batch-scoring-artifact-")
        try:  # processed on this worker, then uploaded: no copy stays on this worker
            # (an MLflow model folder is uploaded as <target>/artifact/model, a file as <target>/artifact/<its name>)
            return self._process_into(context, os.path.join(work, "model"), target, options)
        finally:
            shutil.rmtree(work, ignore_errors=True)

    def _process_into(self, context: Context, artifact_dir: str, target: str,
                      options: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Process the model into the local ``artifact_dir``; for a remote ``target``, upload it there."""
        tracking_uri, registry_uri = self.mlflow_tracking_uri or None, self.mlflow_registry_uri or None
        processor_options = dict(self.processor_options or {})
        if self.mlflow_conn_id:
            from airflow_batch_scoring.hooks.mlflow import MlflowHook

            with MlflowHook(self.mlflow_conn_id).environment() as settings:
                tracking_uri, registry_uri = settings.tracking_uri, registry_uri or settings.registry_uri
                spec = self._process(artifact_dir, tracking_uri, registry_uri, processor_options)
        else:
            spec = self._process(artifact_dir, tracking_uri, registry_uri, processor_options)
        ModelVersionLink.persist(context, spec, tracking_uri, registry_uri)
        if is_remote(target):
            spec = replace(spec, path=put_model(spec.path, f"{target}/artifact", options, spec.digest))
        result = spec.to_dict()
        if is_remote(target):
            result[CONN_KEY] = self.target_conn_id
        fs, folder_path = filesystem(target, options) if is_remote(target) else (fsspec.filesystem("file"), target)
        with fs.open(f"{folder_path}/{MARKER}", "w") as f:
            json.dump(result, f, indent=2)
        version = f" version {spec.source_model_version}" if spec.source_model_version else ""
        self.log.info(
            "Processed %s as %s%s into %s (%s); input schema: %s",
            self.model, spec.artifact_type, version, spec.path, spec.digest,
            ", ".join(f"{c['name']}:{c['type']}" for c in spec.input_schema or []) or "unknown",
        )
        return result

    def _model_reference(self) -> str:
        """The model to process: with a stage, ``models:/name`` becomes the stage's alias."""
        if not self.stage:
            return str(self.model)
        from airflow.providers.common.compat.sdk import conf

        from airflow_batch_scoring.stages import get_stage, model_for_stage

        return model_for_stage(str(self.model), get_stage(str(self.stage), conf.get("batch_scoring", "stages",
                                                                                    fallback=None)))

    def _process(
        self, target: str, tracking_uri: str | None, registry_uri: str | None, options: dict[str, Any]
    ) -> ModelSpec:
        return process_model(
            self._model_reference(),
            target,
            tracking_uri,
            registry_uri=registry_uri,
            artifact_type=self.artifact_type,
            expected_sha256=self.expected_sha256 or None,
            input_schema=self.input_schema or None,
            output_schema=self.output_schema or None,
            require_input_schema=to_bool(self.schema_check, "schema_check"),
            copy=True,
            options=options,
        )


def fetch_processed_model(model: Any, into: str) -> Any:
    """The processed model a scoring task was given, on this worker: a ProcessArtifactOperator output whose artifact
    is on an object store is fetched into the local folder ``into`` (its digest checked) and returned with its local
    path; anything else is returned as it is.

    :raises ModelError: when the artifact is missing from the store or its digest differs.
    :raises ConfigurationError: when the target's connection cannot be used.
    """
    if not isinstance(model, Mapping) or not is_remote(str(model.get("path") or "")):
        return model
    uri = str(model["path"])
    options = storage_options(uri, model.get(CONN_KEY))
    fs, path = filesystem(uri, options)
    if not fs.exists(path):
        raise ModelError(
            f"The processed model {uri!r} (from {model.get('uri')!r}) does not exist: the processing task's target "
            "was removed or overwritten. Run the ProcessArtifactOperator task again."
        )
    os.makedirs(into, exist_ok=True)
    local = fetch_model(uri, options, into, model.get("digest"))
    return {**model, "path": local}
