"""Readers that turn one piece of an input file into Arrow tables checked against the model schema.

Every reader yields tables whose columns are the model's input columns (under the schema's own names, coerced to the
schema's types) followed by the passthrough columns (under their names in the input). A value that cannot be read or
coerced stops the read with an :class:`~airflow_batch_scoring.errors.InputError` naming the file, the line (or row),
the column and the value. Text formats find that line by bisecting the failed block, so the fast path never pays for
error reporting.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, BinaryIO

import fsspec
import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.json as pa_json
import pyarrow.parquet as pq

from airflow_batch_scoring.errors import ConfigurationError, InputError
from airflow_batch_scoring.io.textblocks import count_lines_before, iter_blocks, range_bounds, split_lines
from airflow_batch_scoring.job import DataSpec, Piece
from airflow_batch_scoring.schema import Column, ColumnType, column_type_of_arrow


@dataclass
class ReadPlan:
    """What to read from each input.

    :param model_columns: the model's input columns; ``None`` when the schema is unknown (then every input column
        that is not only a passthrough column goes to the model, unchecked).
    :param coerce: check and coerce model columns to their types (``schema_check``).
    :param passthrough: input columns copied to the output beside the prediction.
    """

    model_columns: list[Column] | None
    coerce: bool = True
    passthrough: list[str] = field(default_factory=list)


@dataclass
class ColumnMap:
    """How the columns of one input file map to the model's columns and the passthrough columns."""

    model: list[tuple[str, str, pa.DataType | None]]  # (name in the schema, name in the file, type to coerce to)
    passthrough: list[str]  # names in the file

    @property
    def source_names(self) -> list[str]:
        names = [source for _, source, _ in self.model]
        return names + [p for p in self.passthrough if p not in names]

    def output(self, table: pa.Table) -> pa.Table:
        """Select and rename the table's columns into the reader's output layout."""
        arrays = [table.column(source) for _, source, _ in self.model]
        names = [name for name, _, _ in self.model]
        model_sources = {source for _, source, _ in self.model}
        for source in self.passthrough:
            if source not in model_sources:
                arrays.append(table.column(source))
                names.append(source)
        return pa.Table.from_arrays(arrays, names=names)


def resolve_columns(available: list[str], plan: ReadPlan, path: str) -> ColumnMap:
    """Match the plan's columns to the file's columns, ignoring case.

    :raises InputError: naming the first column the file lacks.
    """
    by_key: dict[str, str] = {}
    for name in available:
        by_key.setdefault(name.lower(), name)
    passthrough = []
    for name in plan.passthrough:
        if name.lower() not in by_key:
            raise InputError(
                f"the passthrough column is missing; the input has columns {available}. "
                "Fix passthrough_columns (or source['columns'] for a CSV without header).",
                path=path,
                column=name,
            )
        passthrough.append(by_key[name.lower()])
    if plan.model_columns is None:
        only_passthrough = {p.lower() for p in passthrough}
        model = [(name, name, None) for name in available if name.lower() not in only_passthrough]
        return ColumnMap(model, passthrough)
    model = []
    for column in plan.model_columns:
        source = by_key.get(column.name.lower())
        if source is None:
            raise InputError(
                f"the model's input column is missing; the input has columns {available}. Add the column to the "
                "input, fix source['columns'] (the names of a CSV without header, in file order), or fix the "
                "input schema.",
                path=path,
                column=column.name,
            )
        model.append((column.name, source, column.type.arrow_type if plan.coerce else None))
    return ColumnMap(model, passthrough)


def _type_name(arrow_type: pa.DataType) -> str:
    return f"{column_type_of_arrow(arrow_type).value} ({arrow_type})"


def _cast_fails(array: pa.Array | pa.ChunkedArray, arrow_type: pa.DataType) -> bool:
    try:
        array.cast(arrow_type)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError):
        return True
    return False


