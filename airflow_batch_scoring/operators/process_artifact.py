"""ProcessArtifactOperator: turn a model reference into a pinned, processed artifact that BatchScoringOperator scores.

Its XCom return value describes the processed artifact (location, artifact type, runtime flavor, sha256 digest,
input and output schema, registry name and version, source metadata); ``BatchScoringOperator(model=process.output)``
takes it as it is, checks the digest and scores exactly that artifact.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator

from airflow_batch_scoring.artifacts.process import process_model
from airflow_batch_scoring.errors import ConfigurationError
from airflow_batch_scoring.flavors.processing import local_path
from airflow_batch_scoring.hooks.storage import mask_uri_credentials
from airflow_batch_scoring.io.files import check_user_info
from airflow_batch_scoring.links import LINKS_ATTRIBUTE, ModelVersionLink
from airflow_batch_scoring.operators.failures import no_retry_for_user_errors

if TYPE_CHECKING:
    from airflow.sdk import Context

MARKER = "_artifact.json"


class ProcessArtifactOperator(BaseOperator):
    """Resolve, fetch, check and describe a model artifact once per run.

    An MLflow alias is resolved to a fixed version here, so every replica of the scoring task scores that version
    even if the alias moves meanwhile.

    :param model: ``models:/name@alias``, ``models:/name/version``, ``runs:/<run>/<path>``, an MLflow model folder,
        a ``.joblib``/``.pkl`` file, a ``.onnx`` file or an H2O MOJO ``.zip`` (a path or ``file://``). (templated)
    :param artifact_type: ``"auto"`` (from the reference and the file), ``"python/mlflow"``, ``"sklearn/joblib"``,
        ``"onnx"``, ``"h2o3/mojo"``, or the name of an installed plug-in processor. (templated)
    :param target: the folder the processed artifact is written to; every worker that scores must be able to read
        it. It must be empty or hold a previous output of this operator (which is replaced). Default:
        ``$BATCH_SCORING_ARTIFACTS_DIR`` (or the temp folder) ``/<dag_id>/<run_id>/<task_id>``. (templated)
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

    def _target_dir(self, context: Context) -> str:
        if self.target:
            check_user_info(str(self.target), "target")
            path = local_path(str(self.target).strip())
            if path is None:
                raise ConfigurationError(
                    f"target must be a local folder or a file:// URI that every scoring worker can read, got "
                    f"{self.target!r}."
                )
            return path
        ti = context["ti"]
        base = os.environ.get("BATCH_SCORING_ARTIFACTS_DIR") or os.path.join(
            tempfile.gettempdir(), "batch-scoring-artifacts"
        )
        parts = [ti.dag_id, ti.run_id, ti.task_id]
        if getattr(ti, "map_index", -1) >= 0:
            parts.append(str(ti.map_index))
        return os.path.join(base, *(p.replace(os.sep, "_") for p in parts))

    @staticmethod
    def _prepare(target: str) -> None:
        """Empty ``target`` when it holds a previous output of this operator; refuse any other content."""
        if os.path.isdir(target) and os.listdir(target):
            if not os.path.exists(os.path.join(target, MARKER)):
                raise ConfigurationError(
                    f"The target folder {target!r} is not empty and was not written by ProcessArtifactOperator; "
                    "name an empty folder (e.g. one per run: '/models/processed/{{ run_id }}')."
                )
            shutil.rmtree(target)
        os.makedirs(target, exist_ok=True)
        with open(os.path.join(target, MARKER), "w") as f:
            json.dump({"status": "processing"}, f)

    def execute(self, context: Context) -> dict[str, Any]:
        setattr(self, LINKS_ATTRIBUTE, {})  # the links this run stores (read by the links when the task ends)
        with no_retry_for_user_errors():  # an error a retry cannot change fails the task without its retries
            return self._execute(context)

    def _execute(self, context: Context) -> dict[str, Any]:
        target = self._target_dir(context)
        self._prepare(target)
        artifact_dir = os.path.join(target, "artifact")
        tracking_uri, registry_uri = self.mlflow_tracking_uri or None, self.mlflow_registry_uri or None
        options = dict(self.processor_options or {})
        if self.mlflow_conn_id:
            from airflow_batch_scoring.hooks.mlflow import MlflowHook

            with MlflowHook(self.mlflow_conn_id).environment() as settings:
                tracking_uri, registry_uri = settings.tracking_uri, registry_uri or settings.registry_uri
                spec = self._process(artifact_dir, tracking_uri, registry_uri, options)
        else:
            spec = self._process(artifact_dir, tracking_uri, registry_uri, options)
        ModelVersionLink.persist(context, spec, tracking_uri, registry_uri)
        result = spec.to_dict()
        with open(os.path.join(target, MARKER), "w") as f:
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
        from airflow.sdk.configuration import conf

        from airflow_batch_scoring.stages import get_stage, model_for_stage

        return model_for_stage(str(self.model), get_stage(str(self.stage), conf.get("batch_scoring", "stages",
                                                                                    fallback=None)))

    def _process(self, target: str, tracking_uri: str | None, registry_uri: str | None, options: dict[str, Any]):
        return process_model(
            self._model_reference(),
            target,
            tracking_uri,
            registry_uri=registry_uri,
            artifact_type=self.artifact_type,
            expected_sha256=self.expected_sha256 or None,
            input_schema=self.input_schema or None,
            output_schema=self.output_schema or None,
            require_input_schema=self.schema_check,
            copy=True,
            options=options,
        )
