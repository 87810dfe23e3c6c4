"""BatchMetricsOperator: a model's efficacy, fairness and drift over labeled data, scored by the scoring engine."""

from __future__ import annotations

import dataclasses
import os
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from airflow_batch_scoring.errors import ConfigurationError
from airflow_batch_scoring.hooks.data import credentials_for, data_access
from airflow_batch_scoring.links import (
    MetricsReportLink,
    ModelVersionLink,
    OutputLocationLink,
)
from airflow_batch_scoring.metrics.config import DEFAULT_IMPORTANCE_REPEATS, DEFAULT_IMPORTANCE_SAMPLE
from airflow_batch_scoring.metrics.report import REPORT_FILE
from airflow_batch_scoring.metrics.run import output_places
from airflow_batch_scoring.operators.batch_scoring import BatchScoringOperator
from airflow_batch_scoring.operators.failures import no_retry_for_user_errors
from airflow_batch_scoring.operators.process_artifact import fetch_processed_model
from airflow_batch_scoring.operators.runtimes import ResolvedTask, runtime_for
from airflow_batch_scoring.options import DEFAULT_BATCH_SIZE
from airflow_batch_scoring.specs import parse_data_spec

if TYPE_CHECKING:
    from airflow.sdk import Context

    from airflow_batch_scoring.io.files import InputFile
    from airflow_batch_scoring.job import ScoringJob
    from airflow_batch_scoring.runtime.secrets import Credentials


