"""The scoring engine: one replica scores one shard of a ScoringJob.

:func:`run_shard` builds the shard's :class:`~airflow_batch_scoring.runtime.pipeline.ShardPipeline` (read -> conform ->
predict -> assemble -> write, see :mod:`airflow_batch_scoring.runtime.shard_stages`) from the job alone: the source's
reader, the sink's writer, and the model (loaded here, or preloaded by a prestarted replica).

When the input schema is known without the model (the job's ``input_schema`` or the processed model's), the reader
thread may start before the model loads, and the read queue holds up to ``READ_AHEAD_WHILE_LOADING`` batches meanwhile
(then ``READ_AHEAD`` again), so reading overlaps loading with bounded memory. When the schema is only known from the
loaded model (scikit-learn files with ``feature_names_in_``), the model loads first.
"""

from __future__ import annotations

import gc
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from airflow_batch_scoring.errors import ConfigurationError, ModelError
from airflow_batch_scoring.flavors import Predictor
from airflow_batch_scoring.job import ModelSpec, ScoringJob
from airflow_batch_scoring.metrics.stage import assemble_stage
from airflow_batch_scoring.runtime.missing_values import refused_value_error
from airflow_batch_scoring.runtime.pipeline import ShardPipeline
from airflow_batch_scoring.runtime.progress import ShardProgress
from airflow_batch_scoring.runtime.shard_stages import ConformStage, PredictStage, ReadStage, WriteStage
from airflow_batch_scoring.runtime.shards import ShardReport
from airflow_batch_scoring.runtime.verified import load_verified
from airflow_batch_scoring.schema import ModelSchema
from airflow_batch_scoring.sinks import open_sink
from airflow_batch_scoring.sources import open_source


def resolve_input_schema(job: ScoringJob, predictor: Predictor) -> ModelSchema | None:
    """The input schema in force: the job's override, else the processed model's, else the loaded model's own.

    :raises ModelError: when schema checking is on and no schema is known.
    """
    schema = job.input_model_schema() or ModelSchema.parse(job.model.input_schema) or predictor.input_schema
    if schema is None and job.schema_check:
        raise ModelError(
            f"The input schema of the model {job.model.uri!r} is unknown (it has no MLflow signature and no "
            'feature names). Give input_schema=[{"name": "x", "type": "Float64"}, ...], or log the model with a '
            "signature, or set schema_check=False to send the input columns to the model unchecked."
        )
    return schema


def freeze_heap() -> None:
    """Move every object alive now (the modules, the loaded model) out of the garbage collector's generations.

    A replica calls it once its model is loaded: those objects live as long as the process, so neither the collector
    nor pyarrow walks them again. On Python 3.10 pyarrow calls ``gc.get_referrers`` on every read (a workaround for
    a CPython 3.10 bug), which walks all tracked objects: in a replica with MLflow loaded that was 15 ms per
    ``read_csv`` call, 0.15 ms once frozen. Only for a process that exists to score (it keeps what is frozen).
    """
    gc.collect()
    gc.freeze()


@dataclass
class Preloaded:
    """A model loaded before its job was known (a prestarted replica), with what it was loaded for."""

    model: ModelSpec
    probabilities: bool
    output_schema: ModelSchema | None
    predictor: Predictor
    load_s: float

    @classmethod
    def load(
        cls, model: ModelSpec, *, probabilities: bool, output_schema: ModelSchema | None
    ) -> Preloaded:
        t0 = time.perf_counter()
        predictor = load_verified(model, probabilities=probabilities, output_schema=output_schema)
        return cls(model, probabilities, output_schema, predictor, time.perf_counter() - t0)

    def serves(self, job: ScoringJob) -> bool:
        """Whether the job scores this very model (path and digest) with the same options."""
        return (
            self.model.path == job.model.path
            and self.model.digest == job.model.digest
            and self.model.flavor == job.model.flavor
            and self.model.output_schema == job.model.output_schema
            and self.probabilities == job.predict_probabilities
            and self.output_schema == job.output_model_schema()
        )


class _ScoreAgain(Exception):
    """Quarantine: the model refused values of ``kinds`` (missing, infinite); score the shard again setting aside the
    rows that hold them (what was staged so far is discarded)."""

    def __init__(self, kinds: set[str], preloaded: Preloaded):
        super().__init__(", ".join(sorted(kinds)))
        self.kinds, self.preloaded = kinds, preloaded


