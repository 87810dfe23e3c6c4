"""The driver's side of a training job, for the operator and ``batch-scoring train`` alike.

:func:`plan_training` checks the settings, lists and plans the source (one shard: the callable gets every row) and
builds the :class:`~.job.TrainingJob`; a :data:`Trainer` runs it in a runtime process and returns its result:
:class:`LocalTrainer` runs ``python -m airflow_batch_scoring.runtime train`` as one child process, its secret
material on stdin (never argv or the environment).

Never imports Airflow.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable, Mapping
from typing import Any

from airflow_batch_scoring.coercion import to_positive_int
from airflow_batch_scoring.driver.prepare import safe_job_id
from airflow_batch_scoring.errors import ConfigurationError, ReplicaError
from airflow_batch_scoring.io.readers.columns import ReadPlan
from airflow_batch_scoring.job import DEFAULT_PART_SIZE
from airflow_batch_scoring.metrics.training_baseline import input_digest
from airflow_batch_scoring.runtime.protocol import ERROR_MARKER, error_from_marker
from airflow_batch_scoring.sources import open_source
from airflow_batch_scoring.specs import DataSpec, spec_to_dict
from airflow_batch_scoring.training.callable import check_reference
from airflow_batch_scoring.training.job import DATA_MODES, DEFAULT_ALIAS, DEFAULT_TRAINING_BATCH, TrainingJob
from airflow_batch_scoring.training.process import MLFLOW_TOKEN_VARIABLE, RESULT_MARKER

#: runs a training job with its secret material and returns the process's result.
Trainer = Callable[[TrainingJob, Mapping[str, Any]], dict[str, Any]]
_NAME_CHARS = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.")


def _check_name(value: Any, what: str) -> str:
    if not isinstance(value, str) or not value.strip() or not set(value) <= _NAME_CHARS | {" "}:
        raise ConfigurationError(
            f"{what}={value!r} is not a model name or alias: use letters, digits, '-', '_' and '.'."
        )
    return value.strip()


def plan_training(
    *,
    job_id: str,
    source: DataSpec,
    label_column: str,
    training: str,
    register_as: str,
    alias: str | None = DEFAULT_ALIAS,
    data: str = "pandas",
    training_kwargs: Mapping[str, Any] | None = None,
    secrets: Mapping[str, Any] | None = None,
    tracking_uri: str | None = None,
    registry_uri: str | None = None,
    experiment: str | None = None,
    batch_size: Any = None,
    part_size: Any = None,
) -> TrainingJob:
    """Check the settings, list and plan the source; the job the training process runs.

    :param secrets: the source's secret material (fsspec storage options, or ``{"sqlalchemy_url": ...}``).
    :raises ConfigurationError: for a wrong setting, naming it.
    :raises InputError: when the source does not exist or is empty.
    """
    reference = check_reference(training)
    if data not in DATA_MODES:
        raise ConfigurationError(f"data must be one of {DATA_MODES} (what the training callable receives), "
                                 f"got {data!r}.")
    if not isinstance(label_column, str) or not label_column.strip():
        raise ConfigurationError("label_column must name the column of labels (or targets) in the source.")
    if training_kwargs is not None and not isinstance(training_kwargs, Mapping):
        raise ConfigurationError("training_kwargs must be a mapping of keyword arguments for the training callable.")
    kwargs = dict(training_kwargs or {})
    try:
        json.dumps(kwargs)
    except (TypeError, ValueError):
        raise ConfigurationError("training_kwargs must hold JSON values (numbers, text, lists, mappings).") from None
    batch = to_positive_int(batch_size, "batch_size") if batch_size not in (None, "") else DEFAULT_TRAINING_BATCH
    part = to_positive_int(part_size, "part_size") if part_size not in (None, "") else DEFAULT_PART_SIZE
    name = _check_name(register_as, "register_as")
    reading = open_source(source, secrets)
    files = reading.listing()
    pieces = reading.plan(1, ReadPlan(None, coerce=False), part)[0]
    job = TrainingJob(
        job_id=safe_job_id(job_id), source=reading.spec, pieces=tuple(pieces), label_column=label_column.strip(),
        training=reference, register_as=name, data=data, alias=_check_name(alias or DEFAULT_ALIAS, "alias"),
        training_kwargs=kwargs, tracking_uri=tracking_uri, registry_uri=registry_uri, experiment=experiment or None,
        batch_size=batch, part_size=part,
    )
    record = {**spec_to_dict(reading.spec), "input": reading.describe(job.reading_job())}
    return TrainingJob(**{**job.__dict__, "source_record": record, "digest": input_digest(files)})


def training_command(job_path: str) -> list[str]:
    """The training process's command line (the same a pod runs, with ``--secrets-file``)."""
    return [sys.executable, "-m", "airflow_batch_scoring.runtime", "train", "--job", job_path, "--secrets-stdin"]


