"""The stages a shard goes through: read -> conform -> predict -> assemble -> write.

Each stage does one thing to one batch and knows nothing of threads, queues or the report
(:class:`~airflow_batch_scoring.runtime.pipeline.ShardPipeline` runs them; :class:`~airflow_batch_scoring.runtime.
progress.ShardProgress` keeps the report). A batch is an Arrow table and flows through without copies: conforming
selects columns, assembling puts the passthrough columns as read beside the model's outputs.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

from airflow_batch_scoring.errors import BatchScoringError, ConfigurationError
from airflow_batch_scoring.flavors import Predictor
from airflow_batch_scoring.io.readers.columns import ReadPlan, column_types_of
from airflow_batch_scoring.job import Piece, ScoringJob
from airflow_batch_scoring.runtime.missing_values import INFINITE, MISSING, refused_kinds
from airflow_batch_scoring.runtime.progress import ReadMark
from airflow_batch_scoring.runtime.shards import ShardReport
from airflow_batch_scoring.schema import ModelSchema
from airflow_batch_scoring.sinks.base import ShardWriter
from airflow_batch_scoring.sources.base import ShardReader


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


class ReadStage:
    """read: the shard's pieces through the source's :class:`ShardReader`, cut into batches of ``batch_size`` rows.

    :param mark: records the rows read and the text bytes consumed for them, after each table (for progress).
    """

    def __init__(self, reader: ShardReader, pieces: Sequence[Piece], batch_size: int, mark: ReadMark | None = None):
        self.reader, self.pieces, self.batch_size = reader, list(pieces), batch_size
        self.mark = mark if mark is not None else ReadMark()

    def _tables(self) -> Iterator[pa.Table]:
        for piece in self.pieces:
            for table in self.reader.read(piece):
                self.mark.record(table.num_rows, self.reader.bytes_done)
                yield table

    def batches(self) -> Generator[pa.Table, None, None]:
        """The shard's rows, batch by batch (closing the generator closes the piece being read)."""
        return rebatch(self._tables(), self.batch_size)

    def close(self) -> None:
        self.reader.close()


@dataclass(frozen=True)
class Conformed:
    """A batch as the model takes it.

    :param batch: the batch as read (the model's columns, checked and coerced by the reader, and the passthrough ones).
    :param features: the model's input columns, in the schema's order.
    :param passthrough: the batch's names of the passthrough columns, in the order asked.
    """

    batch: pa.Table
    features: pa.Table
    passthrough: list[str]


@dataclass(frozen=True)
class ConformStage:
    """conform: the model's input columns of a batch, in the schema's order, apart from the passthrough columns.

    Its :attr:`plan` tells the reader how to check and coerce each input column to the model schema (and which
    missing or infinite values are bad rows), so a batch arrives already conformed in types; this stage picks and
    orders the columns.

    :param plan: how the reader reads the input for the model.
    :param model_names: the model's input columns, ``None`` when the schema is unknown (then every column that is not
        a passthrough column goes to the model).
    """

    plan: ReadPlan
    model_names: list[str] | None = field(default=None)

    @classmethod
    def for_job(
        cls, job: ScoringJob, schema: ModelSchema | None, rejected: frozenset[str] = frozenset()
    ) -> ConformStage:
        """The conforming of ``job``'s input to ``schema``; values of the ``rejected`` kinds (``missing``,
        ``infinite``) are bad rows."""
        plan = ReadPlan(
            model_columns=list(schema.columns) if schema is not None else None,
            coerce=job.schema_check,
            passthrough=list(job.passthrough_columns),
            passthrough_types=job.passthrough_arrow_types(),
            reject_missing=MISSING in rejected,
            reject_infinite=INFINITE in rejected,
        )
        return cls(plan, [c.name for c in schema.columns] if schema is not None else None)

    def __call__(self, batch: pa.Table) -> Conformed:
        by_key = {name.lower(): name for name in batch.column_names}  # passthrough names match ignoring case
        passthrough = [by_key[name.lower()] for name in self.plan.passthrough]
        names = self.model_names or [n for n in batch.column_names if n not in passthrough]
        return Conformed(batch, batch.select(names), passthrough)


class PredictStage:
    """predict: the model's output columns for a batch's features.

    A model that fails on a batch holding missing or infinite values (:func:`refused_kinds` tells which) fails with
    the error ``on_refused`` makes of the failure and the kinds refused (locating the first such value, or asking to
    score the shard again setting those rows aside); any other failure is the model's own.
    """

    def __init__(self, predictor: Predictor, on_refused: Callable[[Exception, set[str]], BaseException]):
        self.predictor, self.on_refused = predictor, on_refused

    def __call__(self, features: pa.Table) -> pa.Table:
        try:
            return self.predictor.predict(features)
        except BatchScoringError:
            raise
        except Exception as err:
            kinds = refused_kinds(self.predictor.predict, features)
            if not kinds:
                raise
            raise self.on_refused(err, kinds) from err


class AssembleStage:
    """assemble: the output table of a batch, its passthrough columns (as read) then the model's outputs.

    On the first batch it refuses a passthrough column named as a model output, and notes the input and output
    columns' types (:attr:`input_schema`, :attr:`output_columns`) for the shard's report.
    """

    def __init__(self) -> None:
        self.input_schema: list[dict[str, str]] | None = None
        self.output_columns: list[dict[str, str]] | None = None

    def __call__(self, conformed: Conformed, outputs: pa.Table) -> pa.Table:
        passthrough = conformed.passthrough
        first = self.output_columns is None
        if first:
            lowered = {p.lower() for p in passthrough}
            clash = [n for n in outputs.column_names if n.lower() in lowered]
            if clash:
                raise ConfigurationError(
                    f"The passthrough column(s) {clash} have the same name as a model output; rename them."
                )
            self.input_schema = column_types_of(conformed.features)
        result = pa.Table.from_arrays(
            [conformed.batch.column(n) for n in passthrough] + outputs.columns,
            names=passthrough + outputs.column_names,
        )
        if first:
            self.output_columns = column_types_of(result)
        return result

    def describe(self, report: ShardReport) -> None:
        """Put the columns' types in the shard's report."""
        report.input_schema, report.output_columns = self.input_schema, self.output_columns


class WriteStage:
    """write: the assembled tables into the sink's :class:`ShardWriter` (the shard's staged part), then the report.

    The shard's bad rows (``on_bad_rows="quarantine"``) go to the writer's quarantine, which the reader fills.
    """

    def __init__(self, writer: ShardWriter):
        self.writer = writer

    def write(self, table: pa.Table) -> None:
        self.writer.write(table)

    def close(self, report: ShardReport) -> None:
        """Complete the staged output and note in ``report`` the rows written, the parts and the bad rows set aside."""
        report.rows_out = self.writer.close()
        report.parts = self.writer.parts

    def finish(self, report: ShardReport) -> None:
        """The bad rows set aside (their parts and counts) into ``report``."""
        if self.writer.quarantine is not None:
            self.writer.quarantine.finish(report)

    def abort(self) -> None:
        self.writer.abort()

    def write_report(self, report: Mapping[str, Any]) -> None:
        self.writer.write_report(report)
