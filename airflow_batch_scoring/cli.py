"""``batch-scoring``: run a scoring job from a shell, without Airflow, and inspect a finished job's manifest.

    batch-scoring score --model models:/churn@champion --source file:///data/in.csv --sink file:///data/out/ \\
        --replicas 2 --passthrough id
    batch-scoring manifest file:///data/out/ [--summary | --field totals.rows_out]
    batch-scoring model-requirements --model models:/churn/3 > requirements.in   (a runtime image for the model)
    batch-scoring metrics --model ... --source ... --output ... --label-column y [--baseline ...] (cli_metrics.py)
    batch-scoring train --training pkg.module:fit --source ... --label-column y --register-as name (cli_train.py)
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import sys
import tempfile
import uuid

from airflow_batch_scoring.cli_metrics import add_metrics_command, run_metrics_command
from airflow_batch_scoring.cli_support import pick, read_storage_options, summary
from airflow_batch_scoring.cli_train import add_train_command, run_train_command
from airflow_batch_scoring.coercion import to_columns
from airflow_batch_scoring.errors import BatchScoringError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="batch-scoring", description="Batch scoring of ML models, from a shell.")
    commands = parser.add_subparsers(dest="command", required=True)
    score = commands.add_parser("score", help="score a source into a sink on local replicas")
    score.add_argument("--model", required=True, help="models:/name@alias, models:/name/1, runs:/..., a path")
    score.add_argument(
        "--source", required=True,
        help='input file, folder or glob (file:///..., s3://...), or a JSON object with the operator\'s source keys, '
        'e.g. \'{"table": "public.customers", "partition_column": "id"}\' (credentials: --storage-options)',
    )
    score.add_argument(
        "--sink", required=True,
        help='output folder, or a JSON object with the operator\'s sink keys, e.g. '
        '\'{"table": "scores", "mode": "upsert", "merge_keys": ["id"]}\'',
    )
    score.add_argument("--source-format", choices=["csv", "jsonl", "parquet"], default=None)
    score.add_argument("--sink-format", choices=["csv", "jsonl", "parquet"], default=None)
    score.add_argument(
        "--header", action=argparse.BooleanOptionalAction, default=None,
        help="the source CSV has (--header) or has no (--no-header) header line; default: found from the first line",
    )
    score.add_argument(
        "--sink-header", action=argparse.BooleanOptionalAction, default=None,
        help="write a header line in CSV output (default: when the input CSV has one)",
    )
    score.add_argument("--columns", help="column names of a CSV without header, in file order (comma-separated)")
    score.add_argument("--passthrough", help="input columns copied to the output (comma-separated)")
    score.add_argument(
        "--passthrough-schema",
        help='JSON, as --input-schema: types for passthrough columns (default: the source\'s own, or the text)',
    )
    score.add_argument("--replicas", type=int, default=1)
    score.add_argument("--batch-size", type=int, default=None, help="rows per batch (default 100,000)")
    score.add_argument("--input-schema", help='JSON: [{"name": "x", "type": "Float64"}, ...]')
    score.add_argument("--output-schema", help="JSON, as --input-schema")
    score.add_argument("--no-schema-check", action="store_true", help="pass input columns to the model unchecked")
    score.add_argument("--probabilities", action="store_true", help="add probability_<class> columns")
    score.add_argument("--if-exists", choices=["replace", "fail"], default="replace")
    score.add_argument(
        "--on-bad-rows", choices=["fail", "quarantine"], default="fail",
        help="fail at the first bad row, or quarantine bad rows into <sink>/_errors/ and score the rest",
    )
    score.add_argument("--max-bad-rows", type=int, default=None, help="quarantine: fail when more rows are bad")
    score.add_argument(
        "--max-bad-fraction", type=float, default=None,
        help="quarantine: fail when a larger share of the rows read is bad (default 0.1)",
    )
    score.add_argument(
        "--job-id",
        default=None,
        help="name the run: a failed run keeps its finished shards, and re-running the same command with the same "
        "--job-id scores only the rest (default: a new name each time, no resume)",
    )
    score.add_argument("--tracking-uri", default=None, help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI)")
    score.add_argument("--registry-uri", default=None, help="MLflow registry URI (default: the tracking URI)")
    score.add_argument("--part-size", type=int, default=None, help="bytes per read request and upload part")
    score.add_argument("--write-concurrency", type=int, default=None, help="parts of one S3 object uploaded at once")
    score.add_argument(
        "--model-environment", choices=["worker", "model"], default="worker",
        help="run the replicas in this Python environment (worker, the default; a warning names the packages whose "
        "versions differ from the model's recorded ones) or in one built with uv from the model's requirements "
        "(model; cached, see --environment-cache-dir)",
    )
    score.add_argument("--environment-cache-dir", default=None,
                       help="where model environments are cached (default: $BATCH_SCORING_ENV_CACHE, else "
                       "~/.cache/airflow-batch-scoring/environments)")
    score.add_argument("--environment-build-timeout", type=float, default=None,
                       help="seconds building a model environment may take (default 900)")
    score.add_argument("--incremental", action="store_true",
                       help="score only what is new since the last run of --incremental-key that published (a file, "
                       "Delta or Iceberg source); nothing new: 0 rows, nothing published")
    score.add_argument("--incremental-key", default=None,
                       help="names the same job into the same sink across runs (required with --incremental)")
    score.add_argument("--incremental-state", default=None,
                       help="the folder (URI) that keeps the watermark (default: a Delta or Iceberg sink's "
                       "_batch_scoring/incremental/; required for a file or SQL sink)")
    requirements = commands.add_parser(
        "model-requirements",
        help="print what a model environment installs for a model (its requirements, then the runtime's): the "
        "input of a runtime image built for it",
    )
    requirements.add_argument("--model", required=True, help="models:/name@alias, models:/name/1, runs:/..., a path")
    requirements.add_argument("--tracking-uri", default=None, help="MLflow tracking URI")
    requirements.add_argument("--registry-uri", default=None, help="MLflow registry URI")
    for command in (score, requirements):
        command.add_argument(
            "--requirements", nargs="+", default=None, metavar="REQUIREMENT",
            help="the model's requirements when it records none (a joblib file), or to replace them: specifiers "
            "(scikit-learn==1.7.2 numpy==2.3.4) or the path of one requirements file",
        )
    manifest = commands.add_parser("manifest", help="print the manifest of a finished job's output folder")
    manifest.add_argument("output", help="the sink folder (file://, s3://, gs://, abfs://)")
    view = manifest.add_mutually_exclusive_group()
    view.add_argument("--summary", action="store_true", help="print a few readable lines instead of the JSON")
    view.add_argument("--field", help="print one value by its dotted path, e.g. totals.rows_out or model.version")
    add_metrics_command(commands)  # batch-scoring metrics (cli_metrics.py)
    add_train_command(commands)  # batch-scoring train (cli_train.py)
    for command in (score, manifest):
        command.add_argument(
            "--storage-options", metavar="FILE",
            help='a JSON file of fsspec options: {"source": {...}, "sink": {...}} (credentials stay out of argv)',
        )
    return parser


def _spec(value: str, role: str, **flags: object) -> dict:
    """A source or sink from the command line: a URI, or a JSON object with the operator's keys (SQL tables and
    queries included); flags given on the command line fill in what the object leaves out."""
    if value.lstrip().startswith("{"):
        try:
            spec = json.loads(value)
        except ValueError as err:
            raise BatchScoringError(f"--{role} is not a valid JSON object ({err}).") from None
    else:
        spec = {"uri": value}
    for key, flag in flags.items():
        if flag is not None and key not in spec:
            spec[key] = flag
    return spec


def _requirements(values: list[str] | None) -> list[str] | str | None:
    """``--requirements``: one existing file's path, or requirement specifiers."""
    if values and len(values) == 1 and os.path.isfile(values[0]):
        return values[0]
    return values


