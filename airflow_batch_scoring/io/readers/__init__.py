"""Readers that turn one piece of an input file into Arrow tables checked against the model schema.

Every reader yields tables whose columns are the model's input columns (under the schema's own names, coerced to the
schema's types) followed by the passthrough columns (under their names in the input). The formats are a registry
(:data:`READERS`, as pyarrow's ``FileFormat`` objects): a format is a :class:`~.base.PieceReader` subclass with its
``format`` name. :mod:`.columns` maps and coerces columns, :mod:`.casts` finds the values that do not fit, and
:mod:`.base` holds what the formats share (byte ranges, blocks, locating and quarantining bad lines).
"""

from __future__ import annotations

from collections.abc import Callable

import fsspec

from airflow_batch_scoring.errors import ConfigurationError
from airflow_batch_scoring.io.bad_rows.quarantine import BadRow
from airflow_batch_scoring.io.readers.base import PieceReader
from airflow_batch_scoring.io.readers.columns import ReadPlan
from airflow_batch_scoring.io.readers.csv import CsvReader
from airflow_batch_scoring.io.readers.jsonl import JsonLinesReader
from airflow_batch_scoring.io.readers.parquet import ParquetReader
from airflow_batch_scoring.specs import FileSpec

#: the reader of each file format, by ``FileSpec.format``.
READERS: dict[str, type[PieceReader]] = {
    reader.format: reader for reader in (CsvReader, JsonLinesReader, ParquetReader)
}


def make_reader(
    spec: FileSpec,
    plan: ReadPlan,
    fs: fsspec.AbstractFileSystem,
    *,
    block_size: int,
    batch_size: int,
    on_bad_row: Callable[[BadRow], None] | None = None,
) -> PieceReader:
    """Return the reader of ``spec.format``.

    :param on_bad_row: receives each row that cannot be read or coerced (quarantine); ``None`` raises
        :class:`~airflow_batch_scoring.errors.InputError` at the first one.
    :raises ConfigurationError: for a format no reader reads.
    """
    reader = READERS.get(spec.format or "")
    if reader is None:
        raise ConfigurationError(
            f"No reader for the file format {spec.format!r}; source['format'] must be one of {sorted(READERS)}."
        )
    return reader(spec, plan, fs, block_size, batch_size=batch_size, on_bad_row=on_bad_row)
