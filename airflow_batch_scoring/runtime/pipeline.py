"""The shard pipeline: read -> conform -> predict -> assemble -> write, on three threads with bounded queues.

A reader thread runs the :class:`~airflow_batch_scoring.runtime.shard_stages.ReadStage` (parse the shard's pieces,
cut them into batches); the calling thread conforms, predicts and assembles each batch; a writer thread runs the
:class:`~airflow_batch_scoring.runtime.shard_stages.WriteStage`. Memory depends on the batch size and never on the
input size. The shard's report (its counts and timings, :class:`~airflow_batch_scoring.runtime.progress.
ShardProgress`) is written last, and is the marker that the shard is complete.
"""

from __future__ import annotations

import contextlib
import queue
import threading
import time
from collections.abc import Callable
from typing import Any

from airflow_batch_scoring.runtime.progress import ShardProgress
from airflow_batch_scoring.runtime.shard_stages import (
    AssembleStage,
    ConformStage,
    PredictStage,
    ReadStage,
    WriteStage,
)
from airflow_batch_scoring.runtime.shards import ShardReport

_DONE = object()

#: batches the read queue holds while scoring, and while the model is still loading (reading ahead of the model).
READ_AHEAD = 2
READ_AHEAD_WHILE_LOADING = 4
#: tables the write queue holds.
WRITE_AHEAD = 2
#: seconds a failing shard waits for its reader and writer threads to notice the stop (after the batch in hand).
_STOP_WAIT_S = 10.0


class _StageThread(threading.Thread):
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


class ShardPipeline:
    """Scores one shard: its stages, run on three threads, and its progress and report.

    :param read: the reader stage (opened on the shard's pieces).
    :param conform: picks the model's columns (its plan is the one the reader was opened with).
    :param write: the shard's writer stage.
    :param progress: the shard's report and progress lines.
    :param name: names the threads (``reader-<name>``, ``writer-<name>``).
    :param loading: the model is still to load when :meth:`run` begins: the reader reads further ahead meanwhile
        (:data:`READ_AHEAD_WHILE_LOADING` batches, then :data:`READ_AHEAD`).
    :param assemble: the assemble stage (default :class:`AssembleStage`; a metrics job's also counts each batch).
    """

    def __init__(
        self,
        read: ReadStage,
        conform: ConformStage,
        write: WriteStage,
        progress: ShardProgress,
        *,
        name: str,
        loading: bool = False,
        assemble: AssembleStage | None = None,
    ):
        self.read, self.conform, self.write, self.progress = read, conform, write, progress
        self.assemble = assemble if assemble is not None else AssembleStage()
        self.name = name
        self._read_queue = _ReadQueue(maxsize=READ_AHEAD_WHILE_LOADING if loading else READ_AHEAD)
        self._write_queue: queue.Queue[Any] = queue.Queue(maxsize=WRITE_AHEAD)
        self._stop = threading.Event()

    def run(self, predict: Callable[[], PredictStage]) -> ShardReport:
        """Score the shard; return its report (also written beside the staged output).

        :param predict: the predict stage; called once the reader runs (it loads the model when not loaded yet).
        :raises Exception: the first stage's error; the staged output is then aborted.
        """
        reader = _StageThread(self._read_all, f"reader-{self.name}")
        writer = _StageThread(self._write_all, f"writer-{self.name}")
        reader.start()
        try:
            stage = predict()  # the reader is reading ahead meanwhile
            self._read_queue.resize(READ_AHEAD)
            writer.start()
            self._score(stage, writer)
            self._put(self._write_queue, _DONE, writer)
            writer.join()
            reader.join()
            for thread in (reader, writer):
                if thread.error is not None:
                    raise thread.error
        except BaseException:
            self._stop.set()
            reader.join(_STOP_WAIT_S)  # it may still add bad rows to the quarantine; it stops after its batch
            if writer.is_alive():  # it stops after the table in hand (woken if it waits for one)
                with contextlib.suppress(queue.Full):
                    self._write_queue.put_nowait(_DONE)
                writer.join(_STOP_WAIT_S)
            self.write.abort()
            self.read.close()
            raise
        report = self.progress.report
        t0 = time.perf_counter()
        self.write.close(report)
        self.progress.written(time.perf_counter() - t0)
        self.read.close()
        self.write.finish(report)
        self.assemble.describe(report)
        return self.progress.finish(self.write.write_report)

    def _score(self, predict: PredictStage, writer: _StageThread) -> None:
        """The calling thread's loop: conform, predict and assemble each batch, hand it to the writer."""
        self.progress.start()
        while True:
            batch = self._read_queue.get()
            if batch is _DONE:
                return
            t0 = time.perf_counter()
            conformed = self.conform(batch)
            result = self.assemble(conformed, predict(conformed.features))
            self.progress.scored(batch.num_rows, time.perf_counter() - t0)
            self._put(self._write_queue, result, writer)
            if writer.error is not None:
                return
            self.progress.update()

    def _put(self, into: queue.Queue[Any], item: Any, consumer: threading.Thread | None) -> None:
        """Put ``item`` when there is room, unless the shard stops or the ``consumer`` died."""
        while not self._stop.is_set():
            try:
                into.put(item, timeout=0.2)
                return
            except queue.Full:
                if consumer is not None and not consumer.is_alive():
                    return

    def _read_all(self) -> None:
        """The reader thread: every batch of the shard into the read queue, then the end."""
        batches = self.read.batches()
        try:
            while not self._stop.is_set():  # set when the shard fails: stop reading after the batch in hand
                t0 = time.perf_counter()
                batch = next(batches, _DONE)
                self.progress.read(time.perf_counter() - t0)
                if batch is _DONE:
                    break
                self._put(self._read_queue, batch, None)
        finally:
            batches.close()  # closes the pieces' files when stopped early
            self._put(self._read_queue, _DONE, None)

    def _write_all(self) -> None:
        """The writer thread: every table of the write queue into the shard's output."""
        while True:
            item = self._write_queue.get()
            if item is _DONE or self._stop.is_set():
                return
            t0 = time.perf_counter()
            self.write.write(item)
            self.progress.written(time.perf_counter() - t0)
