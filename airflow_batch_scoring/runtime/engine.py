"""The scoring engine: one replica scores one shard of a ScoringJob.

Three stages run concurrently with bounded queues between them, so memory depends on the batch size and never on the
input size: a reader thread parses the shard's pieces into Arrow tables and cuts them into batches of ``batch_size``
rows; the calling thread predicts; a writer thread appends the results to the shard's part file in the staging folder.
The shard's report (its counts and timings) is written last, and is the marker that the shard is complete.

When the input schema is known without the model (the job's ``input_schema`` or the processed model's), the reader
thread starts before the model loads, and the read queue holds up to ``READ_AHEAD_WHILE_LOADING`` batches meanwhile
(then ``READ_AHEAD`` again), so reading overlaps loading with bounded memory. When the schema is only known from the
loaded model (scikit-learn files with ``feature_names_in_``), the model loads first.
"""

from __future__ import annotations

import os
import queue
import threading
import time
from collections.abc import Callable, Generator, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import pyarrow as pa

from airflow_batch_scoring.errors import BatchScoringError, ConfigurationError, ModelError
from airflow_batch_scoring.flavors import Predictor
from airflow_batch_scoring.io.readers.columns import ReadPlan, column_types_of
from airflow_batch_scoring.job import ModelSpec, Piece, ScoringJob
from airflow_batch_scoring.runtime.missing_values import INFINITE, MISSING, refused_kinds, refused_value_error
from airflow_batch_scoring.runtime.shards import ShardReport
from airflow_batch_scoring.runtime.verified import load_verified
from airflow_batch_scoring.schema import ModelSchema
from airflow_batch_scoring.sinks import open_sink
from airflow_batch_scoring.sources import open_source

_DONE = object()

#: batches the read queue holds while scoring, and while the model is still loading (reading ahead of the model).
READ_AHEAD = 2
READ_AHEAD_WHILE_LOADING = 4
#: seconds a failing shard waits for its reader thread to notice the stop (it stops after the batch in hand).
_STOP_WAIT_S = 10.0


def rebatch(tables: Iterable[pa.Table], batch_size: int) -> Generator[pa.Table, None, None]:
    """Re-cut a stream of tables into tables of exactly ``batch_size`` rows (the last one may be shorter)."""
    pending: list[pa.Table] = []
    count = 0
    for table in tables:
        while table.num_rows:
            take = min(batch_size - count, table.num_rows)
            pending.append(table.slice(0, take))
            count += take
            table = table.slice(take)
            if count == batch_size:
                yield pa.concat_tables(pending).combine_chunks() if len(pending) > 1 else pending[0]
                pending, count = [], 0
    if count:
        yield pa.concat_tables(pending).combine_chunks() if len(pending) > 1 else pending[0]


class _Stage(threading.Thread):
    """A daemon thread that records its exception for the main thread to re-raise."""

    def __init__(self, target: Callable[[], None], name: str):
        super().__init__(name=name, daemon=True)
        self._target_fn = target
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self._target_fn()
        except BaseException as err:  # re-raised by the main thread
            self.error = err


class _ReadQueue(queue.Queue):
    """A bounded queue whose bound can change while it is in use (larger while the model loads)."""

    def resize(self, maxsize: int) -> None:
        with self.mutex:
            self.maxsize = maxsize
            self.not_full.notify_all()


class Progress:
    """Logs rows done, rows per second and, when the shard's size is known, the share done and an ETA."""

    def __init__(self, log: Callable[[str], None], label: str, total_rows: int | None, interval: float):
        self.log, self.label, self.total_rows, self.interval = log, label, total_rows, interval
        self.started = time.monotonic()
        self.last = self.started

    def update(self, rows: int, fraction: float | None, final: bool = False) -> None:
        now = time.monotonic()
        if not final and now - self.last < self.interval:
            return
        self.last = now
        elapsed = max(now - self.started, 1e-9)
        rate = rows / elapsed
        if self.total_rows:
            fraction = rows / self.total_rows
        text = f"{self.label}: {rows:,} rows scored, {rate:,.0f} rows/s"
        if fraction is not None and not final:
            fraction = min(max(fraction, 0.0), 1.0)
            eta = elapsed * (1 - fraction) / fraction if fraction > 0 else None
            text += f", {fraction:.0%} done" + (f", ETA {eta:,.0f}s" if eta is not None else "")
        if final:
            text += f", finished in {elapsed:,.1f}s"
        self.log(text)


class ReadMark:
    """What the reader has produced: rows parsed, and the text bytes consumed to parse them, as one pair.

    The reader runs ahead of the model (whole blocks of ``part_size`` bytes, and the read queue), so the bytes it has
    consumed say nothing of how much was scored. The pair gives the rows' density in the shard's bytes, from which
    :func:`scored_fraction` places the rows scored. The reader thread replaces the pair as a whole (one assignment),
    after each table it yields: the table's rows and the bytes of the blocks they came from are counted together.
    """

    def __init__(self) -> None:
        self.mark: tuple[int, int] = (0, 0)

    def record(self, rows: int, bytes_done: int) -> None:
        self.mark = (self.mark[0] + rows, bytes_done)


