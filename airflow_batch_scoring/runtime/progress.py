"""How far a shard is, and what it did: the progress lines a replica logs and the shard's report, as one concern.

The pipeline's stages only hand over what they did (rows, seconds); :class:`ShardProgress` adds it to the
:class:`~airflow_batch_scoring.runtime.shards.ShardReport` and decides when to log a progress line.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from airflow_batch_scoring.job import Piece
from airflow_batch_scoring.runtime.shards import ShardReport


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


class ShardProgress:
    """The shard's report and its progress lines: each stage adds the seconds it worked, the scoring loop the rows.

    ``read_s``, ``predict_s`` and ``write_s`` are each stage's busy time (see :class:`ShardReport`); the rows scored
    drive the progress lines, placed in a text shard by :attr:`read_mark` (what the reader has consumed).

    :param report: the report to fill (its ``load_s`` is set by whoever loads the model).
    :param log: receives the progress lines.
    :param label: the lines' prefix (``replica 1/4``).
    :param pieces: the shard's pieces: their rows (when all are known) or, for text read by byte ranges (CSV, JSON
        lines; not compressed streams), their bytes give the share done.
    :param started: :func:`time.perf_counter` when the shard began (before the model loaded): ``duration_s`` counts
        from it.
    :param interval: seconds between two progress lines.
    """

    def __init__(
        self,
        report: ShardReport,
        log: Callable[[str], None],
        label: str,
        pieces: Sequence[Piece],
        *,
        started: float,
        interval: float,
    ):
        self.report, self.log, self.label, self.started, self.interval = report, log, label, started, interval
        self.read_mark = ReadMark()
        known = all(p.rows is not None for p in pieces)
        self.total_rows = sum(p.rows or 0 for p in pieces) if known else None
        whole_text = all(p.end >= 0 and p.row_groups is None for p in pieces)  # text byte ranges (not: compressed)
        self.total_bytes = sum(p.end - p.start for p in pieces) if whole_text else 0
        self._progress: Progress | None = None

    def start(self) -> None:
        """Scoring begins (the model is loaded): rates count from now."""
        self._progress = Progress(self.log, self.label, self.total_rows, self.interval)

    def read(self, seconds: float) -> None:
        """The reader worked ``seconds`` for one batch."""
        self.report.read_s += seconds

    def scored(self, rows: int, seconds: float) -> None:
        """The scoring thread conformed, predicted and assembled ``rows`` rows in ``seconds``."""
        self.report.predict_s += seconds
        self.report.rows_in += rows

    def written(self, seconds: float) -> None:
        """The writer worked ``seconds`` (one table, or closing the part)."""
        self.report.write_s += seconds

    def update(self) -> None:
        """Log a progress line when one is due: what was scored, not what the reader consumed ahead of the model."""
        assert self._progress is not None, "start() first"
        rows = self.report.rows_in
        self._progress.update(rows, scored_fraction(rows, self.read_mark.mark, self.total_bytes))

    def finish(self, write_report: Callable[[Mapping[str, Any]], None]) -> ShardReport:
        """The shard is done: its duration (model load included) goes in the report, ``write_report`` writes it
        (the marker that the shard is complete), then the final line is logged."""
        self.report.duration_s = time.perf_counter() - self.started
        write_report(self.report.to_dict())
        if self._progress is not None:
            self._progress.update(self.report.rows_in, None, final=True)
        return self.report