def first_bad_index(array: pa.Array | pa.ChunkedArray, arrow_type: pa.DataType) -> int:
    """Return the index of the first value of ``array`` that cannot be cast to ``arrow_type`` (by bisection)."""
    low, high = 1, len(array)
    while low < high:
        middle = (low + high) // 2
        if _cast_fails(array.slice(0, middle), arrow_type):
            high = middle
        else:
            low = middle + 1
    return low - 1


class _CastFailure(Exception):
    def __init__(self, column: str, index: int, value: Any, arrow_type: pa.DataType):
        super().__init__(column)
        self.column, self.index, self.value, self.arrow_type = column, index, value, arrow_type

    def message(self) -> str:
        return (
            f"value {self.value!r} cannot be read as {_type_name(self.arrow_type)}. Fix the value, or the column's "
            "type in the input schema (input_schema), or set schema_check=False to pass columns unchecked."
        )


def coerce(table: pa.Table, columns: ColumnMap) -> pa.Table:
    """Cast the model columns of ``table`` (file names) to their schema types.

    :raises _CastFailure: for the first value that does not fit.
    """
    for name, source, arrow_type in columns.model:
        if arrow_type is None:
            continue
        index = table.schema.get_field_index(source)
        array = table.column(index)
        if array.type == arrow_type:
            continue
        try:
            cast = array.cast(arrow_type)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError):
            bad = first_bad_index(array, arrow_type)
            raise _CastFailure(name, bad, array[bad].as_py(), arrow_type) from None
        table = table.set_column(index, source, cast)
    return table


class PieceReader:
    """Base of the format readers: yields coerced Arrow tables for the pieces of one shard."""

    def __init__(self, spec: DataSpec, plan: ReadPlan, fs: fsspec.AbstractFileSystem, block_size: int):
        self.spec = spec
        self.plan = plan
        self.fs = fs
        self.block_size = block_size
        #: bytes of text consumed so far (for progress); stays 0 for Parquet.
        self.bytes_done = 0

    def read(self, piece: Piece) -> Iterator[pa.Table]:
        raise NotImplementedError

    def _path(self, piece: Piece) -> str:
        return self.fs._strip_protocol(piece.path)


class _TextReader(PieceReader):
    """Shared logic of the line-delimited formats: byte ranges, blocks and locating a bad line."""

    def read(self, piece: Piece) -> Iterator[pa.Table]:
        path = self._path(piece)
        try:
            f = self.fs.open(path, "rb", block_size=self.block_size)
        except FileNotFoundError as err:
            raise InputError("the input file disappeared after it was listed; re-run.", path=piece.path) from err
        with f:
            size = self.fs.size(path)
            first, last = range_bounds(f, piece.start, piece.end, size)
            prologue, columns = self.open_file(f, piece)
            first = max(first, prologue)
            for offset, block in iter_blocks(f, first, last, self.block_size):
                self.bytes_done += len(block)
                try:
                    table = self.parse(block, columns, piece)
                except (pa.ArrowInvalid, _CastFailure, UnicodeDecodeError) as err:
                    raise self._locate(f, offset, block, columns, piece, err) from None
                if table.num_rows:
                    yield columns.output(table)

    def open_file(self, f: BinaryIO, piece: Piece) -> tuple[int, ColumnMap]:
        """Read what precedes the data (a header) and map the columns; return the data's first offset."""
        raise NotImplementedError

    def parse(self, block: bytes, columns: ColumnMap, piece: Piece) -> pa.Table:
        raise NotImplementedError

    def diagnose(self, line: bytes, columns: ColumnMap) -> tuple[str | None, str]:
        """Explain why one line fails: ``(column or None, message)``."""
        raise NotImplementedError

    def _fails(self, block: bytes, columns: ColumnMap, piece: Piece) -> bool:
        try:
            self.parse(block, columns, piece)
        except (pa.ArrowInvalid, _CastFailure, UnicodeDecodeError):
            return True
        return False

    def _locate(
        self, f: BinaryIO, offset: int, block: bytes, columns: ColumnMap, piece: Piece, err: Exception
    ) -> InputError:
        lines = split_lines(block)
        low, high = 1, len(lines)
        while low < high:
            middle = (low + high) // 2
            if self._fails(b"".join(lines[:middle]), columns, piece):
                high = middle
            else:
                low = middle + 1
        line_number = count_lines_before(f, offset) + low
        bad_line = lines[low - 1] if lines else b""
        if not self._fails(bad_line, columns, piece) and not isinstance(err, _CastFailure):
            # The failure needs more than one line (e.g. an unterminated quote): report the parser's own words.
            return InputError(f"cannot be parsed: {err}", path=piece.path, line=line_number)
        column, message = self.diagnose(bad_line, columns)
        return InputError(message, path=piece.path, line=line_number, column=column)


