"""``batch-scoring metrics``: a metrics job from a shell, on local replicas, with the scoring command's specs.

    batch-scoring metrics --model models:/churn@champion --source s3://data/labeled/ \\
        --output s3://data/metrics/run-1/ \\
        --label-column churned --protected-attributes gender,region --baseline s3://data/train/ \\
        --thresholds '{"roc_auc": 0.8, "max_psi": 0.2}' --replicas 3
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import uuid
from collections.abc import Mapping
from typing import Any

from airflow_batch_scoring.coercion import to_columns
from airflow_batch_scoring.errors import ConfigurationError

#: the parts of ``--storage-options``: each place's fsspec options (``sink`` is accepted for ``output``).
PLACES = ("source", "baseline", "output")


def add_metrics_command(commands: Any) -> argparse.ArgumentParser:
    """Add ``metrics`` to the ``batch-scoring`` subcommands."""
    metrics = commands.add_parser(
        "metrics", help="score labeled rows and compute efficacy, fairness and drift metrics (metrics.json)"
    )
    metrics.add_argument("--model", required=True, help="models:/name@alias, models:/name/1, runs:/..., a path")
    metrics.add_argument("--source", required=True,
                         help="the labeled rows: a file, folder or glob URI, or a JSON object with the source keys")
    metrics.add_argument("--output", required=True,
                         help="the output folder: scored/, baseline/ and metrics.json go under it")
    metrics.add_argument("--label-column", required=True, help="the column of true labels (or targets)")
    metrics.add_argument("--task", choices=["classification", "regression"], default=None,
                         help="default: told by the model's output signature")
    metrics.add_argument("--positive-label", default=None, help="the positive class (binary curves, fairness)")
    metrics.add_argument("--protected-attributes", default=None, help="columns of groups (comma-separated)")
    metrics.add_argument("--baseline", default=None,
                         help="a reference data set for drift (a source spec), or 'training': the training data "
                         "recorded on the model's MLflow run")
    metrics.add_argument("--thresholds", default=None, help='JSON: {"roc_auc": 0.8, "max_psi": 0.2, ...}')
    metrics.add_argument("--no-probabilities", action="store_true",
                         help="classification: do not ask the model for class probabilities")
    metrics.add_argument("--importance-sample", type=int, default=None,
                         help="labeled rows sampled for the permutation importance (default 2000; 0: none)")
    metrics.add_argument("--importance-repeats", type=int, default=None,
                         help="permutations of each feature (default 5)")
    metrics.add_argument("--importance-seed", type=int, default=0, help="seeds the sample and the permutations")
    metrics.add_argument("--source-format", choices=["csv", "jsonl", "parquet"], default=None)
    metrics.add_argument("--output-format", choices=["csv", "jsonl", "parquet"], default=None,
                         help="the scored rows' format (default parquet)")
    metrics.add_argument("--replicas", type=int, default=1)
    metrics.add_argument("--batch-size", type=int, default=None)
    metrics.add_argument("--input-schema", help='JSON: [{"name": "x", "type": "Float64"}, ...]')
    metrics.add_argument("--tracking-uri", default=None, help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI)")
    metrics.add_argument("--registry-uri", default=None)
    metrics.add_argument("--log-to-mlflow", action="store_true",
                         help="log the metrics to the model version's MLflow run (registry models)")
    metrics.add_argument(
        "--storage-options", metavar="FILE",
        help='a JSON file of fsspec options: {"source": {...}, "baseline": {...}, "output": {...}}',
    )
    return metrics


def read_place_options(path: str | None) -> dict[str, dict[str, Any]]:
    """Each place's storage options from a JSON file (credentials stay out of argv).

    :raises ConfigurationError: for a file that cannot be read or names other places.
    """
    if not path:
        return {place: {} for place in PLACES}
    try:
        with open(path) as f:
            value = json.load(f)
    except (OSError, ValueError) as err:
        raise ConfigurationError(f"Cannot read the storage options file {path!r} ({type(err).__name__}).") from None
    if not isinstance(value, Mapping):
        raise ConfigurationError(f"The storage options file {path!r} must hold a JSON object.")
    value = dict(value)
    if "sink" in value:
        value.setdefault("output", value.pop("sink"))
    unknown = sorted(set(value) - set(PLACES))
    if unknown:
        raise ConfigurationError(f"Unknown key(s) {unknown} in {path!r}: use {', '.join(PLACES)}.")
    return {place: dict(value.get(place) or {}) for place in PLACES}


def run_metrics_command(args: argparse.Namespace, spec: Any) -> dict[str, Any]:
    """Run ``batch-scoring metrics`` (``spec`` turns a ``--source``-style value into a spec mapping)."""
    from airflow_batch_scoring.artifacts import process_model
    from airflow_batch_scoring.driver.local import LocalLauncher
    from airflow_batch_scoring.driver.run import execute_job
    from airflow_batch_scoring.metrics.config import DEFAULT_IMPORTANCE_REPEATS, DEFAULT_IMPORTANCE_SAMPLE
    from airflow_batch_scoring.metrics.run import log_to_mlflow, plan_metrics, run_metrics
    from airflow_batch_scoring.metrics.thresholds import parse_thresholds
    from airflow_batch_scoring.metrics.training_baseline import is_training, training_baseline
    from airflow_batch_scoring.specs import parse_data_spec

    def log(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    try:
        thresholds = parse_thresholds(json.loads(args.thresholds) if args.thresholds else None)
    except ValueError as err:
        if isinstance(err, ConfigurationError):
            raise
        raise ConfigurationError(f"--thresholds is not a valid JSON object ({err}).") from None
    source = parse_data_spec(spec(args.source, "source", format=args.source_format), "source")
    output = parse_data_spec(spec(args.output, "output", format=args.output_format), "sink")
    from_training = is_training(args.baseline)
    baseline = parse_data_spec(spec(args.baseline, "baseline"), "source") if args.baseline and not from_training \
        else None
    places = read_place_options(args.storage_options)

    def run(job: Any, files: Any, credentials: Any) -> dict[str, Any]:
        launcher = LocalLauncher(log)
        try:
            return execute_job(job, files, log=log, launcher=launcher, storage_options=credentials)
        finally:
            launcher.discard()

    with tempfile.TemporaryDirectory(prefix="batch-scoring-model-") as folder:
        model = process_model(args.model, folder, tracking_uri=args.tracking_uri, registry_uri=args.registry_uri)
        training = None
        if from_training:
            training = training_baseline(model, tracking_uri=args.tracking_uri, registry_uri=args.registry_uri)
            baseline = training.spec
        plan = plan_metrics(
            job_id=f"cli-metrics-{uuid.uuid4().hex[:12]}",
            attempt=f"cli-{uuid.uuid4().hex[:8]}",
            model=model,
            source=source,
            output=output,
            label_column=args.label_column,
            task=args.task,
            positive_label=args.positive_label,
            protected_attributes=to_columns(args.protected_attributes, "--protected-attributes"),
            baseline=baseline,
            thresholds=thresholds,
            probabilities=not args.no_probabilities,
            scoring={"replicas": args.replicas, "batch_size": args.batch_size, "input_schema": args.input_schema},
            credentials=places,
            importance_sample=DEFAULT_IMPORTANCE_SAMPLE if args.importance_sample is None else args.importance_sample,
            importance_repeats=(DEFAULT_IMPORTANCE_REPEATS if args.importance_repeats is None
                                else args.importance_repeats),
            importance_seed=args.importance_seed,
            training=training,
        )
        def to_mlflow(summary: dict[str, Any]) -> None:
            if args.log_to_mlflow:
                summary["mlflow_run_id"] = log_to_mlflow(model, summary["metrics"], log,
                                                         tracking_uri=args.tracking_uri, registry_uri=args.registry_uri)

        return run_metrics(plan, run, log, on_metrics=to_mlflow)