class BatchMetricsOperator(BatchScoringOperator):
    """Score labeled rows with a model and compute its metrics: efficacy, fairness per protected attribute and drift
    against a baseline, in memory bounded by the metrics (each replica gathers mergeable statistics over its shard;
    the task merges them).

    The output folder gets ``scored/`` (the predictions, with the label and protected columns), ``baseline/`` (the
    baseline's predictions, when there is a baseline) and ``metrics.json`` (every metric, the thresholds' outcomes,
    the model's digest and version, the input and the run's identity). The task's XCom is a summary (the scalar
    metrics, the thresholds, where ``metrics.json`` is). When the model came from an MLflow registry, the metrics are
    logged to its version's run (``batch_metrics.<name>``). A missed threshold fails the task, without retries.

    :param model: as for :class:`BatchScoringOperator` (a registry alias, version, run, folder or file). (templated)
    :param source: the labeled rows: any source of :class:`BatchScoringOperator`. (templated)
    :param output: the output folder (a URI or ``{"uri": ..., "format": ..., "conn_id": ...}``; the scored rows'
        format defaults to Parquet). (templated)
    :param label_column: the column of true labels (classes, or a regression's targets). (templated)
    :param task: ``"classification"`` or ``"regression"``; default: told by the model's output signature.
        (templated)
    :param positive_label: the positive class of a binary problem (default: the larger of the two, as ``1`` of
        ``0``/``1``); fairness metrics need it for more than two classes. (templated)
    :param protected_attributes: columns of groups the fairness metrics compare. (templated)
    :param baseline: a reference data set for drift: a source spec, or ``"training"``: the training data recorded
        on the model version's MLflow run by the training job (the model must come from a registry or a run; the
        credentials come from the connection its spec names; its label column is left out; a warning when the data
        changed since). (templated)
    :param thresholds: ``{"roc_auc": 0.8, "f1_macro": 0.7, "max_psi": 0.2, ...}``: a score at least, a loss or gap
        at most (``{"min": x}``/``{"max": x}`` to say it). (templated)
    :param probabilities: classification: ask the model for class probabilities (ROC and PR curves, log loss,
        calibration); ``False`` for a classifier without ``predict_proba``.
    :param log_to_mlflow: log the metrics to the model version's MLflow run (registry models only).
    :param importance_sample: the labeled rows (a uniform sample, merged over the replicas) on which the permutation
        importance of each feature is computed; ``0`` switches it off. (templated)
    :param importance_repeats: the permutations of each feature (the importance is their mean, with its standard
        deviation). (templated)
    :param importance_seed: seeds the sample and the permutations.

    The task's extra links: the output folder, the model version, and the metrics report (``report.html``: tables and
    inline SVG plots, no script).
    :param batch_size: as for scoring. (templated)
    :param replicas: as for scoring. (templated)
    :param runtime: ``"local"`` or ``"kubernetes"``, as for scoring; a metrics task waits for its pods (it does not
        defer).

    The other keyword arguments (``mlflow_conn_id``, ``input_schema``, ``kubernetes``, ``stage``, ...) are
    :class:`BatchScoringOperator`'s.
    """

    template_fields: Sequence[str] = (
        *BatchScoringOperator.template_fields,  # ``sink`` holds ``output`` (``BaseOperator.output`` is the XCom)
        "label_column",
        "task",
        "positive_label",
        "protected_attributes",
        "baseline",
        "thresholds",
        "importance_sample",
        "importance_repeats",
    )
    template_fields_renderers = {
        **BatchScoringOperator.template_fields_renderers, "baseline": "json", "thresholds": "json",
    }
    ui_color = "#e8daef"
    operator_extra_links = (OutputLocationLink(), ModelVersionLink(), MetricsReportLink())  # type: ignore[assignment]

    def __init__(
        self,
        *,
        model: str,
        source: Mapping[str, Any] | str,
        output: Mapping[str, Any] | str,
        label_column: str,
        task: str | None = None,
        positive_label: Any = None,
        protected_attributes: Sequence[str] | str | None = None,
        baseline: Mapping[str, Any] | str | None = None,
        thresholds: Mapping[str, Any] | None = None,
        probabilities: bool = True,
        log_to_mlflow: bool = True,
        importance_sample: int | str = DEFAULT_IMPORTANCE_SAMPLE,
        importance_repeats: int | str = DEFAULT_IMPORTANCE_REPEATS,
        importance_seed: int = 0,
        batch_size: int | str = DEFAULT_BATCH_SIZE,
        **kwargs: Any,
    ) -> None:
        if "sink" in kwargs:
            raise ConfigurationError("BatchMetricsOperator writes to output=, not sink=.")
        super().__init__(model=model, source=source, sink=output, batch_size=batch_size, **kwargs)
        self.label_column = label_column
        self.task = task
        self.positive_label = positive_label
        self.protected_attributes = protected_attributes
        self.baseline = baseline
        self.thresholds = thresholds
        self.probabilities = probabilities
        self.log_to_mlflow = log_to_mlflow
        self.importance_sample = importance_sample
        self.importance_repeats = importance_repeats
        self.importance_seed = importance_seed
        if thresholds is not None and "{{" not in str(thresholds):
            from airflow_batch_scoring.metrics.thresholds import parse_thresholds

            parse_thresholds(thresholds)  # an unknown metric fails at parse time

    def render_template_fields(self, context: Context, jinja_env: Any = None) -> None:
        super().render_template_fields(context, jinja_env)
        from airflow_batch_scoring.hooks.storage import mask_uri_credentials

        mask_uri_credentials([self.baseline])

    def _resolve(self, context: Context) -> ResolvedTask:
        # a metrics task runs its jobs one after the other and merges them: it waits, it never defers
        return dataclasses.replace(super()._resolve(context), deferrable=False)

    def execute(self, context: Context) -> dict[str, Any]:
        with no_retry_for_user_errors():
            return self._metrics(context)

    def _metrics(self, context: Context) -> dict[str, Any]:
        from airflow_batch_scoring.artifacts import process_model
        from airflow_batch_scoring.links import LINKS_ATTRIBUTE
        from airflow_batch_scoring.metrics.run import log_to_mlflow, plan_metrics, run_metrics
        from airflow_batch_scoring.metrics.thresholds import parse_thresholds
        from airflow_batch_scoring.metrics.training_baseline import is_training, training_baseline

        setattr(self, LINKS_ATTRIBUTE, {})
        task = self._resolve(context)
        source = parse_data_spec(self.source, "source")
        output = parse_data_spec(self.sink, "sink")
        from_training = is_training(self.baseline)
        baseline = parse_data_spec(self.baseline, "source") if self.baseline and not from_training else None
        thresholds = parse_thresholds(self.thresholds)
        probe = runtime_for(task, context, self.log.info)
        probe.check_locations(source, output)  # before the model is fetched
        if baseline is not None:
            probe.check_locations(baseline, output)
        probe.close()
        credentials = {"source": credentials_for(source), "output": credentials_for(output)}
        if baseline is not None:
            credentials["baseline"] = credentials_for(baseline)
        OutputLocationLink.persist(context, data_access(output).location(output, credentials["output"]))
        report = dataclasses.replace(output, uri=output_places(output)[2].rsplit("/", 1)[0] + f"/{REPORT_FILE}")
        MetricsReportLink.persist(context, data_access(report).location(report, credentials["output"]))
        scoring = {
            "replicas": task.replicas, "batch_size": self.batch_size, "input_schema": self.input_schema,
            "schema_check": self.schema_check, "part_size": self.part_size,
            "write_concurrency": self.write_concurrency, "passthrough_columns": self.passthrough_columns,
        }
        work = tempfile.mkdtemp(prefix="batch-metrics-")
        try:
            with self._mlflow() as (tracking_uri, registry_uri):
                model = process_model(
                    fetch_processed_model(task.model, os.path.join(work, "processed")),
                    os.path.join(work, "model"), tracking_uri=tracking_uri, registry_uri=registry_uri,
                )
                ModelVersionLink.persist(context, model, tracking_uri, registry_uri)
                training = None
                if from_training:
                    training = training_baseline(model, tracking_uri=tracking_uri, registry_uri=registry_uri)
                    baseline = training.spec
                    probe = runtime_for(task, context, self.log.info)
                    try:
                        probe.check_locations(baseline, output)
                    finally:
                        probe.close()
                    credentials["baseline"] = credentials_for(baseline)
                plan = plan_metrics(
                    job_id=self._job_id(context), attempt=f"try{context['ti'].try_number}", model=model,
                    source=source, output=output, label_column=self.label_column, task=self.task or None,
                    positive_label=self.positive_label, protected_attributes=self.protected_attributes,
                    baseline=baseline, thresholds=thresholds, probabilities=bool(self.probabilities),
                    scoring=scoring, credentials=credentials, importance_sample=self.importance_sample,
                    importance_repeats=self.importance_repeats, importance_seed=self.importance_seed,
                    training=training,
                )

                def run(job: ScoringJob, files: list[InputFile], options: Credentials) -> dict[str, Any]:
                    runtime = self._runtime = runtime_for(task, context, self.log.info)
                    try:
                        runtime.prepare(model, probabilities=job.predict_probabilities,
                                        output_schema=job.output_model_schema())
                        return runtime.run(job, files, options)
                    finally:
                        runtime.close()
                        self._runtime = None

                def to_mlflow(summary: dict[str, Any]) -> None:
                    if self.log_to_mlflow:
                        summary["mlflow_run_id"] = log_to_mlflow(
                            model, summary["metrics"], self.log.info, tracking_uri=tracking_uri,
                            registry_uri=registry_uri,
                        )

                return run_metrics(plan, run, self.log.info, on_metrics=to_mlflow)
        finally:
            shutil.rmtree(work, ignore_errors=True)

    def execute_complete(self, context: Context, event: dict[str, Any] | None = None, **kwargs: Any) -> dict[str, Any]:
        raise ConfigurationError("A metrics task never defers; it resumed, which it cannot do: clear it.")
