"""The driver's side of a metrics job, for the operator and ``batch-scoring metrics`` alike.

:func:`plan_metrics` prepares the scoring jobs (the labeled source, and the baseline when there is one) before
anything is written; :func:`run_metrics` runs them through a :data:`Runner` (the local replicas, or any runtime),
reads each shard's statistics from the published manifest, merges them, computes the metrics, writes
``metrics.json`` and checks the thresholds. The output folder holds::

    <output>/scored/     the labeled rows' predictions (the label and protected columns beside them), _manifest.json
    <output>/baseline/   the baseline's predictions (when a baseline is given)
    <output>/importance/sample.parquet  the labeled rows the permutation importance took (``importance_sample`` > 0)
    <output>/metrics.json
    <output>/report.html  the same, for people: tables and inline SVG plots (:mod:`.report`)

Never imports Airflow.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from typing import Any

from airflow_batch_scoring.coercion import to_columns
from airflow_batch_scoring.driver.prepare import prepare_job
from airflow_batch_scoring.errors import (
    BatchScoringError,
    ConfigurationError,
    InputError,
    ModelError,
    is_retryable,
)
from airflow_batch_scoring.io.files import InputFile, filesystem
from airflow_batch_scoring.job import ModelSpec, ScoringJob
from airflow_batch_scoring.metrics.config import (
    DEFAULT_IMPORTANCE_REPEATS,
    DEFAULT_IMPORTANCE_SAMPLE,
    TASKS,
    MetricsConfig,
)
from airflow_batch_scoring.metrics.importance import (
    ROW,
    importance_from_scores,
    main_metric,
    permutations,
    top_features,
    write_permuted,
)
from airflow_batch_scoring.metrics.report import REPORT_FILE, render_report
from airflow_batch_scoring.metrics.results import compute_metrics, positive_class
from airflow_batch_scoring.metrics.sample import LABEL
from airflow_batch_scoring.metrics.shard import ShardStats, merge_all
from airflow_batch_scoring.metrics.thresholds import (
    Threshold,
    ThresholdError,
    check_applicable,
    check_thresholds,
    failed_message,
)
from airflow_batch_scoring.metrics.training_baseline import TrainingBaseline, input_digest
from airflow_batch_scoring.options import ScoringOptions
from airflow_batch_scoring.runtime.secrets import Credentials
from airflow_batch_scoring.schema import ModelSchema
from airflow_batch_scoring.specs import DataSpec, FileSpec

METRICS_FILE = "metrics.json"
#: runs one prepared job to its publish and returns the summary (``execute_job`` through a launcher, or a runtime).
Runner = Callable[[ScoringJob, list[InputFile], Credentials], dict[str, Any]]


@dataclass(frozen=True)
class PlannedJob:
    """One prepared scoring job of a metrics run: ``role`` is ``"labeled"`` or ``"baseline"``."""

    role: str
    job: ScoringJob
    files: list[InputFile]
    credentials: Credentials


@dataclass(frozen=True)
class ImportancePlan:
    """The permutation importance's scoring job, prepared once the sample is known: its options, its folder
    (``<output>/importance/``) and its names."""

    options: ScoringOptions
    folder: str
    job_id: str
    attempt: str
    credentials: Credentials


@dataclass(frozen=True)
class MetricsPlan:
    """The metrics run, prepared: its jobs and where ``metrics.json`` goes."""

    labeled: PlannedJob
    baseline: PlannedJob | None
    config: MetricsConfig
    positive_label: Any
    thresholds: list[Threshold]
    metrics_uri: str
    output: FileSpec
    importance: ImportancePlan | None = None
    #: ``baseline="training"``: the training data as the model's run recorded it (the baseline is its source).
    training: TrainingBaseline | None = None


def infer_task(task: str | None, model: ModelSpec) -> str:
    """The task given, else the one the model's output schema tells (a float output: regression; an integer, text or
    boolean one: classification).

    :raises ConfigurationError: for an unknown task, or when the model does not tell.
    """
    if task:
        if task not in TASKS:
            raise ConfigurationError(f"task must be one of {TASKS}, got {task!r}.")
        return task
    schema = ModelSchema.parse(model.output_schema)
    if schema is not None and len(schema.columns) == 1:
        kind = schema.columns[0].type.value
        return "regression" if kind.startswith("Float") else "classification"
    told = _signature_task(model)
    if told is not None:
        return told
    raise ConfigurationError(
        f"Cannot tell from the model {model.uri!r} whether it is a classifier or a regression model (it has no "
        "output signature with one column); give task='classification' or task='regression'."
    )


def _signature_task(model: ModelSpec) -> str | None:
    """The task an MLflow model's output signature tells (one output, a tensor or a column): floats are a
    regression's, integers, text and booleans a classifier's; ``None`` when it does not tell."""
    import os

    if model.flavor != "mlflow" or not os.path.isfile(os.path.join(model.path, "MLmodel")):
        return None
    from mlflow.models import Model

    try:
        signature = Model.load(os.path.join(model.path, "MLmodel")).signature
        outputs = signature.outputs.inputs if signature is not None and signature.outputs is not None else []
    except Exception:  # an unreadable signature tells nothing
        return None
    if len(outputs) != 1:
        return None
    spec_type = getattr(outputs[0], "type", None)
    code = getattr(spec_type, "kind", None)  # a tensor's numpy dtype
    if isinstance(code, str):
        return "regression" if code == "f" else "classification" if code in "iubUSO" else None
    kind = str(spec_type).lower()
    if "float" in kind or "double" in kind:
        return "regression"
    if any(word in kind for word in ("integer", "long", "string", "boolean")):
        return "classification"
    return None


def output_places(output: DataSpec) -> tuple[FileSpec, FileSpec, str]:
    """The scored rows' folder, the baseline's folder and ``metrics.json``'s URI under the output folder.

    :raises ConfigurationError: when the output is not a folder of files.
    """
    if not isinstance(output, FileSpec):
        raise ConfigurationError(
            "The metrics output must be a folder ({'uri': 's3://bucket/metrics/run-1/'} or a URI): metrics.json and "
            "the scored rows are files; not a SQL table."
        )
    root = output.uri.rstrip("/")
    fmt = output.format or "parquet"
    return (replace(output, uri=f"{root}/scored/", format=fmt), replace(output, uri=f"{root}/baseline/", format=fmt),
            f"{root}/{METRICS_FILE}")


def plan_metrics(
    *,
    job_id: str,
    attempt: str,
    model: ModelSpec,
    source: DataSpec,
    output: DataSpec,
    label_column: str,
    task: str | None,
    positive_label: Any = None,
    protected_attributes: Sequence[str] | str | None = None,
    baseline: DataSpec | None = None,
    thresholds: list[Threshold] | None = None,
    probabilities: bool = True,
    scoring: Mapping[str, Any] | None = None,
    credentials: Mapping[str, Mapping[str, Any]] | None = None,
    importance_sample: Any = DEFAULT_IMPORTANCE_SAMPLE,
    importance_repeats: Any = DEFAULT_IMPORTANCE_REPEATS,
    importance_seed: Any = 0,
    training: TrainingBaseline | None = None,
) -> MetricsPlan:
    """List, plan and check every input before anything runs or is written.

    :param scoring: further :class:`ScoringOptions` (``replicas``, ``batch_size``, ``input_schema``, ``part_size``,
        ...), as for scoring.
    :param probabilities: classification: ask the model for class probabilities (ROC, PR, log loss, calibration).
    :param credentials: ``{"source": ..., "baseline": ..., "output": ...}`` secret material of each place.
    :param importance_sample: the labeled rows the permutation importance samples (``0``: none).
    :param importance_repeats: the permutations of each feature; ``importance_seed`` seeds them and the sample.
    :param training: ``baseline="training"`` resolved (:func:`.training_baseline.training_baseline`): ``baseline``
        is its source; the label column it records is left out of the drift and its digest checked.
    :raises ConfigurationError: for a wrong setting (naming it); a baseline that does not fit is named as such.
    """
    secrets = credentials or {}
    task = infer_task(task, model)
    config = MetricsConfig.parse(label_column=label_column, task=task, protected_attributes=protected_attributes,
                                 profile=baseline is not None, importance_sample=importance_sample,
                                 importance_repeats=importance_repeats, importance_seed=importance_seed)
    if config.protected_attributes and task == "regression":
        raise ConfigurationError(
            "Fairness metrics compare how often each group is predicted a class: they need task='classification'; "
            "leave protected_attributes out for a regression."
        )
    check_applicable(thresholds or [], task=task, fairness=bool(config.protected_attributes),
                     drift=baseline is not None)
    scored_sink, baseline_sink, metrics_uri = output_places(output)
    extra = dict(scoring or {})
    asked = to_columns(extra.pop("passthrough_columns", None), "passthrough_columns") or []
    passthrough = [label_column, *config.protected_attributes]
    passthrough += [c for c in asked if c.lower() not in {p.lower() for p in passthrough}]
    probabilities = probabilities and task == "classification"

    def options(columns: list[str]) -> ScoringOptions:
        return ScoringOptions.parse(passthrough_columns=columns, predict_probabilities=probabilities, **extra)

    def planned(role: str, spec: DataSpec, sink: FileSpec, columns: list[str], metrics: MetricsConfig) -> PlannedJob:
        creds = Credentials(source=secrets.get(role if role == "baseline" else "source"), sink=secrets.get("output"))
        job, files = prepare_job(job_id=f"{job_id}.{role}", attempt=attempt, model=model, source=spec, sink=sink,
                                 options=options(columns), storage_options=creds)
        return PlannedJob(role, replace(job, metrics=metrics.to_dict()), files, creds)

    try:
        labeled = planned("labeled", source, scored_sink, passthrough, config)
    except InputError as err:
        raise _metrics_column_error(err, config) from err
    base = None
    if baseline is not None:
        profile_only = replace(config, label_column=None, protected_attributes=(), profile=True, importance_sample=0)
        with _as_baseline_error(baseline):
            base = planned("baseline", baseline, baseline_sink, [], profile_only)
    importance = None
    if config.importance_sample:
        importance = ImportancePlan(
            options([ROW]), f"{metrics_uri.rsplit('/', 1)[0]}/importance", f"{job_id}.importance", attempt,
            Credentials(source=secrets.get("output"), sink=secrets.get("output")),
        )
    return MetricsPlan(labeled, base, config, positive_label, list(thresholds or []), metrics_uri, scored_sink,
                       importance, training if base is not None else None)


class _as_baseline_error:
    """Name the baseline in an error only the user can fix (a retryable one stays as it is)."""

    def __init__(self, baseline: DataSpec):
        self.baseline = baseline

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: Any, err: BaseException | None, tb: Any) -> None:
        if isinstance(err, BatchScoringError) and not is_retryable(err):
            where = getattr(self.baseline, "uri", None) or getattr(self.baseline, "table", None) or "the baseline"
            raise ConfigurationError(
                f"The baseline {where} does not fit the model: {err} The baseline must hold the model's input columns "
                "(as the source does); give a baseline with the same columns."
            ) from err


def _classification_model_error(err: ModelError, config: MetricsConfig) -> BaseException:
    if config.task == "classification" and "predict_proba" in str(err):
        return ConfigurationError(
            f"task='classification' needs the model's class probabilities, but: {err} If it is a regression model, "
            "use task='regression'; a classifier without probabilities: probabilities=False."
        )
    return err


def _metrics_column_error(err: InputError, config: MetricsConfig) -> InputError:
    """A missing label or protected column is named as such (the engine knows them as passthrough columns)."""
    text = str(err)
    found = re.search(r"column '([^']+)': the passthrough column is missing", text)
    if found is None:
        return err
    column = found[1]
    role = "label_column" if column.lower() == (config.label_column or "").lower() else "protected_attributes"
    text = text.replace("the passthrough column is missing", f"the {role} column is missing")
    text = text.split(" Fix passthrough_columns")[0] + f" Fix {role} (or source['columns'] for a CSV without header)."
    return InputError(text)


def _shard_metrics(summary: Mapping[str, Any], secrets: Mapping[str, Any] | None) -> tuple[dict[str, Any], Any]:
    """The published manifest and the merged statistics of its shards."""
    fs, path = filesystem(summary["manifest_uri"], secrets)
    with fs.open(path, "r") as f:
        manifest = json.load(f)
    return manifest, merge_all([shard["metrics"] for shard in manifest["shards"]])


def _unpublish(uris: list[str], secrets: Mapping[str, Any] | None, log: Callable[[str], None]) -> None:
    """Remove what this run published before it failed (best effort)."""
    for uri in uris:
        try:
            fs, path = filesystem(uri, secrets)
            fs.rm(path.rstrip("/"), recursive=True)
            log(f"Removed {uri}: the metrics run failed after publishing it")
        except Exception as err:  # the original error matters more
            log(f"Could not remove {uri} ({type(err).__name__}); remove it by hand")


def run_metrics(
    plan: MetricsPlan,
    run: Runner,
    log: Callable[[str], None] = print,
    on_metrics: Callable[[dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """Score the labeled rows (and the baseline), merge the shards' statistics, write ``metrics.json`` and check
    the thresholds; return the task's summary.

    :param on_metrics: called with the summary once ``metrics.json`` is written, before a missed threshold fails
        the run (to log the metrics to MLflow either way).
    :raises ThresholdError: when a metric misses its threshold (``metrics.json`` is written first).
    """
    started = datetime.now(timezone.utc)
    baseline_profile = baseline_section = None
    published: list[str] = []
    try:
        if plan.baseline is not None:  # first: a baseline that does not fit fails before anything is published
            with _as_baseline_error(plan.baseline.job.source):
                baseline_summary = run(plan.baseline.job, plan.baseline.files, plan.baseline.credentials)
            published.append(baseline_summary["output_uri"])
            baseline_manifest, baseline_stats = _shard_metrics(baseline_summary, plan.baseline.credentials["sink"])
            baseline_profile = baseline_stats.profile
            baseline_section = {"input": baseline_manifest["input"], "output_uri": baseline_summary["output_uri"],
                                "rows": baseline_stats.rows, "digest": input_digest(plan.baseline.files)}
            if plan.training is not None:
                baseline_section["training"] = _check_training(plan, plan.training, log)
                for name in {plan.training.label_column, plan.config.label_column} - {None}:
                    for column in [c for c in baseline_profile.columns if c.lower() == str(name).lower()]:
                        del baseline_profile.columns[column]  # the label is no feature to drift
        try:
            labeled_summary = run(plan.labeled.job, plan.labeled.files, plan.labeled.credentials)
        except ModelError as err:
            raise _classification_model_error(err, plan.config) from err
        except InputError as err:
            raise _metrics_column_error(err, plan.config) from err
        published.append(labeled_summary["output_uri"])
        manifest, stats = _shard_metrics(labeled_summary, plan.labeled.credentials["sink"])
        document = compute_metrics(stats, positive_label=plan.positive_label, baseline=baseline_profile)
        if plan.importance is not None and stats.sample is not None and stats.sample.rows >= 2:
            document["importance"] = _importance(plan, plan.importance, stats, run, log, published)
    except BaseException:
        _unpublish(published, plan.labeled.credentials["sink"], log)  # nothing stays published of a failed run
        raise
    outcomes = check_thresholds(plan.thresholds, document["summary"])
    failure = failed_message(outcomes, plan.metrics_uri)
    record = {
        "metrics_format": 1,
        "job_id": manifest["job_id"],
        "attempt": manifest["attempt"],
        "package_version": manifest["package_version"],
        "runtime": manifest["runtime"],
        "runtime_image": manifest.get("runtime_image"),
        "model": manifest["model"],
        "input": manifest["input"],
        "input_schema": manifest["input_schema"],
        "schema_hash": manifest["schema_hash"],
        "replicas": manifest["replicas"],
        "scored_output": labeled_summary["output_uri"],
        "manifest_uri": labeled_summary["manifest_uri"],
        "baseline": baseline_section,
        "protected_attributes": list(plan.config.protected_attributes),
        "started_at": started.isoformat(),
        "finished_at": datetime.now(timezone.utc).isoformat(),
        **document,
        "thresholds": outcomes,
        "passed": failure is None,
    }
    report_uri = plan.metrics_uri.rsplit("/", 1)[0] + f"/{REPORT_FILE}"
    record["report_uri"] = report_uri
    fs, path = filesystem(plan.metrics_uri, plan.labeled.credentials["sink"])
    with fs.open(path, "w") as f:
        json.dump(record, f, indent=1, default=str)
    fs, path = filesystem(report_uri, plan.labeled.credentials["sink"])
    with fs.open(path, "w") as f:
        f.write(render_report(json.loads(json.dumps(record, default=str))))
    log(f"Metrics of {stats.rows:,} rows written to {plan.metrics_uri}: " + ", ".join(
        f"{k}={v:.4g}" for k, v in document["summary"].items() if isinstance(v, float)))
    summary = {
        "metrics_uri": plan.metrics_uri,
        "report_uri": report_uri,
        "output_uri": labeled_summary["output_uri"],
        "rows": stats.rows,
        "rows_without_label": stats.rows_without_label,
        "task": plan.config.task,
        "model_uri": labeled_summary["model_uri"],
        "model_version": labeled_summary["model_version"],
        "model_digest": labeled_summary["model_digest"],
        "metrics": {k: v for k, v in document["summary"].items() if v is not None},
        "top_features": top_features(document.get("importance")),
        "thresholds": outcomes,
        "passed": failure is None,
    }
    if on_metrics is not None:
        on_metrics(summary)
    if failure is not None:
        raise ThresholdError(failure)
    return summary


def _check_training(plan: MetricsPlan, training: TrainingBaseline, log: Callable[[str], None]) -> dict[str, Any]:
    """The training baseline's record for ``metrics.json``; warn when its data changed since the training."""
    assert plan.baseline is not None
    now = input_digest(plan.baseline.files)
    matches = None if now is None or training.digest is None else now == training.digest
    where = getattr(training.spec, "uri", None) or getattr(training.spec, "table", None) or "the training source"
    if matches is False:
        log(f"WARNING: the training data {where} changed since the model was trained (its digest was "
            f"{training.digest}, it is {now} now): the drift is measured against the data as it is now.")
    elif matches is None:
        log(f"The training data {where} has no listing to compare with the digest recorded at training time; "
            "its drift is measured against it as it is now.")
    return {**training.describe(), "digest_now": now, "digest_matches": matches}


