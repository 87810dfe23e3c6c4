"""What the training process runs: ``python -m airflow_batch_scoring.runtime train --job JOB.json --secrets-stdin``
(a local child process, or the container of a one-pod Job).

It imports the callable, reads the labeled rows, calls it, checks the model, then logs, registers and aliases it; the
last line it prints is ``BATCH_SCORING_RESULT {json}`` (the new version), or, on failure, the usual
``BATCH_SCORING_ERROR {json}``. Everything that can be wrong with the input or the callable fails before anything is
logged to MLflow.

Its secret material (on stdin, or in the mounted Secret's file): ``{"source": {...}, "mlflow": {"token": ...}}``.

Shared with the runtime: never imports Airflow.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable, Mapping
from typing import Any

from airflow_batch_scoring.training.callable import call_training, load_callable
from airflow_batch_scoring.training.data import TrainingData
from airflow_batch_scoring.training.job import TrainingJob, training_tags

#: the prefix of the line a training process prints with its result.
RESULT_MARKER = "BATCH_SCORING_RESULT "
MLFLOW_TOKEN_VARIABLE = "MLFLOW_TRACKING_TOKEN"


def read_training_secrets(from_stdin: bool, path: str | None) -> dict[str, Any]:
    """The process's secret material (empty when there is none)."""
    path = path or os.environ.get("BATCH_SCORING_SECRETS_FILE")
    if from_stdin:
        text = sys.stdin.read()
    elif path:
        with open(path) as f:
            text = f.read()
    else:
        return {}
    return dict(json.loads(text)) if text.strip() else {}


def train(job: TrainingJob, secrets: Mapping[str, Any], log: Callable[[str], None] = print) -> dict[str, Any]:
    """Train, log, register and alias; return the result (model URI, version, run id, rows, digest)."""
    from airflow_batch_scoring.training.registry import find_registered, log_and_register

    started = time.perf_counter()
    token = (secrets.get("mlflow") or {}).get("token")
    if token:
        os.environ[MLFLOW_TOKEN_VARIABLE] = token  # this process's own environment, for MLflow's REST client
    earlier = find_registered(register_as=job.register_as, job_id=job.job_id, digest=job.digest,
                              tracking_uri=job.tracking_uri, registry_uri=job.registry_uri)
    if earlier is not None:  # a retry after the registration: the same version, not a second one
        import mlflow

        client = mlflow.MlflowClient(tracking_uri=job.tracking_uri, registry_uri=job.registry_uri)
        client.set_registered_model_alias(job.register_as, job.alias, earlier["version"])
        log(f"An earlier try of this task registered {job.register_as} version {earlier['version']} from the same "
            f"input: not training again; alias {job.alias!r} set")
        return {**earlier, "alias": job.alias, "train_s": 0.0, "reused": True}
    function = load_callable(job.training)  # before anything is read
    data = TrainingData(job, secrets.get("source"))
    batches = None
    if job.data == "arrow":
        batches = data.batches()
        model = call_training(function, job.training, batches, data.label or job.label_column, job.training_kwargs)
        data.finish(batches)
    else:
        frame = data.frame()
        log(f"Read {data.rows:,} labeled rows ({len(frame.columns)} columns) in {time.perf_counter() - started:.2f}s")
        model = call_training(function, job.training, frame, data.label or job.label_column, job.training_kwargs)
    assert data.label is not None
    trained_s = time.perf_counter() - started
    log(f"{job.training} returned a {type(model).__name__} after {trained_s:.2f}s ({data.rows:,} rows)")
    result = log_and_register(
        model, sample=data.sample_features(), register_as=job.register_as, alias=job.alias,
        tags=training_tags(job.source, data.digest, data.rows, data.label), run_name=job.job_id,
        tracking_uri=job.tracking_uri, registry_uri=job.registry_uri, experiment=job.experiment, log=log,
    )
    return {**result, "rows": data.rows, "digest": data.digest, "label_column": data.label,
            "train_s": round(trained_s, 3)}


def train_command(args: Any) -> int:
    """The ``train`` subcommand."""
    with open(args.job) as f:
        job = TrainingJob.from_json(f.read())
    secrets = read_training_secrets(args.secrets_stdin, args.secrets_file)
    result = train(job, secrets, log=lambda line: print(line, flush=True))
    print(RESULT_MARKER + json.dumps(result), flush=True)
    return 0