def _model_requirements(args: argparse.Namespace) -> str:
    """``batch-scoring model-requirements``: the lines a model environment installs for the model."""
    from airflow_batch_scoring.artifacts import process_model
    from airflow_batch_scoring.environments.requirements import model_requirements
    from airflow_batch_scoring.environments.settings import EnvironmentSettings

    given = EnvironmentSettings.parse(requirements=_requirements(args.requirements)).requirements
    with tempfile.TemporaryDirectory(prefix="batch-scoring-model-") as folder:
        model = process_model(args.model, folder, tracking_uri=args.tracking_uri, registry_uri=args.registry_uri)
        found = model_requirements(model.path, given)
    if found is None:
        raise BatchScoringError(
            f"{args.model!r} records no requirements (an MLflow model folder's requirements.txt): name them with "
            "--requirements."
        )
    python = f"# python {found.python}\n" if found.python else ""
    return python + "\n".join(found.install_lines())


def _score(args: argparse.Namespace) -> dict:
    from dataclasses import replace

    from airflow_batch_scoring.artifacts import process_model
    from airflow_batch_scoring.driver.local import LocalLauncher
    from airflow_batch_scoring.driver.prepare import prepare_job
    from airflow_batch_scoring.driver.run import execute_job
    from airflow_batch_scoring.environments import prepare_environment, stores_of
    from airflow_batch_scoring.environments.settings import MODEL, EnvironmentSettings
    from airflow_batch_scoring.options import ScoringOptions
    from airflow_batch_scoring.specs import parse_data_spec

    source = parse_data_spec(
        _spec(args.source, "source", format=args.source_format, header=args.header,
              columns=to_columns(args.columns, "--columns")),
        "source",
    )
    sink = parse_data_spec(_spec(args.sink, "sink", format=args.sink_format, header=args.sink_header), "sink")

    def log(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    scoring = ScoringOptions.parse(
        replicas=args.replicas,
        batch_size=args.batch_size,
        passthrough_columns=args.passthrough,
        passthrough_schema=args.passthrough_schema,
        input_schema=args.input_schema,
        output_schema=args.output_schema,
        schema_check=not args.no_schema_check,
        predict_probabilities=args.probabilities,
        part_size=args.part_size,
        write_concurrency=args.write_concurrency,
        on_bad_rows=args.on_bad_rows,
        max_bad_rows=args.max_bad_rows,
        max_bad_fraction=args.max_bad_fraction,
        incremental=args.incremental,
        incremental_key=args.incremental_key,
        incremental_state=args.incremental_state,
    )
    settings = EnvironmentSettings.parse(
        model_environment=args.model_environment, requirements=_requirements(args.requirements),
        cache_dir=args.environment_cache_dir, build_timeout=args.environment_build_timeout,
    )

    with tempfile.TemporaryDirectory(prefix="batch-scoring-model-") as folder:
        launcher = LocalLauncher(log)
        if settings.mode != MODEL:  # a model environment's interpreter is known once the model's requirements are
            launcher.start_early(scoring.replicas)  # the replicas import the runtime while the model is resolved
        try:
            model = process_model(args.model, folder, tracking_uri=args.tracking_uri, registry_uri=args.registry_uri)
            environment = prepare_environment(model, settings, log, stores_of(source, sink))
            launcher.python = environment.python
            # The replicas load the model while the input is listed, planned and checked.
            launcher.prestart(model, scoring.replicas, probabilities=scoring.predict_probabilities,
                              output_schema=scoring.output_schema)
            options = read_storage_options(args.storage_options)
            job, files = prepare_job(
                job_id=args.job_id or f"cli-{uuid.uuid4().hex[:12]}",
                attempt=f"cli-{uuid.uuid4().hex[:8]}",
                model=model,
                source=source,
                sink=sink,
                options=scoring,
                storage_options=options,
                log=log,
            )
            job = replace(job, environment=environment.manifest)
            return execute_job(job, files, log=log, launcher=launcher, if_exists=args.if_exists,
                               keep_on_failure=bool(args.job_id), storage_options=options)
        finally:
            launcher.discard()


def _manifest(args: argparse.Namespace) -> dict:
    from airflow_batch_scoring.io.files import filesystem
    from airflow_batch_scoring.sinks.file_publish import MANIFEST, SUCCESS

    fs, path = filesystem(args.output, read_storage_options(args.storage_options)["sink"])
    path = path.rstrip("/")
    if not fs.exists(f"{path}/{SUCCESS}"):
        raise BatchScoringError(f"{args.output} holds no finished output (no {SUCCESS}); the job has not published.")
    with fs.open(f"{path}/{MANIFEST}", "r") as f:
        return json.load(f)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "metrics":
            result = run_metrics_command(args, _spec)
        elif args.command == "train":
            result = run_train_command(args, _spec)
        elif args.command == "model-requirements":
            print(_model_requirements(args))
            return 0
        else:
            result = _score(args) if args.command == "score" else _manifest(args)
    except BatchScoringError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    try:
        return _print(args, result)
    except BrokenPipeError:  # the reader went away (``| head``): not an error of ours
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


def console() -> int:
    """The ``batch-scoring`` command: :func:`main`, then a frozen heap for the interpreter's exit.

    The process ends right after: freezing the heap (:func:`gc.freeze`) spares the collector's last passes over every
    object of every imported module, 0.7 s once MLflow was imported to resolve a ``models:/`` reference. Only for the
    command: a caller of :func:`main` lives on.
    """
    code = main()
    gc.freeze()
    return code


def _print(args: argparse.Namespace, result: dict) -> int:
    if args.command == "manifest" and args.summary:
        print(summary(result))
    elif args.command == "manifest" and args.field:
        try:
            value = pick(result, args.field)
        except BatchScoringError as err:
            print(f"error: {err}", file=sys.stderr)
            return 2
        print(value if isinstance(value, str) else json.dumps(value, indent=2, default=str))
    else:
        print(json.dumps(result, indent=2, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
