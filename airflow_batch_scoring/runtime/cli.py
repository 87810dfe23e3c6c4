"""The runtime's command line: ``run-shard`` scores one shard of a ScoringJob given as JSON.

``--shard`` defaults to ``JOB_COMPLETION_INDEX`` (set by a Kubernetes Indexed Job). Errors a user can cause print one
``BATCH_SCORING_ERROR {json}`` line for the launcher and exit with code 2; anything else exits 1 with a traceback.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import traceback

from airflow_batch_scoring.errors import BatchScoringError
from airflow_batch_scoring.job import ScoringJob
from airflow_batch_scoring.runtime.local import ERROR_MARKER
from airflow_batch_scoring.runtime.secrets import read_secrets


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m airflow_batch_scoring.runtime", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run-shard", help="score one shard of a ScoringJob")
    run.add_argument("--job", required=True, help="path of the ScoringJob JSON ('-' reads it from stdin)")
    run.add_argument("--shard", type=int, default=None, help="shard index (default: $JOB_COMPLETION_INDEX)")
    run.add_argument("--secrets-stdin", action="store_true", help="read storage options as JSON from stdin")
    run.add_argument("--progress-interval", type=float, default=float(os.environ.get("BATCH_SCORING_PROGRESS_S", 10)))
    return parser


def _emit(line: str) -> None:
    print(line, flush=True)


def run_shard_command(args: argparse.Namespace) -> int:
    from airflow_batch_scoring.runtime.engine import run_shard

    shard = args.shard if args.shard is not None else int(os.environ.get("JOB_COMPLETION_INDEX", "-1"))
    with open(args.job) as f:
        job = ScoringJob.from_json(f.read())
    secrets = read_secrets(args.secrets_stdin)
    run_shard(job, shard, storage_options=secrets, log=_emit, progress_interval=args.progress_interval)
    return 0


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING, stream=sys.stdout)
    args = build_parser().parse_args(argv)
    try:
        return run_shard_command(args)
    except BatchScoringError as err:
        _emit(ERROR_MARKER + json.dumps({"type": type(err).__name__, "message": str(err)}))
        return 2
    except Exception as err:
        traceback.print_exc(file=sys.stdout)
        _emit(ERROR_MARKER + json.dumps({"type": "ReplicaError", "message": f"{type(err).__name__}: {err}"}))
        return 1