def import_path(given: str | None) -> str:
    """The training process's ``PYTHONPATH``: the one given, then this process's import folders (a callable the
    worker can import, e.g. a module beside the DAG files, is importable there too)."""
    parts = [p for p in (given or "").split(os.pathsep) if p]
    parts += [p for p in sys.path if p and os.path.isdir(p) and p not in parts]
    return os.pathsep.join(parts)


class LocalTrainer:
    """Runs a training job as one local process; :meth:`kill` stops it (``on_kill``).

    :param log: receives every line the process prints.
    """

    runtime = "local"

    def __init__(self, log: Callable[[str], None] = print):
        self.log = log
        self.process: subprocess.Popen[str] | None = None

    def __call__(self, job: TrainingJob, secrets: Mapping[str, Any]) -> dict[str, Any]:
        with tempfile.TemporaryDirectory(prefix="batch-training-") as folder:
            path = os.path.join(folder, "job.json")
            with open(path, "w") as f:
                f.write(job.to_json())
            environment = {k: v for k, v in os.environ.items() if k != MLFLOW_TOKEN_VARIABLE}  # token: on stdin
            environment["PYTHONPATH"] = import_path(environment.get("PYTHONPATH"))
            self.process = process = subprocess.Popen(
                training_command(path), stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                text=True, env=environment, start_new_session=True,
            )
            found: dict[str, str] = {}
            tail: list[str] = []

            def relay() -> None:
                assert process.stdout is not None
                for line in process.stdout:
                    line = line.rstrip("\n")
                    for marker in (ERROR_MARKER, RESULT_MARKER):
                        if line.startswith(marker):
                            found[marker] = line[len(marker):]
                            break
                    else:
                        tail.append(line)
                        del tail[:-50]
                        self.log(f"[training] {line}")

            reader = threading.Thread(target=relay, daemon=True)
            reader.start()
            try:
                assert process.stdin is not None
                try:
                    process.stdin.write(json.dumps(dict(secrets)))
                    process.stdin.close()
                except BrokenPipeError:
                    pass
                code = process.wait()
            except BaseException:
                self.kill()
                raise
            finally:
                reader.join(timeout=10)
                self.process = None
        if ERROR_MARKER in found:
            raise error_from_marker(found[ERROR_MARKER])
        if code != 0 or RESULT_MARKER not in found:
            how = f"was killed by signal {-code}" if code < 0 else f"exited with code {code}"
            raise ReplicaError("The training process " + how + "; nothing was registered by it. Its last output:\n"
                               + "\n".join(tail[-20:]))
        return dict(json.loads(found[RESULT_MARKER]))

    def kill(self) -> None:
        process = self.process
        if process is not None and process.poll() is None:
            try:
                os.killpg(process.pid, signal.SIGTERM)
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def run_training(job: TrainingJob, trainer: Trainer, secrets: Mapping[str, Any],
                 log: Callable[[str], None] = print) -> dict[str, Any]:
    """Run the job and return the task's summary: the model URI, version, run id, rows and training digest."""
    log(f"Training {job.register_as} with {job.training} on {len(job.pieces)} piece(s) of "
        f"{job.source_record.get('uri') or job.source_record.get('table') or 'the source'} ({job.data})")
    result = trainer(job, secrets)
    return {
        "model_uri": result["model_uri"],
        "model_name": result["name"],
        "version": result["version"],
        "alias": result["alias"],
        "run_id": result["run_id"],
        "rows": result["rows"],
        "digest": result["digest"],
        "label_column": result["label_column"],
        "flavor": result["flavor"],
        "reused": bool(result.get("reused")),  # a retry found the version an earlier try registered
    }
