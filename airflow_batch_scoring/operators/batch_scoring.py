"""BatchScoringOperator: score a source into a sink with a model, on local replicas (the embedded default)."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator

from airflow_batch_scoring.driver.incremental import is_nothing_new, nothing_new_summary
from airflow_batch_scoring.driver.prepare import prepare_job, safe_job_id
from airflow_batch_scoring.driver.run import IF_EXISTS
from airflow_batch_scoring.environments.settings import EnvironmentSettings, parse_mode
from airflow_batch_scoring.errors import ConfigurationError
from airflow_batch_scoring.hooks.data import credentials_for, data_access
from airflow_batch_scoring.hooks.storage import mask_uri_credentials
from airflow_batch_scoring.io.bad_rows.policy import BadRowPolicy
from airflow_batch_scoring.io.locations import check_allowed, check_prefixes, normalize_location
from airflow_batch_scoring.job import DEFAULT_PART_SIZE, DEFAULT_WRITE_CONCURRENCY
from airflow_batch_scoring.kubernetes.settings import check_task_arguments
from airflow_batch_scoring.lineage import operator_lineage, record_lineage
from airflow_batch_scoring.links import LINKS_ATTRIBUTE, ModelVersionLink, OutputLocationLink
from airflow_batch_scoring.operators.failures import no_retry_for_user_errors
from airflow_batch_scoring.operators.process_artifact import fetch_processed_model
from airflow_batch_scoring.operators.runtimes import ResolvedTask, ScoringRuntime, runtime_class, runtime_for
from airflow_batch_scoring.options import DEFAULT_BATCH_SIZE, ScoringOptions
from airflow_batch_scoring.runtime.secrets import Credentials
from airflow_batch_scoring.specs import DataSpec, parse_data_spec
from airflow_batch_scoring.stages import get_stage

if TYPE_CHECKING:
    from airflow.providers.openlineage.extractors import OperatorLineage
    from airflow.sdk import Context


class BatchScoringOperator(BaseOperator):
    """Score every row of a source with a model and publish the predictions to a sink.

    The model is resolved once (an MLflow alias becomes a fixed version), the input is listed and split into
    ``replicas`` deterministic shards, each replica (a local process running the runtime's command line) streams its
    shard in Arrow batches of ``batch_size`` rows through the model into a staged part file, and only when every
    replica has succeeded are the parts published with ``_manifest.json`` and, last, ``_SUCCESS``.

    :param model: the model: ``models:/name@alias``, ``models:/name/version``, ``runs:/<run>/<path>``, an MLflow model
        folder, or a scikit-learn ``.joblib``/``.pkl`` file. (templated)
    :param source: where to read: ``{"uri": ..., "format": "csv"|"jsonl"|"parquet", "header": "auto",
        "columns": [...], "conn_id": ...}``; the URI names a file, a folder or a glob. Or a SQL table or query:
        ``{"conn_id": ..., "table": "schema.table"}``, ``{"conn_id": ..., "query": "SELECT ...", "parameters": {...},
        "partition_column": "id"}`` (any connection whose hook is a ``DbApiHook``). (templated)
    :param sink: the output folder: ``{"uri": ..., "format": ..., "header": "auto"}``; the format defaults to the
        source's. Or a SQL table: ``{"conn_id": ..., "table": ..., "mode": "append"|"replace"|"upsert",
        "merge_keys": [...]}``, written in one transaction. (templated)
    :param batch_size: rows per batch read, predicted and written; memory grows with it, not with the input.
        (templated)
    :param replicas: parallel replicas; each scores its own shard and every input row exactly once; default 1 (or
        the stage's). (templated)
    :param runtime: where replicas run: ``"local"`` (processes on the worker; the default, unless the stage says
        otherwise) or ``"kubernetes"`` (the pods of one Indexed Job; source and sink on an object store; see
        ``kubernetes``).
    :param kubernetes: the Kubernetes runtime's pod settings: ``image`` (required), ``namespace``, ``resources``,
        ``node_selector``, ``tolerations``, ``affinity``, ``service_account_name``, ``labels``, ``annotations``,
        ``image_pull_secrets``, ``env_vars``, ``active_deadline_seconds``, ``ttl_seconds_after_finished``,
        ``backoff_limit``, ``parallelism``, ``in_cluster``, ``config_file``, ``cluster_context``,
        ``on_finish_action`` (see :class:`~airflow_batch_scoring.kubernetes.settings.KubernetesSettings`).
        ``deferrable``, ``kubernetes_conn_id`` and ``poll_interval`` are the operator's own arguments. (templated)
    :param deferrable: (Kubernetes) wait for the Job in the triggerer instead of holding a worker slot; not given:
        the stage's ``deferrable``, else ``[operators] default_deferrable`` (as for ``KubernetesJobOperator``), read
        when the task runs. A value given here wins over the stage's. (templated)
    :param kubernetes_conn_id: (Kubernetes) the cluster's Airflow connection (type ``kubernetes``). (templated)
    :param poll_interval: (Kubernetes) seconds between two looks at the Job. (templated)
    :param passthrough_columns: input columns copied to the output beside the predictions (e.g. an id). (templated)
    :param passthrough_schema: types for some passthrough columns, ``[{"name": "id", "type": "Int64"}]`` (as
        ``input_schema``); the others keep the source's own type (Parquet, SQL), or their text (CSV, JSON lines).
        (templated)
    :param input_schema: the model's input columns as ``[{"name": ..., "type": ...}]`` (types Boolean, Time64,
        Float32, Float64, Int32, Int64, String); overrides the MLflow signature. (templated)
    :param output_schema: names (and types) of the model's outputs, in order; one column renames ``prediction``.
        (templated)
    :param schema_check: check and coerce the input to the schema; ``False`` passes columns through unchecked.
        (templated)
    :param predict_probabilities: add a ``probability_<class>`` column per class (classifiers). (templated)
    :param if_exists: ``"replace"`` a previous output in the sink folder, or ``"fail"``.
    :param mlflow_tracking_uri: the MLflow tracking/registry URI; default ``MLFLOW_TRACKING_URI``. (templated)
    :param mlflow_conn_id: an ``mlflow`` connection (tracking and registry URIs, token) instead of
        ``mlflow_tracking_uri``, as for ``ProcessArtifactOperator``; the token is visible to MLflow only while the model
        is resolved.
    :param part_size: bytes per read request and per upload part (multipart uploads use at least 5 MiB), and the
        unit in which large text files are split between replicas. (templated)
    :param write_concurrency: parts of one output object uploaded at once to S3 or an S3-compatible store (GCS and
        Azure uploads stream one part after another). (templated)
    :param stage: a stage (``DEV``, ``SIT``, ``UAT``, ``PROD`` or one configured in ``[batch_scoring] stages``):
        ``model="models:/churn"`` then scores the stage's registry alias (``models:/churn@prod``), and the stage's
        runtime, replicas and Kubernetes settings apply where the task sets none. (templated)
    :param on_bad_rows: ``"fail"`` (default): stop at the first row that cannot be read or coerced, naming its file,
        line (or Parquet row), column, value and expected type; ``"quarantine"``: write each such row with a reason
        code to ``<sink>/_errors/`` and score the others. Errors about a whole file fail in both modes. (templated)
    :param max_bad_rows: with quarantine, fail the run (publishing nothing) when more rows than this are bad;
        default ``None``: no count limit. (templated)
    :param max_bad_fraction: with quarantine, fail the run when the bad rows' share of the rows read is larger
        (0 to 1); default ``0.1``. (templated)
    :param allowed_sink_prefixes: the folders (URIs, e.g. ``["s3://scores/team-a/"]``) the sink must lie in, checked
        at run time after ``..``, percent-encoding and symbolic links are resolved; for a sink that comes from a
        trigger form or a run's conf. ``None`` (default) allows any sink. Not templated: the DAG's author sets it.
    :param model_environment: where the local replicas run Python: ``"worker"`` (default, unless the stage says
        otherwise): the worker's own environment, with a warning in the log when the model's recorded package
        versions differ from it; ``"model"``: an environment built with uv from the model's recorded requirements
        (an MLflow folder's ``requirements.txt`` and ``python_env.yaml``, or ``requirements``), cached and reused
        (see docs/model_environments.md). (templated)
    :param requirements: the model's requirements when it records none (a bare joblib file) or to replace them:
        a list of specifiers (``["scikit-learn==1.7.2"]``) or the path of a requirements file. (templated)
    :param environment_cache_dir: the folder model environments are cached in; default ``BATCH_SCORING_ENV_CACHE``,
        else ``~/.cache/airflow-batch-scoring/environments``.
    :param environment_build_timeout: seconds building a model environment may take; default
        ``BATCH_SCORING_ENV_BUILD_TIMEOUT_S``, else 900.
    :param incremental: score only what is new since the last run of this task into this sink that published (a
        file, Delta or Iceberg source): new files, or the rows later table versions/snapshots appended. Nothing
        new: the task succeeds with ``rows_in: 0`` and publishes nothing. Run one at a time (``max_active_runs=1``
        or ``depends_on_past=True``); see docs/incremental.md. (templated)
    :param incremental_state: the folder (URI) that keeps the watermark of what was scored; default: a Delta or
        Iceberg sink's ``_batch_scoring/incremental/`` folder; a file or SQL sink needs one. Credentials: the sink's
        connection when the folder is on the sink's store, else the source's. (templated)
    """

    template_fields: Sequence[str] = (
        "model",
        "source",
        "sink",
        "batch_size",
        "replicas",
        "passthrough_columns",
        "passthrough_schema",
        "input_schema",
        "output_schema",
        "mlflow_tracking_uri",
        "part_size",
        "write_concurrency",
        "on_bad_rows",
        "kubernetes",
        "deferrable",
        "kubernetes_conn_id",
        "poll_interval",
        "stage",
        "max_bad_rows",
        "max_bad_fraction",
        "schema_check",
        "predict_probabilities",
        "model_environment",
        "requirements",
        "incremental",
        "incremental_state",
    )
    template_fields_renderers = {
        "source": "json", "sink": "json", "input_schema": "json", "output_schema": "json", "passthrough_schema": "json",
    }
    ui_color = "#d6eaf8"
    operator_extra_links = (OutputLocationLink(), ModelVersionLink())

    def __init__(
        self,
        *,
        model: str,
        source: Mapping[str, Any] | str,
        sink: Mapping[str, Any] | str,
        batch_size: int | str = DEFAULT_BATCH_SIZE,
        replicas: int | str | None = None,
        runtime: str | None = None,
        passthrough_columns: list[str] | None = None,
        passthrough_schema: Any = None,
        input_schema: Any = None,
        output_schema: Any = None,
        schema_check: bool = True,
        predict_probabilities: bool = False,
        if_exists: str = "replace",
        mlflow_tracking_uri: str | None = None,
        mlflow_conn_id: str | None = None,
        part_size: int | str = DEFAULT_PART_SIZE,
        write_concurrency: int | str = DEFAULT_WRITE_CONCURRENCY,
        on_bad_rows: str = "fail",
        max_bad_rows: int | str | None = None,
        max_bad_fraction: float | str | None = None,
        kubernetes: Mapping[str, Any] | None = None,
        deferrable: bool | None = None,
        kubernetes_conn_id: str | None = "kubernetes_default",
        poll_interval: float = 10.0,
        stage: str | None = None,
        allowed_sink_prefixes: Sequence[str] | str | None = None,
        model_environment: str | None = None,
        requirements: Sequence[str] | str | None = None,
        environment_cache_dir: str | None = None,
        environment_build_timeout: float | str | None = None,
        incremental: bool | str = False,
        incremental_state: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        check_task_arguments(kubernetes)  # the moved keys fail at parse time, whatever the runtime
        if runtime is not None:
            runtime_class(runtime).check_settings(kubernetes)  # an unknown runtime or setting fails at parse time
        if if_exists not in IF_EXISTS:
            raise ConfigurationError(f"if_exists must be one of {IF_EXISTS}, got {if_exists!r}.")
        self.model = model
        self.source = source
        self.sink = sink
        self.batch_size = batch_size
        self.replicas = replicas
        self.runtime = runtime
        self.passthrough_columns = passthrough_columns
        self.passthrough_schema = passthrough_schema
        self.input_schema = input_schema
        self.output_schema = output_schema
        self.schema_check = schema_check
        self.predict_probabilities = predict_probabilities
        self.if_exists = if_exists
        self.mlflow_tracking_uri = mlflow_tracking_uri
        self.mlflow_conn_id = mlflow_conn_id
        self.part_size = part_size
        self.write_concurrency = write_concurrency
        self.on_bad_rows = on_bad_rows
        self.max_bad_rows = max_bad_rows
        self.max_bad_fraction = max_bad_fraction
        if "{{" not in f"{on_bad_rows}{max_bad_rows}{max_bad_fraction}":
            BadRowPolicy.parse(on_bad_rows, max_bad_rows, max_bad_fraction)  # a wrong value fails at parse time
        self.kubernetes = kubernetes
        self.deferrable = deferrable
        self.kubernetes_conn_id = kubernetes_conn_id
        self.poll_interval = poll_interval
        self.stage = stage
        if isinstance(allowed_sink_prefixes, str):
            allowed_sink_prefixes = [allowed_sink_prefixes]
        self.allowed_sink_prefixes = list(allowed_sink_prefixes) if allowed_sink_prefixes is not None else None
        if self.allowed_sink_prefixes is not None:
            check_prefixes(self.allowed_sink_prefixes)  # a malformed prefix fails at parse time
        self.model_environment = model_environment
        if model_environment is not None and "{{" not in str(model_environment):
            parse_mode(model_environment)  # a wrong value fails at parse time
        self.requirements = requirements
        self.environment_cache_dir = environment_cache_dir
        self.environment_build_timeout = environment_build_timeout
        self.incremental = incremental
        self.incremental_state = incremental_state
        #: the runtime of the running ``execute`` (for ``on_kill``), else ``None``.
        self._runtime: ScoringRuntime | None = None

    def render_template_fields(self, context: Context, jinja_env: Any = None) -> None:
        super().render_template_fields(context, jinja_env)
        # Credentials written into a URI (refused when the task runs) never reach the log or the rendered fields.
        mask_uri_credentials([self.model, self.source, self.sink])

    def _job_id(self, context: Context) -> str:
        """One name for every attempt of this task instance: a retry finds (and resumes) the earlier attempt."""
        ti = context["ti"]
        map_index = getattr(ti, "map_index", -1)
        return safe_job_id(f"{ti.dag_id}.{ti.task_id}.{map_index}.{ti.run_id}")

    def _resolve(self, context: Context) -> ResolvedTask:
        """The stage and this task's arguments, resolved once (the same in ``execute`` and ``execute_complete``): the
        model reference to score, and the stage's runtime settings where the task sets none (the task's own
        ``kubernetes`` keys win over the stage's)."""
        stage = None
        if self.stage:
            from airflow.providers.common.compat.sdk import conf

            stage = get_stage(str(self.stage), conf.get("batch_scoring", "stages", fallback=None))
        task = ResolvedTask.resolve(
            model=self.model, runtime=self.runtime, replicas=self.replicas, kubernetes=self.kubernetes, stage=stage,
            try_number=context["ti"].try_number, retries=self.retries, if_exists=self.if_exists,
            deferrable=self.deferrable, kubernetes_conn_id=self.kubernetes_conn_id, poll_interval=self.poll_interval,
            model_environment=self.model_environment,
            environment=EnvironmentSettings.parse(
                requirements=self.requirements, cache_dir=self.environment_cache_dir,
                build_timeout=self.environment_build_timeout,
            ),
        )
        runtime_class(task.runtime).check_settings(task.kubernetes)
        if stage is not None:
            self.log.info("Stage %s: scoring %s on the %s runtime", stage.name, task.model, task.runtime)
        return task

    def execute(self, context: Context) -> dict[str, Any]:
        with no_retry_for_user_errors():  # an error a retry cannot change fails the task without its retries
            return self._execute(context)

    def _execute(self, context: Context) -> dict[str, Any]:
        from airflow_batch_scoring.artifacts import process_model

        setattr(self, LINKS_ATTRIBUTE, {})  # the links this run stores (read by the links when the task ends)
        task = self._resolve(context)
        source = parse_data_spec(self.source, "source")
        sink = parse_data_spec(self.sink, "sink")
        self._check_sink_allowed(sink)
        runtime = runtime_for(task, context, self.log.info)
        runtime.check_locations(source, sink)  # before the model is fetched
        scoring = self._options(task.replicas, context)  # every option parsed once, before the model is fetched
        options = self._storage_options(source, sink)
        OutputLocationLink.persist(context, data_access(sink).location(sink, options["sink"]))  # no credentials
        work = tempfile.mkdtemp(prefix="batch-scoring-")
        self._runtime = runtime  # for on_kill
        try:
            runtime.start()  # the local replicas import the runtime while the model is resolved and fetched
            with self._mlflow() as (tracking_uri, registry_uri):
                model = process_model(
                    fetch_processed_model(task.model, os.path.join(work, "processed")),  # from a store target
                    os.path.join(work, "model"),
                    tracking_uri=tracking_uri,
                    registry_uri=registry_uri,
                )
            self.log.info(
                "Model %s resolved to %s (%s, %s)", self.model, model.resolved_uri or model.path, model.flavor,
                model.digest,
            )
            ModelVersionLink.persist(context, model, tracking_uri, registry_uri)
            # The local replicas start and load the model while the input is listed, planned and checked.
            runtime.prepare(
                model, probabilities=scoring.predict_probabilities, output_schema=scoring.output_schema
            )
            job, files = prepare_job(
                job_id=self._job_id(context),
                attempt=f"try{context['ti'].try_number}",
                model=model,
                source=source,
                sink=sink,
                options=scoring,
                storage_options=options,
                log=self.log.info,
            )
            if is_nothing_new(job):  # incremental, and nothing new: success, nothing scored or published
                return nothing_new_summary(job)
            if files:  # a SQL source lists no files: its plan is logged by the preflight
                self.log.info(
                    "Planned %d shard(s) over %d input file(s), %d bytes", job.replicas, len(files),
                    sum(f.size for f in files),
                )
            summary = runtime.run(job, files, options)  # a deferrable runtime defers; execute_complete commits
            self._lineage = record_lineage(context, self.outlets, source, sink, summary, options,
                                           registry_uri or tracking_uri)
            return summary
        finally:
            runtime.close()  # prestarted replicas a failure before the launch left waiting
            self._runtime = None
            shutil.rmtree(work, ignore_errors=True)

    def _options(self, replicas: Any, context: Context) -> ScoringOptions:
        """The scoring options from this task's rendered arguments (``replicas``: the task's or the stage's); an
        incremental run's key is ``<dag_id>.<task_id>.<map_index>``."""
        ti = context["ti"]
        return ScoringOptions.parse(
            incremental=self.incremental,
            incremental_key=f"{ti.dag_id}.{ti.task_id}.{getattr(ti, 'map_index', -1)}",
            incremental_state=self.incremental_state,
            replicas=replicas,
            batch_size=self.batch_size,
            passthrough_columns=self.passthrough_columns,
            passthrough_schema=self.passthrough_schema,
            input_schema=self.input_schema,
            output_schema=self.output_schema,
            schema_check=self.schema_check,
            predict_probabilities=self.predict_probabilities,
            part_size=self.part_size,
            write_concurrency=self.write_concurrency,
            on_bad_rows=self.on_bad_rows,
            max_bad_rows=self.max_bad_rows,
            max_bad_fraction=self.max_bad_fraction,
        )

    @contextmanager
    def _mlflow(self) -> Iterator[tuple[str | None, str | None]]:
        """The MLflow tracking and registry URIs: from ``mlflow_conn_id`` (its token set for the block only), else
        ``mlflow_tracking_uri`` (else MLflow's own ``MLFLOW_TRACKING_URI``)."""
        if not self.mlflow_conn_id:
            yield self.mlflow_tracking_uri or None, None
            return
        from airflow_batch_scoring.hooks.mlflow import MlflowHook

        with MlflowHook(self.mlflow_conn_id).environment() as settings:
            yield settings.tracking_uri, settings.registry_uri

    def _check_sink_allowed(self, sink: DataSpec) -> None:
        """Refuse a sink outside ``allowed_sink_prefixes`` (before anything is fetched, read or written)."""
        if self.allowed_sink_prefixes is None:
            return
        uri = data_access(sink).uri(sink)
        if uri is None:
            raise ConfigurationError(
                f"This task may only write under {', '.join(self.allowed_sink_prefixes)} (its allowed_sink_prefixes), "
                "not to a SQL table."
            )
        check_allowed(normalize_location(uri), self.allowed_sink_prefixes)

    @staticmethod
    def _storage_options(source: DataSpec, sink: DataSpec) -> Credentials:
        """The secrets of the source and the sink, read from their connections once per task execution: one
        immutable snapshot that everything after uses (planning, the replicas out of band, the publish, lineage)."""
        return Credentials(source=credentials_for(source), sink=credentials_for(sink))

    def execute_complete(self, context: Context, event: dict[str, Any] | None = None, **kwargs: Any) -> dict[str, Any]:
        """Resume after the Kubernetes Job finished (``deferrable=True``): say why indexes failed,
        or commit the output."""
        with no_retry_for_user_errors():
            return self._complete(context, event)

    def _complete(self, context: Context, event: dict[str, Any] | None) -> dict[str, Any]:
        task = self._resolve(context)  # the stage's settings again: a deferred task resumes on a fresh operator
        source = parse_data_spec(self.source, "source")
        sink = parse_data_spec(self.sink, "sink")
        self._check_sink_allowed(sink)
        options = self._storage_options(source, sink)
        runtime = self._runtime = runtime_for(task, context, self.log.info)
        try:
            summary = runtime.resume(event, options)
        finally:
            self._runtime = None
        with self._mlflow() as (tracking_uri, registry_uri):
            registry = registry_uri or tracking_uri
        self._lineage = record_lineage(context, self.outlets, source, sink, summary, options, registry)
        return summary

    def get_openlineage_facets_on_complete(self, task_instance: Any) -> OperatorLineage:
        """OpenLineage input and output datasets (named by the OpenLineage naming spec), with schema facets and the
        output's row count; needs ``apache-airflow-providers-openlineage`` (imported only when this is called)."""
        return operator_lineage(getattr(self, "_lineage", None))

    def on_kill(self) -> None:
        if self._runtime is not None:
            self._runtime.kill()