def _csv_fields(line: bytes) -> list[str]:
    text = line.decode("utf-8", errors="replace").rstrip("\r\n")
    return next(csv.reader([text]), [])


class CsvReader(_TextReader):
    """CSV with or without a header line; without one, columns are named by ``source['columns']`` or the schema."""

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self._passthrough_types: dict[str, pa.DataType] = {}

    def open_file(self, f: BinaryIO, piece: Piece) -> tuple[int, ColumnMap]:
        if self.spec.header:
            f.seek(0)
            header = f.readline()
            try:
                header.decode("utf-8")
            except UnicodeDecodeError as err:
                raise InputError("the header line is not UTF-8 text.", path=piece.path, line=1) from err
            names = _csv_fields(header)
            if not names or not any(names):
                raise InputError("the header line is empty (header=True was set).", path=piece.path, line=1)
            prologue = len(header)
        else:
            names = self.spec.columns or (
                [c.name for c in self.plan.model_columns] if self.plan.model_columns is not None else None
            )
            if not names:
                raise ConfigurationError(
                    "A CSV without header needs its column names: set source['columns'] (in file order), or give "
                    "the model's input schema, or set header=True if the file has a header line."
                )
            prologue = 0
        self._names = names
        return prologue, resolve_columns(names, self.plan, piece.path)

    def parse(self, block: bytes, columns: ColumnMap, piece: Piece) -> pa.Table:
        types = {source: t for _, source, t in columns.model if t is not None}
        for name, arrow_type in self._passthrough_types.items():
            types.setdefault(name, arrow_type)
        table = pa_csv.read_csv(
            pa.BufferReader(block),
            read_options=pa_csv.ReadOptions(column_names=self._names, use_threads=True),
            parse_options=pa_csv.ParseOptions(newlines_in_values=self.spec.newlines_in_values),
            convert_options=pa_csv.ConvertOptions(column_types=types, include_columns=columns.source_names),
        )
        if table.num_rows and len(self._passthrough_types) < len(columns.passthrough):
            # Fix the passthrough columns' types on the first rows, so that every part has the same schema.
            for name in columns.passthrough:
                index = table.schema.get_field_index(name)
                arrow_type = table.schema.field(index).type
                if pa.types.is_null(arrow_type):
                    arrow_type = pa.string()
                    table = table.set_column(index, name, table.column(index).cast(arrow_type))
                self._passthrough_types.setdefault(name, arrow_type)
        return table

    def diagnose(self, line: bytes, columns: ColumnMap) -> tuple[str | None, str]:
        try:
            line.decode("utf-8")
        except UnicodeDecodeError as err:
            return None, f"the line is not UTF-8 text ({err})."
        values = _csv_fields(line)
        if len(values) != len(self._names):
            return None, (
                f"the line has {len(values)} field(s) where {len(self._names)} are expected "
                f"({', '.join(self._names)}). Check the delimiter (a comma), the quoting, and source['columns']."
            )
        position = {name: i for i, name in enumerate(self._names)}
        for name, source, arrow_type in columns.model:
            if arrow_type is None:
                continue
            try:
                pa_csv.read_csv(
                    io.BytesIO(line),
                    read_options=pa_csv.ReadOptions(column_names=self._names),
                    convert_options=pa_csv.ConvertOptions(column_types={source: arrow_type}, include_columns=[source]),
                )
            except pa.ArrowInvalid:
                value = values[position[source]]
                return name, _CastFailure(name, 0, value, arrow_type).message()
        return None, "the line cannot be parsed; check its quoting."


