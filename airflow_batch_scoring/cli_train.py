"""``batch-scoring train``: a training job from a shell, in one local training process, with the scoring command's
source specs.

    batch-scoring train --training mypackage.churn:fit --source s3://data/labeled/ --label-column churned \\
        --register-as churn [--alias challenger] [--data arrow] [--training-kwargs '{"max_iter": 200}']
"""

from __future__ import annotations

import argparse
import json
import sys
import uuid
from collections.abc import Callable
from typing import Any

from airflow_batch_scoring.errors import ConfigurationError


def add_train_command(commands: Any) -> argparse.ArgumentParser:
    """Add ``train`` to the ``batch-scoring`` subcommands."""
    train = commands.add_parser(
        "train", help="fit a model with a training callable on labeled rows; register it in MLflow with an alias"
    )
    train.add_argument("--training", required=True, help="the callable that returns a fitted model: package.module:fn")
    train.add_argument("--source", required=True,
                       help="the labeled rows: a file, folder or glob URI, or a JSON object with the source keys")
    train.add_argument("--label-column", required=True, help="the column of labels (or targets)")
    train.add_argument("--register-as", required=True, help="the registered model's name (a new version is made)")
    train.add_argument("--alias", default="challenger", help="the alias the new version gets (default challenger)")
    train.add_argument("--data", choices=["pandas", "arrow"], default="pandas",
                       help="what the callable receives: one pandas DataFrame, or an iterator of Arrow RecordBatches")
    train.add_argument("--training-kwargs", default=None, help="JSON: further keyword arguments for the callable")
    train.add_argument("--source-format", choices=["csv", "jsonl", "parquet"], default=None)
    train.add_argument("--header", action=argparse.BooleanOptionalAction, default=None,
                       help="CSV: the first line holds the column names")
    train.add_argument("--experiment", default=None, help="the MLflow experiment of the training run")
    train.add_argument("--tracking-uri", default=None, help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI)")
    train.add_argument("--registry-uri", default=None)
    train.add_argument("--batch-size", type=int, default=None, help="rows per Arrow batch read")
    train.add_argument("--storage-options", metavar="FILE",
                       help='a JSON file of fsspec options: {"source": {...}} (credentials stay out of argv)')
    return train


def run_train_command(args: argparse.Namespace, spec: Callable[..., dict[str, Any]]) -> dict[str, Any]:
    """Run ``batch-scoring train`` (``spec`` turns a ``--source``-style value into a spec mapping)."""
    from airflow_batch_scoring.cli_support import read_storage_options
    from airflow_batch_scoring.specs import parse_data_spec
    from airflow_batch_scoring.training.run import LocalTrainer, plan_training, run_training

    def log(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    try:
        kwargs = json.loads(args.training_kwargs) if args.training_kwargs else None
    except ValueError as err:
        raise ConfigurationError(f"--training-kwargs is not a valid JSON object ({err}).") from None
    source = parse_data_spec(spec(args.source, "source", format=args.source_format, header=args.header), "source")
    secrets = read_storage_options(args.storage_options)["source"]
    job = plan_training(
        job_id=f"cli-train-{uuid.uuid4().hex[:12]}", source=source, label_column=args.label_column,
        training=args.training, register_as=args.register_as, alias=args.alias, data=args.data,
        training_kwargs=kwargs, secrets=secrets, tracking_uri=args.tracking_uri, registry_uri=args.registry_uri,
        experiment=args.experiment, batch_size=args.batch_size,
    )
    return run_training(job, LocalTrainer(log), {"source": secrets}, log)