def run_shard(
    job: ScoringJob,
    shard: int,
    storage_options: Mapping[str, Mapping[str, Any]] | None = None,
    log: Callable[[str], None] = print,
    progress_interval: float = 10.0,
    preloaded: Preloaded | None = None,
    freeze_after_load: bool = False,
) -> ShardReport:
    """Score shard ``shard`` of ``job`` into its part file in the staging folder, then write the shard's report.

    With ``on_bad_rows="quarantine"``, when the model refuses missing or infinite values, the shard is scored again
    from its start (with the model already loaded), setting aside each row that holds such a value (at most twice:
    once per kind).

    :param storage_options: fsspec options for the ``source`` and the ``sink`` (the job's secret material).
    :param preloaded: the model, loaded before the job was known; used when it is the job's model with the job's
        options (else the model is loaded again).
    :param freeze_after_load: a replica process: :func:`freeze_heap` once the model is loaded.
    """
    rejected: frozenset[str] = frozenset()
    while True:
        try:
            return _score_shard(
                job, shard, storage_options, log, progress_interval, preloaded, rejected, freeze_after_load
            )
        except _ScoreAgain as again:
            rejected = rejected | again.kinds
            preloaded = again.preloaded
            log(
                f"replica {shard + 1}/{job.replicas}: the model refuses {' and '.join(sorted(rejected))} values: "
                "scoring the shard again, setting aside the rows that hold them (on_bad_rows='quarantine')"
            )


def _score_shard(
    job: ScoringJob,
    shard: int,
    storage_options: Mapping[str, Mapping[str, Any]] | None,
    log: Callable[[str], None],
    progress_interval: float,
    preloaded: Preloaded | None,
    rejected: frozenset[str],
    freeze_after_load: bool = False,
) -> ShardReport:
    """:func:`run_shard` once; values of the ``rejected`` kinds (missing, infinite) are bad rows."""
    if not 0 <= shard < job.replicas:
        raise ConfigurationError(f"Shard {shard} does not exist: the job has {job.replicas} shard(s).")
    started = time.perf_counter()
    options = storage_options or {}
    report = ShardReport(shard=shard, python=_own_environment(job))
    loaded: list[Predictor] = []

    def load() -> Predictor:
        if not loaded:
            if preloaded is not None and preloaded.serves(job):
                report.load_s = preloaded.load_s
                loaded.append(preloaded.predictor)
            else:
                t0 = time.perf_counter()
                loaded.append(load_verified(
                    job.model, probabilities=job.predict_probabilities, output_schema=job.output_model_schema()
                ))
                report.load_s = time.perf_counter() - t0
                if freeze_after_load:
                    freeze_heap()
        return loaded[0]

    # Reading while the model loads is opt-in (BATCH_SCORING_READ_WHILE_LOADING=1): on 2 cores it measured 0.1-0.3 s
    # slower, as the CSV parser already uses both (benchmarks/README.md); it may pay off with spare cores or a model
    # load that waits on the network. It needs the schema without the model; otherwise the model comes first.
    schema = job.input_model_schema() or ModelSchema.parse(job.model.input_schema)
    read_first = (
        schema is not None and preloaded is None and os.environ.get("BATCH_SCORING_READ_WHILE_LOADING") == "1"
    )
    if not read_first:
        schema = resolve_input_schema(job, load())
    conform = ConformStage.for_job(job, schema, rejected)
    # The replica builds its source and sink from the job document alone (it may run in a pod without Airflow).
    source = open_source(job.source, options.get("source"))
    writer = open_sink(job, options.get("sink")).open_writer(shard)
    quarantine = writer.quarantine  # on_bad_rows="quarantine" only
    reader = source.open_reader(
        job, conform.plan, batch_size=job.batch_size, on_bad_row=quarantine.add if quarantine is not None else None
    )
    pieces = job.shards[shard]
    progress = ShardProgress(
        report, log, f"replica {shard + 1}/{job.replicas}", pieces, started=started, interval=progress_interval,
    )

    def refused(err: Exception, kinds: set[str]) -> BaseException:
        """A model refused missing or infinite values: score again setting those rows aside, or locate the first."""
        if quarantine is not None and source.row_errors and not kinds <= rejected:
            again = Preloaded(job.model, job.predict_probabilities, job.output_model_schema(), load(), report.load_s)
            return _ScoreAgain(kinds, again)
        return refused_value_error(job, source, conform.plan, pieces, err, kinds)

    pipeline = ShardPipeline(
        ReadStage(reader, pieces, job.batch_size, progress.read_mark), conform, WriteStage(writer), progress,
        name=str(shard), loading=read_first, assemble=assemble_stage(job, shard),
    )
    return pipeline.run(lambda: PredictStage(load(), refused))


def _own_environment(job: ScoringJob) -> dict[str, Any] | None:
    """The replica's record of its own Python, when the job runs in a model environment (its requirements' versions
    as this interpreter has them)."""
    if not job.environment or job.environment.get("mode") != "model":
        return None
    from airflow_batch_scoring.environments import replica_environment
    from airflow_batch_scoring.environments.requirements import ModelRequirements

    return replica_environment(ModelRequirements(tuple(job.environment.get("requirements") or ())).names())
