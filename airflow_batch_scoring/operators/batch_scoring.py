"""BatchScoringOperator: score a source into a sink with a model, on local replicas (the embedded default)."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator

from airflow_batch_scoring.errors import ConfigurationError
from airflow_batch_scoring.hooks.storage import storage_options
from airflow_batch_scoring.job import DEFAULT_PART_SIZE, DEFAULT_WRITE_CONCURRENCY, DataSpec
from airflow_batch_scoring.links import OutputLocationLink, output_location_url
from airflow_batch_scoring.runtime.driver import DEFAULT_BATCH_SIZE, IF_EXISTS, execute_job, prepare_job, safe_job_id
from airflow_batch_scoring.runtime.local import LocalLauncher

if TYPE_CHECKING:
    from airflow.sdk import Context

RUNTIMES = ("local",)


class BatchScoringOperator(BaseOperator):
    """Score every row of a source with a model and publish the predictions to a sink.

    The model is resolved once (an MLflow alias becomes a fixed version), the input is listed and split into
    ``replicas`` deterministic shards, each replica (a local process running the runtime's command line) streams its
    shard in Arrow batches of ``batch_size`` rows through the model into a staged part file, and only when every
    replica has succeeded are the parts published with ``_manifest.json`` and, last, ``_SUCCESS``.

    :param model: the model: ``models:/name@alias``, ``models:/name/version``, ``runs:/<run>/<path>``, an MLflow model
        folder, or a scikit-learn ``.joblib``/``.pkl`` file. (templated)
    :param source: where to read: ``{"uri": ..., "format": "csv"|"jsonl"|"parquet", "header": False,
        "columns": [...], "conn_id": ...}``; the URI names a file, a folder or a glob. (templated)
    :param sink: the output folder: ``{"uri": ..., "format": ..., "header": False}``; the format defaults to the
        source's. (templated)
    :param batch_size: rows per batch read, predicted and written; memory grows with it, not with the input.
        (templated)
    :param replicas: parallel replicas; each scores its own shard and every input row exactly once. (templated)
    :param runtime: where replicas run: ``"local"`` (processes on the worker).
    :param passthrough_columns: input columns copied to the output beside the predictions (e.g. an id). (templated)
    :param input_schema: the model's input columns as ``[{"name": ..., "type": ...}]`` (types Boolean, Time64,
        Float32, Float64, Int32, Int64, String); overrides the MLflow signature. (templated)
    :param output_schema: names (and types) of the model's outputs, in order; one column renames ``prediction``.
        (templated)
    :param schema_check: check and coerce the input to the schema; ``False`` passes columns through unchecked.
    :param predict_probabilities: add a ``probability_<class>`` column per class (classifiers).
    :param if_exists: ``"replace"`` a previous output in the sink folder, or ``"fail"``.
    :param mlflow_tracking_uri: the MLflow tracking/registry URI; default ``MLFLOW_TRACKING_URI``. (templated)
    :param part_size: bytes per read request and per upload part (multipart uploads use at least 5 MiB), and the
        unit in which large text files are split between replicas. (templated)
    :param write_concurrency: parts of one output object uploaded at once to S3 or an S3-compatible store (GCS and
        Azure uploads stream one part after another). (templated)
    """

    template_fields: Sequence[str] = (
        "model",
        "source",
        "sink",
        "batch_size",
        "replicas",
        "passthrough_columns",
        "input_schema",
        "output_schema",
        "mlflow_tracking_uri",
        "part_size",
        "write_concurrency",
    )
    template_fields_renderers = {"source": "json", "sink": "json", "input_schema": "json", "output_schema": "json"}
    ui_color = "#d6eaf8"
    operator_extra_links = (OutputLocationLink(),)

    def __init__(
        self,
        *,
        model: str,
        source: Mapping[str, Any] | str,
        sink: Mapping[str, Any] | str,
        batch_size: int | str = DEFAULT_BATCH_SIZE,
        replicas: int | str = 1,
        runtime: str = "local",
        passthrough_columns: list[str] | None = None,
        input_schema: Any = None,
        output_schema: Any = None,
        schema_check: bool = True,
        predict_probabilities: bool = False,
        if_exists: str = "replace",
        mlflow_tracking_uri: str | None = None,
        part_size: int | str = DEFAULT_PART_SIZE,
        write_concurrency: int | str = DEFAULT_WRITE_CONCURRENCY,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if runtime not in RUNTIMES:
            raise ConfigurationError(f"runtime must be one of {RUNTIMES}, got {runtime!r}.")
        if if_exists not in IF_EXISTS:
            raise ConfigurationError(f"if_exists must be one of {IF_EXISTS}, got {if_exists!r}.")
        self.model = model
        self.source = source
        self.sink = sink
        self.batch_size = batch_size
        self.replicas = replicas
        self.runtime = runtime
        self.passthrough_columns = passthrough_columns
        self.input_schema = input_schema
        self.output_schema = output_schema
        self.schema_check = schema_check
        self.predict_probabilities = predict_probabilities
        self.if_exists = if_exists
        self.mlflow_tracking_uri = mlflow_tracking_uri
        self.part_size = part_size
        self.write_concurrency = write_concurrency
        self._launcher: LocalLauncher | None = None

    def _job_id(self, context: Context) -> str:
        ti = context["ti"]
        map_index = getattr(ti, "map_index", -1)
        return safe_job_id(f"{ti.dag_id}.{ti.task_id}.{map_index}.{ti.run_id}.try{ti.try_number}")

    def execute(self, context: Context) -> dict[str, Any]:
        from airflow_batch_scoring.artifacts import process_model

        source = DataSpec.parse(self.source, "source")
        sink = DataSpec.parse(self.sink, "sink")
        passthrough = self.passthrough_columns
        if isinstance(passthrough, str):
            passthrough = [c.strip() for c in passthrough.split(",") if c.strip()]
        options = {
            "source": storage_options(source.uri, source.conn_id),
            "sink": storage_options(sink.uri, sink.conn_id),
        }
        OutputLocationLink.persist(context, output_location_url(sink.uri, options["sink"].get("endpoint_url")))
        work = tempfile.mkdtemp(prefix="batch-scoring-")
        try:
            model = process_model(
                self.model if isinstance(self.model, Mapping) else str(self.model),
                os.path.join(work, "model"),
                tracking_uri=self.mlflow_tracking_uri or None,
            )
            self.log.info(
                "Model %s resolved to %s (%s, %s)", self.model, model.resolved_uri or model.path, model.flavor,
                model.digest,
            )
            job, files = prepare_job(
                job_id=self._job_id(context),
                model=model,
                source=source,
                sink=sink,
                replicas=self.replicas,
                batch_size=self.batch_size,
                passthrough_columns=passthrough,
                input_schema=self.input_schema,
                output_schema=self.output_schema,
                schema_check=self.schema_check,
                predict_probabilities=self.predict_probabilities,
                part_size=self.part_size,
                write_concurrency=self.write_concurrency,
                storage_options=options,
            )
            self.log.info(
                "Planned %d shard(s) over %d input file(s), %d bytes", job.replicas, len(files),
                sum(f.size for f in files),
            )
            self._launcher = LocalLauncher(self.log.info)
            return execute_job(
                job, files, storage_options=options, log=self.log.info, launcher=self._launcher,
                if_exists=self.if_exists,
            )
        finally:
            self._launcher = None
            shutil.rmtree(work, ignore_errors=True)

    def on_kill(self) -> None:
        if self._launcher is not None:
            self._launcher.kill()