def _importance(
    plan: MetricsPlan, importance: ImportancePlan, stats: ShardStats, run: Runner, log: Callable[[str], None],
    published: list[str],
) -> dict[str, Any]:
    """Write the merged sample and its shuffled copies under the importance folder, score them as a plain scoring
    job, and compute the permutation importance (the shuffled copies and their predictions are removed after)."""
    import pyarrow.parquet as pq

    config = plan.config
    label_column = config.label_column
    assert stats.sample is not None and stats.sample.table is not None and label_column is not None
    sample = stats.sample.table
    secrets = importance.credentials["sink"]
    keep = sample.rename_columns([
        label_column if name == LABEL and label_column not in sample.column_names else name
        for name in sample.column_names
    ])
    sample_uri = f"{importance.folder}/sample.parquet"
    fs, path = filesystem(sample_uri, secrets)
    fs.makedirs(path.rsplit("/", 1)[0] + "/input", exist_ok=True)  # a local folder must exist; a bucket: nothing
    published.append(importance.folder + "/")
    with fs.open(path, "wb") as f:
        pq.write_table(keep, f)
    orders = permutations(sample.num_rows, config.importance_repeats, config.importance_seed)
    rows = write_permuted(sample, orders, f"{importance.folder}/input/permuted.parquet", secrets)
    log(f"Permutation importance: {sample.num_rows:,} sampled rows, {sample.num_columns - 1} feature(s) x "
        f"{config.importance_repeats} repeat(s): scoring {rows:,} rows")
    job, files = prepare_job(
        job_id=importance.job_id, attempt=importance.attempt, model=plan.labeled.job.model,
        source=FileSpec(uri=f"{importance.folder}/input/", format="parquet", conn_id=plan.output.conn_id),
        sink=FileSpec(uri=f"{importance.folder}/scored/", format="parquet", conn_id=plan.output.conn_id),
        options=importance.options, storage_options=importance.credentials,
    )
    summary = run(job, files, importance.credentials)
    fs, path = filesystem(summary["output_uri"], secrets)
    outputs = pq.read_table(path.rstrip("/"), filesystem=fs)
    binary = stats.classification is not None and len(
        {k for pair in stats.classification.confusion for k in pair} | set(stats.classification.classes or ())) == 2
    positive = positive_class(stats, plan.positive_label) if stats.classification is not None else None
    probabilities = job.predict_probabilities and any(n.startswith("probability_") for n in outputs.column_names)
    found = importance_from_scores(
        outputs, sample, metric=main_metric(config.task, positive, binary, probabilities), positive=positive,
        label_column=label_column, repeats=config.importance_repeats,
    )
    found.update(seed=config.importance_seed, sample_uri=sample_uri)
    for folder in ("input", "scored"):
        fs, path = filesystem(f"{importance.folder}/{folder}", secrets)
        fs.rm(path, recursive=True)
    return found


def log_to_mlflow(
    model: ModelSpec,
    metrics: Mapping[str, Any],
    log: Callable[[str], None] = print,
    *,
    tracking_uri: str | None = None,
    registry_uri: str | None = None,
) -> str | None:
    """Log the scalar metrics to the run of the model's registry version (names prefixed ``batch_metrics.``);
    return the run id, or ``None`` when the model did not come from a registry run.
    """
    run_id = (model.source_metadata or {}).get("run_id")
    if not run_id:
        return None
    from mlflow import MlflowClient
    from mlflow.entities import Metric

    stamp = int(datetime.now(timezone.utc).timestamp() * 1000)
    entries = [Metric(f"batch_metrics.{k}", float(v), stamp, 0) for k, v in metrics.items()
               if isinstance(v, (int, float)) and not isinstance(v, bool)]
    if entries:
        MlflowClient(tracking_uri=tracking_uri, registry_uri=registry_uri).log_batch(run_id, metrics=entries)
        log(f"Logged {len(entries)} metric(s) to the MLflow run {run_id} of {model.resolved_uri or model.uri}")
    return run_id
