"""The runtime's command line: ``run-shard`` scores one shard of a ScoringJob given as JSON; ``train`` runs a
TrainingJob (:mod:`airflow_batch_scoring.training.process`).

``--shard`` defaults to ``JOB_COMPLETION_INDEX`` (set by a Kubernetes Indexed Job); with ``--shards 1,3`` the pod of
completion index ``i`` scores the i-th listed shard (a retry re-runs only the shards that did not finish). Credentials
come from stdin (``--secrets-stdin``, local replicas) or from a file (``--secrets-file``, a mounted Kubernetes Secret).
A model staged on an object store (``model.path`` is a URI) is downloaded and its digest checked before it is loaded.
With ``--await-job`` (a replica the local runtime prestarts) the model to load comes as JSON on stdin's first line,
then the job file, shard and credentials on its second; the runtime is imported before the first line is read, so a
replica started before its model is known imports it meanwhile.
Every error prints one ``BATCH_SCORING_ERROR {json}`` line for the launcher (its class, message, and whether a retry
can help). Errors a retry cannot change (a setting, the schema, bad input, the model) exit with code 2, which the
Kubernetes pod failure policy does not retry and the operators turn into a failure without retries; a store that
could not be reached, and anything unexpected (with a traceback), exit 1.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tempfile
import traceback
from dataclasses import replace

from airflow_batch_scoring.errors import BatchScoringError, ConfigurationError, is_retryable, is_unreachable
from airflow_batch_scoring.job import ScoringJob
from airflow_batch_scoring.runtime.protocol import ERROR_MARKER
from airflow_batch_scoring.runtime.remote_model import fetch_model, is_remote
from airflow_batch_scoring.runtime.secrets import Credentials, read_secrets
from airflow_batch_scoring.runtime.staged_documents import read_document


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m airflow_batch_scoring.runtime", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run-shard", help="score one shard of a ScoringJob")
    run.add_argument("--job", default=None, help="path of the ScoringJob JSON")
    run.add_argument("--shard", type=int, default=None, help="shard index (default: $JOB_COMPLETION_INDEX)")
    run.add_argument("--shards", default=None, help="shard numbers by completion index, e.g. '1,3' (a partial re-run)")
    run.add_argument("--secrets-stdin", action="store_true", help="read storage options as JSON from stdin")
    run.add_argument("--secrets-file", default=None, help="read storage options as JSON from this file")
    run.add_argument(
        "--await-job", action="store_true",
        help="load the model named on stdin's first line, then score the job and shard its second line names "
        "(a replica the local runtime starts early; an empty second line exits)",
    )
    run.add_argument("--progress-interval", type=float, default=float(os.environ.get("BATCH_SCORING_PROGRESS_S", 10)))
    train = commands.add_parser("train", help="run a TrainingJob: fit, log, register and alias a model")
    train.add_argument("--job", required=True, help="path of the TrainingJob JSON")
    train.add_argument("--secrets-stdin", action="store_true", help="read the secret material as JSON from stdin")
    train.add_argument("--secrets-file", default=None, help="read the secret material as JSON from this file")
    return parser


#: the exit code of an error a retry cannot change (the Kubernetes pod failure policy fails the index at once).
USER_ERROR_EXIT = 2

#: a prestarted replica prints this once its model is loaded.
PRELOADED_LINE = "model loaded"


def _emit(line: str) -> None:
    print(line, flush=True)


def run_shard_command(args: argparse.Namespace) -> int:
    from airflow_batch_scoring.runtime.engine import run_shard

    if args.await_job:
        return run_prestarted(args)
    if not args.job:
        raise ConfigurationError("run-shard needs --job PATH (or --await-job).")
    shard = shard_of(args.shard, args.shards, os.environ.get("JOB_COMPLETION_INDEX"))
    secrets = read_secrets(args.secrets_stdin, args.secrets_file)
    with open(args.job) as f:
        job = ScoringJob.from_json(read_document(f.read(), secrets.get("sink")))  # a large plan: staged
    if not is_remote(job.model.path):
        run_shard(job, shard, storage_options=secrets, log=_emit, progress_interval=args.progress_interval,
                  freeze_after_load=True)
        return 0
    with tempfile.TemporaryDirectory(prefix="batch-scoring-model-") as folder:
        local = replace(job.model, path=fetch_model(job.model.path, secrets.get("sink"), folder, job.model.digest))
        job = replace(job, model=local)  # the model as fetched into this pod
        run_shard(job, shard, storage_options=secrets, log=_emit, progress_interval=args.progress_interval,
                  freeze_after_load=True)
    return 0


def run_prestarted(args: argparse.Namespace) -> int:
    """Load the model now (first line of stdin), then score the shard the second line names, if any."""
    import pandas  # noqa: F401  (every built-in flavour but ONNX and MOJO hands its model a DataFrame)

    from airflow_batch_scoring.job import ModelSpec
    from airflow_batch_scoring.runtime.engine import Preloaded, freeze_heap, run_shard
    from airflow_batch_scoring.schema import ModelSchema

    first = sys.stdin.readline()
    if not first.strip():
        return 0  # started early, and not needed after all (the job failed before its model was known)
    preload = json.loads(first)
    if "model" not in preload:
        raise ConfigurationError("--await-job expects the model to load as JSON on stdin's first line.")
    loaded = Preloaded.load(
        ModelSpec(**preload["model"]),
        probabilities=bool(preload.get("probabilities")),
        output_schema=ModelSchema.parse(preload.get("output_schema")),
    )
    freeze_heap()  # the modules and the model live as long as this replica
    _emit(f"{PRELOADED_LINE} in {loaded.load_s:.2f}s; waiting for a shard")
    line = sys.stdin.readline()
    if not line.strip():
        return 0  # not needed after all (fewer shards to score than replicas started)
    go = json.loads(line)
    with open(go["job"]) as f:
        job = ScoringJob.from_json(f.read())
    run_shard(job, int(go["shard"]), storage_options=Credentials.of(go.get("secrets")), log=_emit,
              progress_interval=args.progress_interval, preloaded=loaded)
    return 0


def shard_of(shard: int | None, shards: str | None, completion_index: str | None) -> int:
    """The shard this replica scores: ``--shard``, else the completion index (mapped through ``--shards``).

    :raises ConfigurationError: when neither is given or the index is outside the ``--shards`` list.
    """
    if shard is not None:
        return shard
    if completion_index is None or not completion_index.strip().isdigit():
        raise ConfigurationError(
            "No shard to score: pass --shard N, or run as a pod of an Indexed Job (JOB_COMPLETION_INDEX)."
        )
    index = int(completion_index)
    if not shards:
        return index
    numbers = [int(part) for part in shards.split(",") if part.strip()]
    if index >= len(numbers):
        raise ConfigurationError(f"Completion index {index} has no shard in --shards {shards!r}.")
    return numbers[index]


def _run(args: argparse.Namespace) -> int:
    from airflow_batch_scoring.runtime.verified import discard_verified_copies

    if args.command == "train":
        from airflow_batch_scoring.training.process import train_command

        return train_command(args)
    try:
        return run_shard_command(args)
    finally:
        discard_verified_copies()  # the private copy of the model the replica loaded


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING, stream=sys.stdout)
    args = build_parser().parse_args(argv)
    try:
        return _run(args)
    except BatchScoringError as err:
        retryable = is_retryable(err)
        _emit(ERROR_MARKER + json.dumps({"type": type(err).__name__, "message": str(err), "retryable": retryable}))
        return 1 if retryable else USER_ERROR_EXIT
    except Exception as err:
        traceback.print_exc(file=sys.stdout)
        if is_unreachable(err):
            message = (
                f"a store could not be reached while the replica read or wrote ({type(err).__name__}: {err}). "
                "Nothing was published; shards that finished are kept for a retry. Check that the store is up "
                "and reachable from the replicas, then retry."
            )
            _emit(ERROR_MARKER + json.dumps({"type": "StorageError", "message": message, "retryable": True}))
            return 1
        _emit(ERROR_MARKER + json.dumps(
            {"type": "ReplicaError", "message": f"{type(err).__name__}: {err}", "retryable": True}
        ))
        return 1