class JsonLinesReader(_TextReader):
    """JSON lines: one object per line; keys are matched to the schema ignoring case."""

    def open_file(self, f: BinaryIO, piece: Piece) -> tuple[int, ColumnMap]:
        return 0, ColumnMap([], [])

    def parse(self, block: bytes, columns: ColumnMap, piece: Piece) -> pa.Table:
        table = pa_json.read_json(pa.BufferReader(block), read_options=pa_json.ReadOptions(use_threads=True))
        if not table.num_rows:
            return table
        mapped = resolve_columns(table.column_names, self.plan, piece.path)
        columns.model, columns.passthrough = mapped.model, mapped.passthrough
        return coerce(table, columns)

    def diagnose(self, line: bytes, columns: ColumnMap) -> tuple[str | None, str]:
        try:
            record = json.loads(line)
        except (ValueError, UnicodeDecodeError) as err:
            return None, f"the line is not valid JSON ({err}); each line must hold one JSON object."
        if not isinstance(record, dict):
            return None, f"the line holds a JSON {type(record).__name__}, not an object."
        by_key = {k.lower(): v for k, v in record.items()}
        for name, _, arrow_type in columns.model:
            value = by_key.get(name.lower())
            if arrow_type is None or value is None:
                continue
            if isinstance(value, (dict, list)) or _cast_fails(pa.array([value]), arrow_type):
                return name, _CastFailure(name, 0, value, arrow_type).message()
        return None, "the line's values change type against earlier lines; check the column types."


class ParquetReader(PieceReader):
    """Parquet: a piece is a list of row groups, read in batches of ``batch_size`` rows."""

    def __init__(self, *args: Any, batch_size: int, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.batch_size = batch_size

    def read(self, piece: Piece) -> Iterator[pa.Table]:
        path = self._path(piece)
        with self.fs.open(path, "rb", block_size=self.block_size) as f:
            try:
                parquet = pq.ParquetFile(f)
            except (pa.ArrowInvalid, OSError) as err:
                raise InputError(
                    f"is not a readable Parquet file ({err}); replace the file or remove it from the input.",
                    path=piece.path,
                ) from err
            columns = resolve_columns(parquet.schema_arrow.names, self.plan, piece.path)
            groups = piece.row_groups if piece.row_groups is not None else range(parquet.num_row_groups)
            starts = [0]
            for index in range(parquet.num_row_groups):
                starts.append(starts[-1] + parquet.metadata.row_group(index).num_rows)
            for group in groups:
                row = starts[group]
                try:
                    batches = parquet.iter_batches(
                        batch_size=self.batch_size, row_groups=[group], columns=columns.source_names
                    )
                    for batch in batches:
                        table = pa.Table.from_batches([batch])
                        try:
                            table = coerce(table, columns)
                        except _CastFailure as failure:
                            raise InputError(
                                failure.message(), path=piece.path, row=row + failure.index + 1, column=failure.column
                            ) from None
                        row += batch.num_rows
                        yield columns.output(table)
                except (pa.ArrowInvalid, OSError) as err:
                    raise InputError(
                        f"row group {group} cannot be read ({err}); the file is damaged: replace it.", path=piece.path
                    ) from err


def make_reader(
    spec: DataSpec, plan: ReadPlan, fs: fsspec.AbstractFileSystem, *, block_size: int, batch_size: int
) -> PieceReader:
    """Return the reader of ``spec.format``."""
    readers: dict[str, Callable[..., PieceReader]] = {
        "csv": CsvReader,
        "jsonl": JsonLinesReader,
    }
    if spec.format == "parquet":
        return ParquetReader(spec, plan, fs, block_size, batch_size=batch_size)
    return readers[spec.format](spec, plan, fs, block_size)


def column_types_of(table: pa.Table) -> list[dict[str, str]]:
    """Describe a table's columns with the seven schema types."""
    return [{"name": f.name, "type": column_type_of_arrow(f.type).value} for f in table.schema]


__all__ = ["ColumnType", "ReadPlan", "make_reader", "resolve_columns", "coerce", "column_types_of"]
