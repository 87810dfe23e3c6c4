"""BatchTrainingOperator: fit a model with the user's callable on labeled rows, register it with an alias."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator

from airflow_batch_scoring.errors import ConfigurationError
from airflow_batch_scoring.links import ModelVersionLink
from airflow_batch_scoring.operators.failures import no_retry_for_user_errors
from airflow_batch_scoring.training.job import DATA_MODES, DEFAULT_ALIAS

if TYPE_CHECKING:
    from airflow.sdk import Context

    from airflow_batch_scoring.kubernetes.training import KubernetesTrainer
    from airflow_batch_scoring.training.run import LocalTrainer

#: the runtimes a training task runs on.
TRAINING_RUNTIMES = ("local", "kubernetes")


class BatchTrainingOperator(BaseOperator):
    """Train a model on labeled rows with an importable callable, log it to MLflow (with its signature and an input
    example), register it as a new version of ``register_as`` and set ``alias`` on it.

    The callable runs in its own process (``python -m airflow_batch_scoring.runtime train``) on the worker, or, with
    ``runtime="kubernetes"``, in the one pod of a Job, which reads the source with the scoring engine's readers: it
    receives a pandas DataFrame of the features and the label (``data="pandas"``), or an iterator of
    ``pyarrow.RecordBatch``es (``data="arrow"``), and ``label_column=`` when it takes it, and returns the fitted
    model (anything with ``predict``; a scikit-learn estimator is logged with the ``sklearn`` flavour, anything else
    as a ``pyfunc`` model). The MLflow run records where the training data was and its digest (tags
    ``batch_scoring.training.*``), the baseline a later drift check compares with.

    A callable that cannot be imported, raises, or returns no model, and a label column the source lacks, fail the
    task at once (no retry) and register nothing.

    :param training: the callable, ``"package.module:function"``, importable on the worker. (templated)
    :param source: the labeled rows: any source of :class:`BatchScoringOperator` (files on any store, a SQL table
        or query). (templated)
    :param label_column: the column of labels (or targets). (templated)
    :param register_as: the registered model's name. (templated)
    :param alias: the alias the new version gets (default ``"challenger"``). (templated)
    :param data: ``"pandas"`` or ``"arrow"``: what the callable receives. (templated)
    :param training_kwargs: further keyword arguments for the callable (JSON values). (templated)
    :param experiment: the MLflow experiment of the training run (default: MLflow's default one). (templated)
    :param mlflow_tracking_uri: the MLflow tracking URI (default: ``$MLFLOW_TRACKING_URI``). (templated)
    :param mlflow_conn_id: an ``mlflow`` connection (tracking and registry URI, token); wins over
        ``mlflow_tracking_uri``. Its token reaches the training process on its standard input.
    :param runtime: ``"local"`` (default): one process on the worker; ``"kubernetes"``: the one pod of a Job
        (``kubernetes={"image": ...}``; the source on an object store or a database the pod reaches), which runs the
        same command with the job in the Job's ConfigMap and the secret material (the source's credentials, the
        MLflow token) in its Secret.
    :param kubernetes: (Kubernetes) the pod settings, as for :class:`BatchScoringOperator`. (templated)
    :param kubernetes_conn_id: (Kubernetes) the cluster's Airflow connection (type ``kubernetes``). (templated)
    :param poll_interval: (Kubernetes) seconds between two looks at the Job. (templated)
    :param batch_size: rows per Arrow batch read (``data="arrow"``: per batch the callable gets). (templated)

    XCom: ``{"model_uri": "models:/name/version", "version", "run_id", "rows", "digest", "model_name", "alias",
    "label_column", "flavor"}``. The extra link opens the model version on an MLflow server's UI.
    """

    template_fields: Sequence[str] = (
        "training", "source", "label_column", "register_as", "alias", "data", "training_kwargs", "experiment",
        "mlflow_tracking_uri", "batch_size", "kubernetes", "kubernetes_conn_id", "poll_interval",
    )
    template_fields_renderers = {"source": "json", "training_kwargs": "json", "kubernetes": "json"}
    ui_color = "#d5f5e3"
    operator_extra_links = (ModelVersionLink(),)

    def __init__(
        self,
        *,
        training: str,
        source: Mapping[str, Any] | str,
        label_column: str,
        register_as: str,
        alias: str = DEFAULT_ALIAS,
        data: str = "pandas",
        training_kwargs: Mapping[str, Any] | None = None,
        experiment: str | None = None,
        mlflow_tracking_uri: str | None = None,
        mlflow_conn_id: str | None = None,
        runtime: str | None = None,
        batch_size: int | str | None = None,
        kubernetes: Mapping[str, Any] | None = None,
        kubernetes_conn_id: str | None = "kubernetes_default",
        poll_interval: float = 10.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if runtime not in (None, *TRAINING_RUNTIMES):
            raise ConfigurationError(
                f"runtime={runtime!r}: a training task runs on one of {TRAINING_RUNTIMES}; leave runtime out for "
                "the local one."
            )
        from airflow_batch_scoring.kubernetes.settings import KubernetesSettings, check_task_arguments

        check_task_arguments(kubernetes)
        if runtime == "kubernetes":
            KubernetesSettings.check_keys(kubernetes)
        if "{{" not in str(data) and data not in DATA_MODES:
            raise ConfigurationError(f"data must be one of {DATA_MODES}, got {data!r}.")
        if "{{" not in str(training):
            from airflow_batch_scoring.training.callable import check_reference

            check_reference(training)  # a malformed reference fails at parse time
        self.training = training
        self.source = source
        self.label_column = label_column
        self.register_as = register_as
        self.alias = alias
        self.data = data
        self.training_kwargs = training_kwargs
        self.experiment = experiment
        self.mlflow_tracking_uri = mlflow_tracking_uri
        self.mlflow_conn_id = mlflow_conn_id
        self.runtime = runtime
        self.batch_size = batch_size
        self.kubernetes = kubernetes
        self.kubernetes_conn_id = kubernetes_conn_id
        self.poll_interval = poll_interval
        self._trainer: LocalTrainer | KubernetesTrainer | None = None

    def render_template_fields(self, context: Context, jinja_env: Any = None) -> None:
        super().render_template_fields(context, jinja_env)
        from airflow_batch_scoring.hooks.storage import mask_uri_credentials

        mask_uri_credentials([self.source])

    def execute(self, context: Context) -> dict[str, Any]:
        with no_retry_for_user_errors():
            return self._train(context)

    def _train(self, context: Context) -> dict[str, Any]:
        from airflow_batch_scoring.driver.prepare import safe_job_id
        from airflow_batch_scoring.hooks.data import credentials_for
        from airflow_batch_scoring.links import LINKS_ATTRIBUTE
        from airflow_batch_scoring.specs import parse_data_spec
        from airflow_batch_scoring.training.run import plan_training, run_training

        setattr(self, LINKS_ATTRIBUTE, {})
        source = parse_data_spec(self.source, "source")
        secrets = credentials_for(source)
        tracking_uri, registry_uri, token = self._mlflow_settings()
        if self.runtime == "kubernetes" and not tracking_uri:
            import os

            tracking_uri = os.environ.get("MLFLOW_TRACKING_URI") or None  # the pod does not see the worker's env
            if not tracking_uri:
                raise ConfigurationError(
                    "runtime='kubernetes' needs the MLflow tracking URI the pod registers the model at: pass "
                    "mlflow_conn_id= (or mlflow_tracking_uri=), a server the pod can reach."
                )
        ti = context["ti"]
        job = plan_training(
            job_id=safe_job_id(f"{ti.dag_id}.{ti.task_id}.{getattr(ti, 'map_index', -1)}.{ti.run_id}"),
            source=source, label_column=self.label_column, training=self.training, register_as=self.register_as,
            alias=self.alias, data=self.data, training_kwargs=self.training_kwargs, secrets=secrets,
            tracking_uri=tracking_uri, registry_uri=registry_uri, experiment=self.experiment,
            batch_size=self.batch_size,
        )
        self.log.info("Training %s (try %s): %s on %s", job.register_as, ti.try_number, job.training, job.source_record
                      .get("uri") or job.source_record.get("table"))
        self._trainer = self._make_trainer(context, source)
        try:
            summary = run_training(job, self._trainer, {"source": secrets, "mlflow": {"token": token}}, self.log.info)
        finally:
            self._trainer = None
        ModelVersionLink.persist(context, SimpleNamespace(name=summary["model_name"], version=summary["version"]),
                                 tracking_uri, registry_uri)
        return summary

    def _make_trainer(self, context: Context, source: Any) -> LocalTrainer | KubernetesTrainer:
        """The local trainer, or (``runtime="kubernetes"``) the one-pod Job's."""
        from airflow_batch_scoring.training.run import LocalTrainer

        if self.runtime != "kubernetes":
            return LocalTrainer(self.log.info)
        from airflow_batch_scoring.kubernetes import manifests
        from airflow_batch_scoring.kubernetes.runtime import check_locations
        from airflow_batch_scoring.kubernetes.settings import KubernetesSettings
        from airflow_batch_scoring.kubernetes.training import KubernetesTrainer

        check_locations(("source", source))
        settings = KubernetesSettings.parse(self.kubernetes, kubernetes_conn_id=self.kubernetes_conn_id,
                                            poll_interval=float(self.poll_interval))
        ti = context["ti"]
        map_index = getattr(ti, "map_index", -1)
        suffix = f"[{map_index}]" if map_index is not None and map_index >= 0 else ""
        return KubernetesTrainer(
            settings, name=manifests.job_name(ti.dag_id, ti.task_id, ti.run_id, map_index, kind="training"),
            context=context, task=f"{ti.dag_id}.{ti.task_id}{suffix}/{ti.run_id}", log=self.log.info,
        )

    def _mlflow_settings(self) -> tuple[str | None, str | None, str | None]:
        """The tracking URI, the registry URI and the token (from ``mlflow_conn_id``, else ``mlflow_tracking_uri``)."""
        if not self.mlflow_conn_id:
            return self.mlflow_tracking_uri or None, None, None
        from airflow_batch_scoring.hooks.mlflow import MlflowHook

        settings = MlflowHook(self.mlflow_conn_id).get_settings()
        return settings.tracking_uri, settings.registry_uri, settings.token

    def on_kill(self) -> None:
        if self._trainer is not None:
            self._trainer.kill()
