"""The labeled rows a training callable receives: read with scoring's own readers (any source), as one pandas
DataFrame or as an iterator of ``pyarrow.RecordBatch``es; counted, sampled for the signature, and digested when the
source has no listing (a SQL table: a sha256 of the rows as read, in Arrow IPC).

Shared with the runtime: never imports Airflow.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Mapping
from typing import Any

import pyarrow as pa

from airflow_batch_scoring.coercion import ColumnIndex
from airflow_batch_scoring.errors import InputError
from airflow_batch_scoring.io.readers.columns import ReadPlan
from airflow_batch_scoring.sources import open_source
from airflow_batch_scoring.training.job import TrainingJob

#: rows kept for the model's signature and input example.
SAMPLE_ROWS = 100


class TrainingData:
    """Reads a training job's source once, in order.

    :ivar rows: rows read so far.
    :ivar label: the label column's name as the input spells it (known once the first batch is read).
    :ivar sample: the first rows (up to :data:`SAMPLE_ROWS`), label included.
    """

    def __init__(self, job: TrainingJob, secrets: Mapping[str, Any] | None):
        self.job = job
        self.secrets = secrets
        self.rows = 0
        self.label: str | None = None
        self.sample: pa.Table | None = None
        self._schema: pa.Schema | None = None
        self._hash = hashlib.sha256() if job.digest is None else None
        self._done = False

    @property
    def digest(self) -> str:
        """The digest of the input as listed, or the sha256 of the rows read."""
        if self.job.digest is not None:
            return self.job.digest
        assert self._hash is not None
        return "sha256:" + self._hash.hexdigest()

    def tables(self) -> Iterator[pa.Table]:
        """Every non-empty table of the source, the first checked for the label column.

        :raises InputError: when the label column is missing, or the source has no rows.
        """
        reading = self.job.reading_job()
        source = open_source(self.job.source, self.secrets)
        reader = source.open_reader(reading, ReadPlan(None, coerce=False), batch_size=self.job.batch_size)
        try:
            for piece in self.job.pieces:
                for table in reader.read(piece):
                    if table.num_rows == 0:
                        continue
                    yield self._seen(table, source.what)
        finally:
            reader.close()
        self._done = True
        if self.rows == 0:
            raise InputError(f"the training input {source.what} has no rows; give a source with labeled rows.")

    def _seen(self, table: pa.Table, what: str) -> pa.Table:
        if self._schema is None:
            self.label = ColumnIndex(table.column_names).get(self.job.label_column)
            if self.label is None:
                raise InputError(
                    f"the label_column column is missing from {what}; the input has columns {table.column_names}. "
                    "Fix label_column (or source['columns'] for a CSV without header). Nothing was registered.",
                    column=self.job.label_column,
                )
            self._schema = table.schema
        elif table.schema != self._schema:  # a CSV's types are inferred per block: keep the first block's if they fit
            try:
                table = table.cast(self._schema)
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError):
                pass
        if self.sample is None or self.sample.num_rows < SAMPLE_ROWS:
            head = table.slice(0, SAMPLE_ROWS - (self.sample.num_rows if self.sample is not None else 0))
            self.sample = head if self.sample is None else pa.concat_tables([self.sample, head],
                                                                             promote_options="permissive")
        self.rows += table.num_rows
        if self._hash is not None:
            sink = pa.BufferOutputStream()
            with pa.ipc.new_stream(sink, table.schema) as stream:
                stream.write_table(table)
            self._hash.update(sink.getvalue())
        return table

    def frame(self) -> Any:
        """The whole input as one pandas DataFrame (features and label)."""
        tables = list(self.tables())
        return pa.concat_tables(tables, promote_options="permissive").to_pandas()

    def batches(self) -> Iterator[pa.RecordBatch]:
        """The input as record batches, read as the callable consumes them (the first table is read now: the label
        column is checked, and its spelling known, before the callable is called)."""
        tables = self.tables()
        first = next(tables, None)

        def stream() -> Iterator[pa.RecordBatch]:
            if first is not None:
                yield from first.to_batches()
            for table in tables:
                yield from table.to_batches()

        return stream()

    def finish(self, batches: Iterator[pa.RecordBatch] | None) -> None:
        """Read what the callable left unread (the row count and digest cover the whole input)."""
        if batches is not None and not self._done:
            for _ in batches:
                pass

    def sample_features(self) -> Any:
        """The sample without the label, as a pandas DataFrame (the signature's input and the input example)."""
        assert self.sample is not None and self.label is not None
        return self.sample.drop_columns([self.label]).to_pandas()