def scored_fraction(rows_scored: int, mark: tuple[int, int], total_bytes: int) -> float | None:
    """The share of a text shard scored: the bytes the scored rows came from, over the shard's bytes.

    ``mark`` is ``(rows read, bytes consumed for them)`` (see :class:`ReadMark`); the scored rows (never more than
    those read) take their share of those bytes. ``None`` when nothing is known yet (no rows read, or no size).
    """
    rows_read, bytes_read = mark
    if total_bytes <= 0 or rows_read <= 0:
        return None
    return min(rows_scored, rows_read) * bytes_read / rows_read / total_bytes


def _passthrough_names(batch: pa.Table, wanted: list[str]) -> list[str]:
    """The batch's names of the passthrough columns, in the order asked (names match ignoring case)."""
    by_key = {name.lower(): name for name in batch.column_names}
    return [by_key[name.lower()] for name in wanted]


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


@dataclass
class Preloaded:
    """A model loaded before its job was known (a prestarted replica), with what it was loaded for."""

    model: ModelSpec
    probabilities: bool
    output_schema: list[dict[str, str]] | None
    predictor: Predictor
    load_s: float

    @classmethod
    def load(
        cls, model: ModelSpec, *, probabilities: bool, output_schema: list[dict[str, str]] | None
    ) -> Preloaded:
        t0 = time.perf_counter()
        predictor = load_verified(model, probabilities=probabilities, output_schema=ModelSchema.parse(output_schema))
        return cls(model, probabilities, output_schema, predictor, time.perf_counter() - t0)

    def serves(self, job: ScoringJob) -> bool:
        """Whether the job scores this very model (path and digest) with the same options."""
        return (
            self.model.path == job.model.path
            and self.model.digest == job.model.digest
            and self.model.flavor == job.model.flavor
            and self.model.output_schema == job.model.output_schema
            and self.probabilities == job.predict_probabilities
            and ModelSchema.parse(self.output_schema) == job.output_model_schema()
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
) -> ShardReport:
    """Score shard ``shard`` of ``job`` into its part file in the staging folder, then write the shard's report.

    With ``on_bad_rows="quarantine"``, when the model refuses missing or infinite values, the shard is scored again
    from its start (with the model already loaded), setting aside each row that holds such a value (at most twice:
    once per kind).

    :param storage_options: fsspec options for the ``source`` and the ``sink`` (the job's secret material).
    :param preloaded: the model, loaded before the job was known; used when it is the job's model with the job's
        options (else the model is loaded again).
    """
    rejected: frozenset[str] = frozenset()
    while True:
        try:
            return _score_shard(job, shard, storage_options, log, progress_interval, preloaded, rejected)
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
) -> ShardReport:
    """:func:`run_shard` once; values of the ``rejected`` kinds (missing, infinite) are bad rows."""
    if not 0 <= shard < job.replicas:
        raise ConfigurationError(f"Shard {shard} does not exist: the job has {job.replicas} shard(s).")
    started = time.perf_counter()
    options = storage_options or {}
    report = ShardReport(shard=shard)

    def load() -> Predictor:
        if preloaded is not None and preloaded.serves(job):
            report.load_s = preloaded.load_s
            return preloaded.predictor
        t0 = time.perf_counter()
        loaded = load_verified(
            job.model, probabilities=job.predict_probabilities, output_schema=job.output_model_schema()
        )
        report.load_s = time.perf_counter() - t0
        return loaded

    # Reading while the model loads is opt-in (BATCH_SCORING_READ_WHILE_LOADING=1): on 2 cores it measured 0.1-0.3 s
    # slower, as the CSV parser already uses both (benchmarks/README.md); it may pay off with spare cores or a model
    # load that waits on the network. It needs the schema without the model; otherwise the model comes first.
    schema = job.input_model_schema() or ModelSchema.parse(job.model.input_schema)
    read_first = (
        schema is not None and preloaded is None and os.environ.get("BATCH_SCORING_READ_WHILE_LOADING") == "1"
    )
    predictor: Predictor | None = None
    if not read_first:
        predictor = load()
        schema = resolve_input_schema(job, predictor)
    plan = ReadPlan(
        model_columns=list(schema.columns) if schema is not None else None,
        coerce=job.schema_check,
        passthrough=list(job.passthrough_columns),
        passthrough_types=job.passthrough_arrow_types(),
        reject_missing=MISSING in rejected,
        reject_infinite=INFINITE in rejected,
    )
    # The replica builds its source and sink from the job document alone (it may run in a pod without Airflow).
    source = open_source(job.source, options.get("source"))
    writer = open_sink(job, options.get("sink")).open_writer(shard)
    errors = writer.quarantine  # on_bad_rows="quarantine" only
    reader = source.open_reader(
        job, plan, batch_size=job.batch_size, on_bad_row=errors.add if errors is not None else None
    )
    pieces: list[Piece] = job.shards[shard]
    total_rows = sum(p.rows for p in pieces if p.rows is not None) if all(p.rows is not None for p in pieces) else None
    whole_text = all(p.end >= 0 and p.row_groups is None for p in pieces)  # text byte ranges (not: compressed streams)
    total_bytes = sum(p.end - p.start for p in pieces) if whole_text else 0
    read_queue: _ReadQueue = _ReadQueue(maxsize=READ_AHEAD_WHILE_LOADING if read_first else READ_AHEAD)
    write_queue: queue.Queue[Any] = queue.Queue(maxsize=2)
    stop = threading.Event()

    def put(q: queue.Queue[Any], item: Any, consumer: threading.Thread | None) -> None:
        while not stop.is_set():
            try:
                q.put(item, timeout=0.2)
                return
            except queue.Full:
                if consumer is not None and not consumer.is_alive():
                    return

    read_mark = ReadMark()

    def read_all() -> None:
        def tables() -> Iterator[pa.Table]:
            for piece in pieces:
                for table in reader.read(piece):
                    read_mark.record(table.num_rows, reader.bytes_done)
                    yield table

        batches = rebatch(tables(), job.batch_size)
        try:
            while not stop.is_set():  # set when the shard fails: stop reading after the batch in hand
                t0 = time.perf_counter()
                batch = next(batches, _DONE)
                report.read_s += time.perf_counter() - t0
                if batch is _DONE:
                    break
                put(read_queue, batch, None)
        finally:
            batches.close()  # closes the pieces' files when stopped early
            put(read_queue, _DONE, None)

    def write_all() -> None:
        while True:
            item = write_queue.get()
            if item is _DONE:
                return
            t0 = time.perf_counter()
            writer.write(item)
            report.write_s += time.perf_counter() - t0

    reader_thread = _Stage(read_all, f"reader-{shard}")
    writer_thread = _Stage(write_all, f"writer-{shard}")
    reader_thread.start()
    model_names = [c.name for c in schema.columns] if schema is not None else None
    try:
        if predictor is None:  # the reader is already reading ahead (up to READ_AHEAD_WHILE_LOADING batches)
            predictor = load()
            read_queue.resize(READ_AHEAD)
        writer_thread.start()
        progress = Progress(log, f"replica {shard + 1}/{job.replicas}", total_rows, progress_interval)
        while True:
            batch = read_queue.get()
            if batch is _DONE:
                break
            t0 = time.perf_counter()
            passthrough = _passthrough_names(batch, plan.passthrough)
            names = model_names or [n for n in batch.column_names if n not in passthrough]
            features = batch.select(names)
            try:
                outputs = predictor.predict(features)
            except BatchScoringError:
                raise
            except Exception as err:
                kinds = refused_kinds(predictor.predict, features)
                if not kinds:
                    raise
                if errors is not None and source.row_errors and not kinds <= rejected:
                    again = Preloaded(
                        job.model, job.predict_probabilities, job.output_schema, predictor, report.load_s
                    )
                    raise _ScoreAgain(kinds, again) from err
                raise refused_value_error(job, source, plan, pieces, err, kinds) from err
            if report.output_columns is None:
                clash = [n for n in outputs.column_names if n.lower() in {p.lower() for p in passthrough}]
                if clash:
                    raise ConfigurationError(
                        f"The passthrough column(s) {clash} have the same name as a model output; rename them."
                    )
                report.input_schema = column_types_of(batch.select(names))
            result = pa.Table.from_arrays(
                [batch.column(n) for n in passthrough] + outputs.columns,
                names=passthrough + outputs.column_names,
            )
            report.output_columns = report.output_columns or column_types_of(result)
            report.predict_s += time.perf_counter() - t0
            report.rows_in += batch.num_rows
            put(write_queue, result, writer_thread)
            if writer_thread.error is not None:
                break
            # what was scored, not what the reader consumed ahead of the model
            progress.update(report.rows_in, scored_fraction(report.rows_in, read_mark.mark, total_bytes))
        put(write_queue, _DONE, writer_thread)
        writer_thread.join()
        reader_thread.join()
        for stage in (reader_thread, writer_thread):
            if stage.error is not None:
                raise stage.error
    except BaseException:
        stop.set()
        reader_thread.join(_STOP_WAIT_S)  # it may still add bad rows to ``errors``; it stops after its batch
        writer.abort()
        reader.close()
        raise
    t0 = time.perf_counter()
    report.rows_out = writer.close()
    report.write_s += time.perf_counter() - t0
    reader.close()
    report.parts = writer.parts
    if errors is not None:
        errors.finish(report)
    report.duration_s = time.perf_counter() - started
    writer.write_report(report.to_dict())
    progress.update(report.rows_in, None, final=True)
    return report
