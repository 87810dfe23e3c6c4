"""Readers that turn one piece of an input file into Arrow tables checked against the model schema.

Every reader yields tables whose columns are the model's input columns (under the schema's own names, coerced to the
schema's types) followed by the passthrough columns (under their names in the input). A value that cannot be read or
coerced stops the read with an :class:`~airflow_batch_scoring.errors.InputError` naming the file, the line (or row),
the column and the value. Text formats find that line by bisecting the failed block, so the fast path never pays for
error reporting. With a bad-row handler set (``on_bad_rows="quarantine"``, see
:mod:`airflow_batch_scoring.io.bad_rows`), a failed block is split instead into its good runs, which are read as
usual and in order, and its bad lines (or Parquet rows), which go to the handler with a reason code.
"""

from __future__ import annotations

import codecs
import csv
import io
import json
import re
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from itertools import accumulate
from typing import Any, BinaryIO

import fsspec
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv
import pyarrow.json as pa_json
import pyarrow.parquet as pq

from airflow_batch_scoring.errors import ConfigurationError, InputError
from airflow_batch_scoring.io import bad_rows, csv_header
from airflow_batch_scoring.io.bad_rows import BadRow, raw_text, salvage
from airflow_batch_scoring.io.textblocks import (
    DEFAULT_MAX_LINE_BYTES,
    HEAD_BYTES,
    LongLine,
    count_lines_before,
    detect_newline,
    first_line,
    iter_blocks,
    last_line_end,
    last_record_end,
    range_bounds,
    split_lines,
)
from airflow_batch_scoring.job import AUTO, DataSpec, Piece, compression_of
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
    #: a model column without a value (null, or NaN) is a bad row: set when a model refused missing values, to find
    #: the first one's file, line (or row) and column, or to quarantine them.
    reject_missing: bool = False
    #: the passthrough columns' types for the whole run, by lower-cased name (``ScoringJob.passthrough_types``). A
    #: column left out is read as text from CSV and JSON lines, and as the source's own type from Parquet and SQL.
    passthrough_types: dict[str, pa.DataType] = field(default_factory=dict)
    #: the same for a model column holding inf or -inf, when a model refused infinite values.
    reject_infinite: bool = False

    @property
    def rejects(self) -> bool:
        """Whether missing or infinite values are bad rows."""
        return self.reject_missing or self.reject_infinite


@dataclass
class ColumnMap:
    """How the columns of one input file map to the model's columns and the passthrough columns."""

    model: list[tuple[str, str, pa.DataType | None]]  # (name in the schema, name in the file, type to coerce to)
    passthrough: list[str]  # names in the file
    #: the type each passthrough column (name in the file) is cast to; a column left out keeps the type it is read as.
    passthrough_types: dict[str, pa.DataType] = field(default_factory=dict)

    def typed(self) -> list[tuple[str, str, pa.DataType | None]]:
        """The model columns, then the passthrough columns that are not model columns, each with its type."""
        sources = {source for _, source, _ in self.model}
        return self.model + [
            (name, name, self.passthrough_types.get(name)) for name in self.passthrough if name not in sources
        ]

    def failure(self, position: int, index: int, value: Any, arrow_type: pa.DataType) -> _CastFailure:
        """The cast failure of the ``position``-th column of :meth:`typed` at row ``index``."""
        name = self.typed()[position][0]
        kind = _CastFailure if position < len(self.model) else _PassthroughCastFailure
        return kind(name, index, value, arrow_type)

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


def _delimiter_hint(available: list[str]) -> str:
    """A hint when a CSV header was read as one column because the file uses another delimiter."""
    if len(available) == 1:
        for delimiter in (";", "\t", "|"):
            if delimiter in available[0]:
                return f" The header seems to use {delimiter!r} as its delimiter, where a comma is expected."
    return ""


def resolve_columns(
    available: list[str], plan: ReadPlan, path: str, passthrough_default: pa.DataType | None = None
) -> ColumnMap:
    """Match the plan's columns to the file's columns, ignoring case.

    :param passthrough_default: the type of a passthrough column the plan gives none (text formats: string).

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
                "Fix passthrough_columns (or source['columns'] for a CSV without header)." + _delimiter_hint(available),
                path=path,
                column=name,
            )
        passthrough.append(by_key[name.lower()])
    types = {
        by_key[name.lower()]: arrow_type for name in plan.passthrough
        if (arrow_type := plan.passthrough_types.get(name.lower(), passthrough_default)) is not None
    }
    if plan.model_columns is None:
        only_passthrough = {p.lower() for p in passthrough}
        model = [(name, name, None) for name in available if name.lower() not in only_passthrough]
        return ColumnMap(model, passthrough, types)
    model = []
    for column in plan.model_columns:
        source = by_key.get(column.name.lower())
        if source is None:
            raise InputError(
                f"the model's input column is missing; the input has columns {available}. Add the column to the "
                "input, fix source['columns'] (the names of a CSV without header, in file order), or fix the "
                "input schema." + _delimiter_hint(available),
                path=path,
                column=column.name,
            )
        model.append((column.name, source, column.type.arrow_type if plan.coerce else None))
    return ColumnMap(model, passthrough, types)


def _type_name(arrow_type: pa.DataType) -> str:
    return f"{column_type_of_arrow(arrow_type).value} ({arrow_type})"


def _cast_fails(array: pa.Array | pa.ChunkedArray, arrow_type: pa.DataType) -> bool:
    try:
        array.cast(arrow_type)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError):
        return True
    return False


def bad_indices(array: pa.Array | pa.ChunkedArray, arrow_type: pa.DataType) -> list[int]:
    """Return the indices of every value of ``array`` that cannot be cast to ``arrow_type``, in order.

    Slices are halved until they cast, so ``k`` bad values among ``n`` cost about ``2k log n`` vectorised casts.
    """
    found: list[int] = []
    stack = [(0, len(array))]
    while stack:
        low, high = stack.pop()
        if low >= high or not _cast_fails(array.slice(low, high - low), arrow_type):
            continue
        if high - low == 1:
            found.append(low)
            continue
        middle = (low + high) // 2
        stack.append((middle, high))
        stack.append((low, middle))
    return found


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

    @property
    def expected(self) -> str:
        return column_type_of_arrow(self.arrow_type).value

    def message(self) -> str:
        return (
            f"value {self.value!r} cannot be read as {_type_name(self.arrow_type)}. Fix the value, or the column's "
            "type in the input schema (input_schema), or set schema_check=False to pass columns unchecked."
        )

    def diagnosis(self) -> Diagnosis:
        return Diagnosis(bad_rows.TYPE_MISMATCH, self.message(), self.column, self.value, self.expected)


class _PassthroughCastFailure(_CastFailure):
    """A passthrough value that does not fit the run's type for its column (given, or the source's own)."""

    def message(self) -> str:
        return (
            f"value {self.value!r} of the passthrough column cannot be read as {_type_name(self.arrow_type)}, the "
            "column's type for this run (from passthrough_schema, or the source's own type). Fix the value, or give "
            'the column another type in passthrough_schema ([{"name": ..., "type": "String"}] carries any value as '
            "text)."
        )


class _MissingValue(_CastFailure):
    """A model column without a value (empty, null or NaN), when the plan rejects missing values."""

    def __init__(self, column: str, index: int):
        super().__init__(column, index, None, pa.null())

    @property
    def expected(self) -> str | None:  # type: ignore[override]
        return None

    def message(self) -> str:
        return (
            "the value is missing (empty, null or NaN), and the model does not accept missing values. Fill it "
            "upstream, or score with a model that handles them (e.g. with an imputer in its pipeline)."
        )

    def diagnosis(self) -> Diagnosis:
        return Diagnosis(bad_rows.MISSING_VALUE, self.message(), self.column)


class _InfiniteValue(_MissingValue):
    """A model column holding inf or -inf, when the plan rejects infinite values."""

    def message(self) -> str:
        return (
            "the value is infinite (inf or -inf), and the model does not accept infinite values. Replace it upstream "
            "(with a finite value, or an empty one if the model accepts missing values), or score with a model that "
            "handles them."
        )

    def diagnosis(self) -> Diagnosis:
        return Diagnosis(bad_rows.INFINITE_VALUE, self.message(), self.column)


def _refused(table: pa.Table, columns: ColumnMap, plan: ReadPlan) -> Iterator[tuple[str, pa.ChunkedArray, bool]]:
    """``(column, mask, infinite)`` for each kind of value the plan rejects in each model column (mask: True where
    the row holds one; ``infinite``: the kind is inf, else missing)."""
    for name, source, _ in columns.model:
        array = table.column(source)
        floating = pa.types.is_floating(array.type)
        if plan.reject_missing:
            missing = pc.is_null(array)
            yield name, pc.fill_null(pc.or_kleene(missing, pc.is_nan(array)), True) if floating else missing, False
        if plan.reject_infinite and floating:
            yield name, pc.fill_null(pc.is_inf(array), False), True


def check_missing(table: pa.Table, columns: ColumnMap, plan: ReadPlan | None = None) -> None:
    """Raise for the first row (in row order) that lacks a value in a model column, or (``plan.reject_infinite``)
    holds an infinite one.

    :raises _MissingValue: (or :class:`_InfiniteValue`) naming the column and the row's index in ``table``.
    """
    first: tuple[int, str, bool] | None = None
    for name, mask, infinite in _refused(table, columns, plan or ReadPlan(None, reject_missing=True)):
        index = pc.index(mask, True).as_py()
        if index >= 0 and (first is None or index < first[0]):
            first = (index, name, infinite)
    if first is not None:
        raise (_InfiniteValue if first[2] else _MissingValue)(first[1], first[0])


def refused_rows(table: pa.Table, columns: ColumnMap, plan: ReadPlan) -> dict[int, _MissingValue]:
    """Each row of ``table`` that holds a value the plan rejects, with its first such value (in column order)."""
    found: dict[int, _MissingValue] = {}
    for name, mask, infinite in _refused(table, columns, plan):
        if pc.any(mask).as_py():
            for index in pc.indices_nonzero(mask).to_pylist():
                found.setdefault(index, (_InfiniteValue if infinite else _MissingValue)(name, index))
    return found


@dataclass
class Diagnosis:
    """Why one line (or row) cannot be read: a reason code (see :mod:`airflow_batch_scoring.io.bad_rows`), a message,
    and the column, value and expected type when one value is at fault."""

    reason: str
    message: str
    column: str | None = None
    value: Any = None
    expected: str | None = None


class _LeadingBadRows:
    """Tells a file that is wrong as a whole from a file with a few bad rows, for quarantine.

    A piece that starts at its file's first data row and meets only bad rows, LEADING_BAD_LINES of them or up to the
    file's end, is a file error (a wrong delimiter, a wrong type for a whole column), not bad rows.
    """

    def __init__(self, path: str, applies: bool, unit: str = "line"):
        self.path, self.applies, self.unit = path, applies, unit
        self.good = False
        self.bad = 0
        self.first: BadRow | None = None

    def add(self, bad: BadRow) -> None:
        if self.good or not self.applies:
            return
        self.bad += 1
        self.first = self.first or bad
        if self.bad >= bad_rows.LEADING_BAD_LINES:
            raise self._error(f"none of its first {self.bad} {self.unit}s can be read")

    def finish(self, whole_file: bool) -> None:
        if self.applies and whole_file and not self.good and self.bad:
            raise self._error(f"none of its {self.bad} {self.unit}(s) can be read")

    def _error(self, what: str) -> InputError:
        assert self.first is not None
        return InputError(
            f"{what} ({self.first.reason}; the first: {self.first.describe()}). The file as a whole does not match "
            "the expected layout: check the delimiter (a comma), header=True/False, source['columns'], the format "
            "and the column types. on_bad_rows='quarantine' sets aside single bad rows, not whole files.",
            path=self.path,
        )


def coerce(table: pa.Table, columns: ColumnMap) -> pa.Table:
    """Cast the model columns of ``table`` (file names) to their schema types, and the passthrough columns to the
    run's types for them.

    :raises _CastFailure: for the first value that does not fit.
    """
    for position, (_, source, arrow_type) in enumerate(columns.typed()):
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
            raise columns.failure(position, bad, array[bad].as_py(), arrow_type) from None
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
        #: receives each bad row (quarantine); ``None`` stops at the first bad row (fail).
        self.on_bad_row: Callable[[BadRow], None] | None = None

    def read(self, piece: Piece) -> Iterator[pa.Table]:
        raise NotImplementedError

    def _path(self, piece: Piece) -> str:
        return self.fs._strip_protocol(piece.path)

    def _open(self, piece: Piece) -> BinaryIO:
        """Open the piece's file for reading.

        :raises InputError: when it vanished, is a folder, or cannot be read (permissions, the store refused).
        """
        try:
            return self.fs.open(
                self._path(piece), "rb", block_size=self.block_size, compression=compression_of(piece.path)
            )
        except FileNotFoundError as err:
            raise InputError("the input file disappeared after it was listed; re-run.", path=piece.path) from err
        except IsADirectoryError as err:
            raise InputError(
                "is a folder, not a file, though it was listed as a file (it was replaced meanwhile?); "
                "remove it from the input or fix the source URI.", path=piece.path,
            ) from err
        except PermissionError as err:
            raise InputError(
                f"cannot be read: access was refused ({err}). Check the file's permissions, or the rights of the "
                "source's connection on that object.", path=piece.path,
            ) from err
        except OSError as err:
            raise InputError(
                f"cannot be opened ({type(err).__name__}: {err}); check that it is a readable file.", path=piece.path
            ) from err


class _TextReader(PieceReader):
    """Shared logic of the line-delimited formats: byte ranges, blocks and locating a bad line."""

    #: the line break of the file being read (``\r`` for classic Mac OS text, whose blocks are handed on with ``\n``).
    newline: bytes = b"\n"

    @property
    def max_line(self) -> int:
        """The longest line (or CSV record) read, in bytes: ``source['max_line_bytes']`` (default 16 MiB)."""
        return self.spec.max_line_bytes or DEFAULT_MAX_LINE_BYTES

    @property
    def records(self) -> bool:
        """Whether a unit is a CSV record whose quoted values may hold line breaks (else a line)."""
        return False

    def read(self, piece: Piece) -> Iterator[pa.Table]:
        path = self._path(piece)
        with self._open(piece) as f:
            if compression_of(piece.path):  # a stream, read whole from its start (its decompressed size is unknown)
                size = first = 0
                last = sys.maxsize
                self.newline = detect_newline(f.read(HEAD_BYTES))
            else:
                size = self.fs.size(path)
                # (a small ranged read of its own: through ``f`` it would fetch a whole block_size at offset 0)
                self.newline = detect_newline(self.fs.cat_file(path, start=0, end=min(size, HEAD_BYTES)))
                first, last = range_bounds(f, piece.start, piece.end, size, self.newline)
            prologue, columns = self.open_file(f, piece)
            first = max(first, prologue)
            leading = _LeadingBadRows(piece.path, applies=piece.start <= 0)
            lines_before: int | None = None  # newlines before ``first`` (counted once, on the first bad line)
            lines_seen = 0  # newlines in the blocks read so far (counted only when quarantining)
            blocks = iter_blocks(
                f, first, last, self.block_size, cut=self.block_end, max_line=self.max_line, records=self.records,
                newline=self.newline,
            )
            for offset, block in blocks:
                if isinstance(block, LongLine):
                    self.bytes_done += block.length
                    if self.on_bad_row is None:
                        raise self._too_long(block, piece, count_lines_before(f, offset, self.newline) + 1)
                    if lines_before is None:
                        position = f.tell()
                        lines_before = count_lines_before(f, first, self.newline)
                        f.seek(position)
                    bad = self._too_long(block, piece, lines_before + lines_seen + 1)
                    self.on_bad_row(bad)
                    leading.add(bad)
                    lines_seen += block.newlines
                    continue
                self.bytes_done += len(block)
                try:
                    table = self.parse(block, columns, piece)
                except (pa.ArrowInvalid, _CastFailure, UnicodeDecodeError) as err:
                    if self.on_bad_row is None:
                        raise self._locate(f, offset, block, columns, piece, err) from None
                    if lines_before is None:
                        position = f.tell()
                        lines_before = count_lines_before(f, first)
                        f.seek(position)
                    yield from self._quarantine(block, columns, piece, lines_before + lines_seen, leading)
                else:
                    if table.num_rows:
                        leading.good = True
                        yield columns.output(table)
                if self.on_bad_row is not None:
                    lines_seen += block.count(b"\n")
            leading.finish(whole_file=first <= prologue and (last >= size or last == sys.maxsize))

    def _too_long(self, line: LongLine, piece: Piece, number: int) -> Any:
        """A line longer than ``max_line``: a bad row (``line_too_long``), or the error to raise without a handler."""
        what = "record" if self.records else "line"
        message = (
            f"the {what} is {line.length:,} bytes long, more than max_line_bytes={self.max_line:,}; it was skipped "
            f"unread. Fix the {what} (a missing line break? a wrong newlines_in_values?), or raise "
            "source['max_line_bytes'] if such lines are expected (a replica holds up to about that many bytes for "
            "one line)."
        )
        if self.on_bad_row is None:
            return InputError(message, path=piece.path, line=number)
        return BadRow(
            bad_rows.LINE_TOO_LONG, piece.path, line=number, message=message,
            raw=raw_text(line.head, self.encoding) + ("...(truncated)" if line.length > len(line.head) else ""),
        )

    @property
    def encoding(self) -> str:
        """The source's text encoding (``source['encoding']``, default UTF-8)."""
        return self.spec.encoding or "utf-8"

    def text(self, data: bytes) -> bytes:
        """``data`` as UTF-8 (what Arrow reads): checked when the source is UTF-8, else decoded and re-encoded.

        :raises UnicodeDecodeError: when ``data`` is not text in the source's encoding.
        """
        if data.isascii():
            return data
        if self.spec.encoding:
            return data.decode(self.spec.encoding).encode("utf-8")
        decoder = codecs.getincrementaldecoder("utf-8")()  # (in slices: never a second copy of the whole block)
        step = 1 << 20
        for start in range(0, len(data), step):
            decoder.decode(data[start : start + step], final=start + step >= len(data))
        return data

    def undecodable(self, line: bytes) -> Diagnosis | None:
        """The diagnosis of a line that is not text in the source's encoding (``None`` when it is)."""
        try:
            line.decode(self.encoding)
        except UnicodeDecodeError as err:
            column, value = self.undecodable_value(line)
            if self.spec.encoding:
                reason = bad_rows.INVALID_ENCODING
                message = (
                    f"the {'value' if column else 'line'} is not {self.spec.encoding} text ({err.reason} at byte "
                    f"{err.start} of the line); fix the file or source['encoding']."
                )
            else:
                reason = bad_rows.INVALID_UTF8
                message = (
                    f"the {'value' if column else 'line'} is not UTF-8 text (byte 0x{line[err.start]:02x} at byte "
                    f"{err.start} of the line: {err.reason}); write the file as UTF-8, or set source['encoding'] to "
                    "the file's encoding (e.g. 'latin-1' or 'cp1252')."
                )
            return Diagnosis(reason, message, column, value)
        return None

    def undecodable_value(self, line: bytes) -> tuple[str | None, str | None]:
        """The column and value (undecodable bytes shown as ``\\xe9``) of a line's first undecodable value."""
        return None, None

    def shown(self, text: str) -> str:
        """A value decoded with ``surrogateescape``, its undecodable bytes written as ``\\xe9``."""
        return text.encode(self.encoding, errors="surrogateescape").decode(self.encoding, errors="backslashreplace")

    def units(self, block: bytes) -> list[bytes]:
        """Cut a block into the units a bad row is made of (lines; CSV records with quoted line breaks)."""
        return split_lines(block)

    def block_end(self, buffer: bytes) -> int:
        """Where the whole units of ``buffer`` end: a block never cuts a record in two."""
        return last_line_end(buffer)

    def _quarantine(
        self, block: bytes, columns: ColumnMap, piece: Piece, lines_before: int, leading: _LeadingBadRows
    ) -> Iterator[pa.Table]:
        """Yield the good runs of a block that failed, in order, and hand each bad line to ``on_bad_row``."""
        assert self.on_bad_row is not None
        units = self.units(block)
        newlines: list[int] | None = None

        def parse(data: bytes) -> pa.Table:
            return columns.output(self.parse(data, columns, piece, partial=True))

        for item in salvage(units, parse, (pa.ArrowInvalid, _CastFailure, UnicodeDecodeError)):
            if isinstance(item, pa.Table):
                if item.num_rows:
                    leading.good = True
                    yield item
                continue
            if newlines is None:
                newlines = list(accumulate((unit.count(b"\n") for unit in units), initial=0))
            diagnosis = self._missing_in(units[item], columns, piece) or self.diagnose(units[item], columns)
            bad = BadRow(
                diagnosis.reason, piece.path, line=lines_before + newlines[item] + 1, column=diagnosis.column,
                value=diagnosis.value, expected_type=diagnosis.expected, message=diagnosis.message,
                raw=raw_text(units[item], self.encoding),
            )
            self.on_bad_row(bad)
            leading.add(bad)

    def open_file(self, f: BinaryIO, piece: Piece) -> tuple[int, ColumnMap]:
        """Read what precedes the data (a header) and map the columns; return the data's first offset."""
        raise NotImplementedError

    def parse(self, block: bytes, columns: ColumnMap, piece: Piece, partial: bool = False) -> pa.Table:
        """Parse and coerce a block of whole lines.

        :param partial: the block is a run of lines cut out of a failed block (quarantine): columns it lacks are
            nulls, as they would have been in the whole block.
        """
        raise NotImplementedError

    def diagnose(self, line: bytes, columns: ColumnMap) -> Diagnosis:
        """Explain why one line fails."""
        raise NotImplementedError

    def _fails(self, block: bytes, columns: ColumnMap, piece: Piece) -> bool:
        # A run of lines cut from a block is parsed as a part of it (``partial``): a JSON line that lacks keys the
        # block's other lines have is not, on its own, a file without those columns.
        try:
            self.parse(block, columns, piece, partial=True)
        except (pa.ArrowInvalid, _CastFailure, UnicodeDecodeError):
            return True
        return False

    def _locate(
        self, f: BinaryIO, offset: int, block: bytes, columns: ColumnMap, piece: Piece, err: Exception
    ) -> InputError:
        lines = self.units(block)  # lines, or CSV records that may span lines
        low, high = 1, len(lines)
        while low < high:
            middle = (low + high) // 2
            if self._fails(b"".join(lines[:middle]), columns, piece):
                high = middle
            else:
                low = middle + 1
        newlines_before = sum(unit.count(b"\n") for unit in lines[: low - 1])
        line_number = count_lines_before(f, offset, self.newline) + newlines_before + 1  # (the record's first line)
        bad_line = lines[low - 1] if lines else b""
        missing = self._missing_in(bad_line, columns, piece) if isinstance(err, _MissingValue) else None
        if missing is not None:
            diagnosis = missing
        elif not self._fails(bad_line, columns, piece) and not isinstance(err, _CastFailure):
            diagnosis = self.in_context(bad_line, columns, err)
        else:
            diagnosis = self.diagnose(bad_line, columns)
        return InputError(diagnosis.message, path=piece.path, line=line_number, column=diagnosis.column)

    def _missing_in(self, unit: bytes, columns: ColumnMap, piece: Piece) -> Diagnosis | None:
        """The diagnosis of a unit that reads but lacks a value in a model column (``plan.reject_missing``), or holds
        an infinite one (``plan.reject_infinite``)."""
        if not self.plan.rejects:
            return None
        try:
            self.parse(unit, columns, piece, partial=True)
        except _MissingValue as missing:
            return missing.diagnosis()
        except (pa.ArrowInvalid, _CastFailure, UnicodeDecodeError):
            return None
        return None

    def in_context(self, line: bytes, columns: ColumnMap, err: Exception) -> Diagnosis:
        """Explain a line that reads alone but fails after the lines before it (``err``: the block's error)."""
        diagnosis = self.diagnose(line, columns)
        if diagnosis.reason != bad_rows.MALFORMED_ROW:
            return diagnosis
        return Diagnosis(bad_rows.MALFORMED_ROW, f"cannot be parsed: {err}")


_BOM = b"\xef\xbb\xbf"


def _room_for(text: str) -> str:
    """Let Python's csv module read a field as long as ``text`` (its limit is 128 KiB; lines are bounded by
    ``max_line_bytes`` instead)."""
    if len(text) > csv.field_size_limit():
        csv.field_size_limit(len(text))
    return text


#: the characters ``surrogateescape`` decodes undecodable bytes to.
_UNDECODED = re.compile("[\udc80-\udcff]")


def _csv_fields(line: bytes, encoding: str = "utf-8", errors: str = "replace") -> list[str]:
    """The fields of one CSV record (its quoted values may hold line breaks: ``newlines_in_values``)."""
    text = _room_for(line.decode(encoding, errors=errors).lstrip("\ufeff").rstrip("\r\n"))
    return next(csv.reader(io.StringIO(text, newline="")), [])


def _unclosed_quote(line: bytes) -> bool:
    """Whether a CSV line ends inside a quoted value (its closing quote is missing)."""
    text = _room_for(line.decode("utf-8", errors="replace").lstrip("\ufeff").rstrip("\r\n"))
    try:
        for _ in csv.reader([text], strict=True):
            pass
    except csv.Error as err:
        return "unexpected end of data" in str(err)
    return False


def _with_long_lines(block: bytes, read: Callable[[dict[str, Any]], pa.Table]) -> pa.Table:
    """Call ``read(options)`` with Arrow's reader options, again with a block size past the block's size when a line
    is longer than Arrow's block (1 MiB: a "straddling object"). Lines are bounded by ``max_line_bytes``."""
    try:
        return read({})
    except pa.ArrowInvalid as err:
        if "straddl" not in str(err):
            raise
    return read({"block_size": len(block) + 1})


def _csv_records(block: bytes) -> list[bytes]:
    """Cut a block into CSV records whose quoted values may hold line breaks (a record ends on an even quote count)."""
    records: list[bytes] = []
    pending: list[bytes] = []
    quotes = 0
    for line in split_lines(block):
        pending.append(line)
        quotes += line.count(b'"')
        if quotes % 2 == 0:
            records.append(b"".join(pending))
            pending, quotes = [], 0
    if pending:
        records.append(b"".join(pending))
    return records


class CsvReader(_TextReader):
    """CSV with or without a header line; without one, columns are named by ``source['columns']`` or the schema."""

    def has_header(self, line: bytes) -> bool:
        """Whether a file whose first line is ``line`` has a header line (``header`` True, or ``"auto"`` and the
        line's fields are the expected names: see :mod:`airflow_batch_scoring.io.csv_header`)."""
        if self.spec.header != AUTO:
            return self.spec.header is True
        try:
            line.decode(self.encoding)
        except UnicodeDecodeError:
            return False
        model = [c.name for c in self.plan.model_columns] if self.plan.model_columns is not None else None
        return csv_header.is_header(_csv_fields(line, self.encoding), self.spec.columns, model)

    def detect_header(self, piece: Piece) -> bool:
        """Whether the piece's file has a header line (read from its first line)."""
        if self.spec.header != AUTO:
            return self.has_header(b"")
        with self._open(piece) as f:
            self.newline = detect_newline(f.read(HEAD_BYTES))
            return self.has_header(first_line(f, self.newline, self.max_line))

    def open_file(self, f: BinaryIO, piece: Piece) -> tuple[int, ColumnMap]:
        first = b""
        if self.spec.header is not False:
            f.seek(0)
            first = first_line(f, self.newline, self.max_line)
        if self.has_header(first):
            header = first
            try:
                header.decode(self.encoding)
            except UnicodeDecodeError as err:
                raise InputError(
                    f"the header line is not {self.encoding} text ({err}); write the file as UTF-8, or set "
                    "source['encoding'] to the file's encoding (e.g. 'latin-1').", path=piece.path, line=1,
                ) from err
            names = _csv_fields(header, self.encoding)  # (a UTF-8 byte order mark before the header is dropped)
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
        columns = resolve_columns(names, self.plan, piece.path, passthrough_default=pa.string())
        if not prologue and piece.start <= 0:
            self._refuse_undeclared_header(f, first, columns, piece)
        return prologue, columns

    def _refuse_undeclared_header(self, f: BinaryIO, first: bytes, columns: ColumnMap, piece: Piece) -> None:
        """Fail (in both bad-row modes) when line 1, read as data, fails and looks like a header line.

        :raises InputError: saying that line 1 looks like a header and to set header=True.
        """
        if not first:
            first = first_line(f, self.newline, self.max_line)
        try:
            first.decode(self.encoding)
        except UnicodeDecodeError:
            return
        fields = _csv_fields(first, self.encoding)
        if csv_header.looks_like_names(fields) and self._fails(first, columns, piece):
            raise InputError(csv_header.header_hint(fields), path=piece.path)  # (no line: a file error, not a row)

    @property
    def records(self) -> bool:
        return self.spec.newlines_in_values

    def units(self, block: bytes) -> list[bytes]:
        return _csv_records(block) if self.spec.newlines_in_values else split_lines(block)

    def undecodable_value(self, line: bytes) -> tuple[str | None, str | None]:
        for index, value in enumerate(_csv_fields(line, self.encoding, errors="surrogateescape")):
            if _UNDECODED.search(value):
                return self._names[index] if index < len(self._names) else None, self.shown(value)
        return None, None

    def block_end(self, buffer: bytes) -> int:
        return last_record_end(buffer) if self.spec.newlines_in_values else last_line_end(buffer)

    def parse(self, block: bytes, columns: ColumnMap, piece: Piece, partial: bool = False) -> pa.Table:
        block = self.text(block)
        types = {source: t for _, source, t in columns.typed() if t is not None}
        quoted = b'"' in block
        # A block without any quote character parses the same with quoting off, ~10 % cheaper (measured 1.75 vs 1.95
        # CPU-s per 2M rows x 21 columns): the tokenizer then skips its quote state machine.
        parse_options = (
            pa_csv.ParseOptions(newlines_in_values=self.spec.newlines_in_values)
            if quoted else pa_csv.ParseOptions(quote_char=False)
        )
        table = _with_long_lines(block, lambda options: pa_csv.read_csv(
            pa.BufferReader(block),
            read_options=pa_csv.ReadOptions(column_names=self._names, use_threads=True, **options),
            parse_options=parse_options,
            convert_options=pa_csv.ConvertOptions(column_types=types, include_columns=columns.source_names),
        ))
        if quoted and not self.spec.newlines_in_values:
            self._check_quotes(block, table)
        if self.plan.rejects:
            check_missing(table, columns, self.plan)
        return table

    @staticmethod
    def _check_quotes(block: bytes, table: pa.Table) -> None:
        """Refuse a quote left open: Arrow would read the following lines into that value and lose them as rows.

        :raises pa.ArrowInvalid: when the block has fewer rows than non-empty lines, or its last line ends inside
            quotes.
        """
        import numpy as np  # (counts newlines twice as fast as bytes.count; only for blocks holding a quote)

        newlines = int(np.count_nonzero(np.frombuffer(block, np.uint8) == 10))
        if table.num_rows < newlines + (not block.endswith(b"\n")):  # (or blank lines: count the lines with text)
            lines = sum(1 for line in block.splitlines() if line)
            if table.num_rows < lines:
                raise pa.ArrowInvalid(
                    f"CSV parse error: {lines} lines hold only {table.num_rows} rows: a quoted value runs over a "
                    "line break (an unclosed quote?)"
                )
        end = len(block)
        while end and block[end - 1] in b"\r\n":
            end -= 1
        last = block[max(block.rfind(b"\n", 0, end), block.rfind(b"\r", 0, end)) + 1 : end]  # (no copy of the block)
        if b'"' in last and _unclosed_quote(last):
            raise pa.ArrowInvalid("CSV parse error: the last line ends inside a quoted value (an unclosed quote)")

    def diagnose(self, line: bytes, columns: ColumnMap) -> Diagnosis:
        undecodable = self.undecodable(line)
        if undecodable is not None:
            return undecodable
        line = self.text(line)
        if not self.spec.newlines_in_values and _unclosed_quote(line):
            return Diagnosis(
                bad_rows.MALFORMED_ROW,
                "the line has a quote that is never closed; close it (a quote inside a quoted value is written "
                "twice: \"\"), or set source['newlines_in_values']=True if quoted values hold line breaks.",
            )
        values = _csv_fields(line)
        if len(values) != len(self._names):
            reason = bad_rows.MISSING_FIELDS if len(values) < len(self._names) else bad_rows.EXTRA_FIELDS
            hints = []
            text = line.decode("utf-8")
            if len(values) == 1:
                hints.extend(
                    f"it seems to use {d!r} as its delimiter, where a comma is expected" for d in (";", "\t", "|")
                    if d in text
                )
            if not line.endswith((b"\n", b"\r")) and len(values) < len(self._names):
                hints.append("it is the file's last line and has no line break: the file may have been cut short")
            if len(values) > len(self._names):
                hints.append("a value that holds a comma must be quoted")
            return Diagnosis(
                reason,
                f"the line has {len(values)} field(s) where {len(self._names)} are expected "
                f"({', '.join(self._names)}){': ' + '; '.join(hints) if hints else ''}. Check the delimiter "
                "(a comma), the quoting, and source['columns'].",
            )
        position = {name: i for i, name in enumerate(self._names)}
        for index, (_, source, arrow_type) in enumerate(columns.typed()):
            if arrow_type is None or pa.types.is_string(arrow_type):
                continue
            try:
                pa_csv.read_csv(
                    io.BytesIO(line),
                    read_options=pa_csv.ReadOptions(column_names=self._names, block_size=max(len(line) + 1, 1 << 20)),
                    convert_options=pa_csv.ConvertOptions(column_types={source: arrow_type}, include_columns=[source]),
                )
            except pa.ArrowInvalid:
                return columns.failure(index, 0, values[position[source]], arrow_type).diagnosis()
        return Diagnosis(bad_rows.MALFORMED_ROW, "the line cannot be parsed; check its quoting.")


_CHANGED = re.compile(r"Column\(/([^)]*)\) changed from (\w+) to (\w+)")
#: Arrow types a JSON value of a passthrough column may be read as and still be turned into its exact JSON text.
_EXACT_AS_TEXT = (pa.types.is_string, pa.types.is_integer, pa.types.is_boolean, pa.types.is_null)


def _json_text(value: Any, raw: Any) -> str:
    """The text a JSON value of a passthrough column is carried as: ``raw`` (a number as written), ``true``/``false``,
    or an object's or array's compact JSON."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(raw, str):  # a number (or NaN, Infinity), as written
        return raw
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def _passthrough_as_text(block: bytes, keys: set[str]) -> bytes:
    """Rewrite the block's lines so that the values of ``keys`` (lower-cased) that are not JSON strings become JSON
    strings of their text (see :func:`_json_text`). A line that is not a JSON object is left as it is."""
    lines = []
    for line in split_lines(block):
        body = line.rstrip(b"\r\n")
        try:
            text = body.decode("utf-8").lstrip("\ufeff")
            record = json.loads(text)
            raw = json.loads(text, parse_int=str, parse_float=str, parse_constant=str)
        except ValueError:
            lines.append(line)
            continue
        if not isinstance(record, dict):
            lines.append(line)
            continue
        changed = False
        for key, value in record.items():
            if key.lower() in keys and value is not None and not isinstance(value, str):
                record[key] = _json_text(value, raw[key])
                changed = True
        lines.append(json.dumps(record, ensure_ascii=False).encode() + line[len(body):] if changed else line)
    return b"".join(lines)


def _absent(column: pa.ChunkedArray, block: bytes, key: str) -> bool:
    """Whether a column an explicit schema added is only nulls because the block lacks its key."""
    return column.null_count == len(column) and re.search(
        b'"' + re.escape(key.encode()) + rb'"\s*:', block
    ) is None


class JsonLinesReader(_TextReader):
    """JSON lines: one object per line; keys are matched to the schema ignoring case.

    A passthrough column is carried as text unless the run gives it another type: a JSON string as its value, a
    number as written (``1.50`` stays ``1.50``), ``true``/``false``, an object or array as its compact JSON text.
    Its values are read as JSON strings (numbers, as Arrow infers them, once a block holds one); only a block whose
    column mixes numbers and strings, or holds fractions, objects or arrays, is rewritten line by line in Python.
    """

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        model = {c.name.lower() for c in self.plan.model_columns or []}
        #: the passthrough columns that are not model columns: lower-cased name -> the key as the file spells it.
        self._keys = {name.lower(): name for name in self.plan.passthrough if name.lower() not in model}
        #: those whose run type is text (the others are coerced to their type like model columns).
        self._text = {
            key for key in self._keys if pa.types.is_string(self.plan.passthrough_types.get(key, pa.string()))
        }
        #: keys read with Arrow's type inference (numbers met), rather than as JSON strings.
        self._infer = set(self._keys) - self._text

    def open_file(self, f: BinaryIO, piece: Piece) -> tuple[int, ColumnMap]:
        return 0, ColumnMap([], [])

    def _read(self, block: bytes) -> pa.Table:
        """Read a block, its passthrough columns as the run wants them (see the class)."""
        as_strings = False  # after a rewrite every passthrough value is a JSON string
        switched: set[str] = set()  # keys whose way of reading changed for this block (each changes once)
        for _ in range(4 * len(self._keys) + 2):
            explicit = [self._keys[k] for k in self._keys if as_strings or (k in self._text and k not in self._infer)]
            options = pa_json.ParseOptions(explicit_schema=pa.schema([(k, pa.string()) for k in explicit]))
            try:
                table = _with_long_lines(block, lambda read, parse=options, data=block: pa_json.read_json(
                    pa.BufferReader(data), read_options=pa_json.ReadOptions(use_threads=True, **read),
                    parse_options=parse,
                ))
            except pa.ArrowInvalid as err:
                changed = _CHANGED.search(str(err))
                key = changed.group(1).lower() if changed else None
                if key not in self._keys or as_strings:
                    raise
                if key in self._text and key not in self._infer and key not in switched:
                    self._infer.add(key)  # a number among the values: read them as Arrow infers them
                    switched.add(key)
                else:  # numbers and strings mixed in one block
                    block, as_strings = _passthrough_as_text(block, set(self._keys)), True
                continue
            actual: dict[str, str] = {}  # lower-cased key -> the column holding it in this block
            for name in table.column_names:
                key = name.lower()
                if key in self._keys and not (name in explicit and _absent(table.column(name), block, name)):
                    actual.setdefault(key, name)
            respelt = [key for key, name in actual.items() if name != self._keys[key]]
            if respelt:  # the file spells the key otherwise ("ID" for "id"): read it under its own spelling
                self._keys.update((key, actual[key]) for key in respelt)
                continue
            inexact = [
                key for key in self._text if key in actual and not as_strings
                and not any(test(table.column(actual[key]).type) for test in _EXACT_AS_TEXT)
            ]
            back = [key for key in inexact if key not in switched]
            if back:  # (strings that Arrow reads as dates, after a block of numbers): read them as strings again
                self._infer.difference_update(back)
                switched.update(back)
                continue
            if inexact:  # fractions, objects, numbers among dates: only Python's JSON parser keeps their text
                block, as_strings = _passthrough_as_text(block, set(self._keys)), True
                continue
            table = table.drop_columns([name for name in explicit if name not in actual.values()])
            for key in self._text & set(actual):
                name = actual[key]
                if not pa.types.is_string(table.column(name).type):
                    table = table.set_column(
                        table.schema.get_field_index(name), name, table.column(name).cast(pa.string())
                    )
            return table
        raise AssertionError("unreachable: each retry changes how a passthrough column is read")

    def parse(self, block: bytes, columns: ColumnMap, piece: Piece, partial: bool = False) -> pa.Table:
        block = self.text(block)  # (Arrow would read bytes that are not UTF-8 as U+FFFD, silently)
        table = self._read(block)
        if not table.num_rows:
            return table
        if partial:
            table = self._add_missing(table)
        mapped = resolve_columns(table.column_names, self.plan, piece.path, passthrough_default=pa.string())
        columns.model, columns.passthrough = mapped.model, mapped.passthrough
        columns.passthrough_types = mapped.passthrough_types
        table = coerce(table, columns)
        if self.plan.rejects:
            check_missing(table, columns, self.plan)
        return table

    def in_context(self, line: bytes, columns: ColumnMap, err: Exception) -> Diagnosis:
        diagnosis = super().in_context(line, columns, err)
        changed = _CHANGED.search(str(err))
        if diagnosis.reason != bad_rows.MALFORMED_ROW or not changed:
            return diagnosis
        name, before, after = changed.groups()
        record = json.loads(line)
        value = next((v for k, v in record.items() if k.lower() == name.lower()), None)
        return Diagnosis(
            bad_rows.TYPE_MISMATCH,
            f"value {value!r} is a JSON {after} where the lines before it hold a {before} ({err}). Fix the value, or "
            "give the model's input schema (input_schema) to check each value against its column's type.",
            column=name,
            value=value,
        )

    def _add_missing(self, table: pa.Table) -> pa.Table:
        """Add the model and passthrough columns a run of lines lacks, as nulls (as in the block they came from)."""
        present = {name.lower() for name in table.column_names}
        wanted = [(c.name, c.type.arrow_type) for c in self.plan.model_columns or []]
        wanted += [(name, pa.null()) for name in self.plan.passthrough]
        for name, arrow_type in wanted:
            if name.lower() not in present:
                table = table.append_column(name, pa.nulls(table.num_rows, arrow_type))
                present.add(name.lower())
        return table

    def undecodable_value(self, line: bytes) -> tuple[str | None, str | None]:
        try:
            record = json.loads(line.decode(self.encoding, errors="surrogateescape").lstrip("\ufeff"))
        except ValueError:
            return None, None
        if not isinstance(record, dict):
            return None, None
        for key, value in record.items():
            text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
            if _UNDECODED.search(key) or _UNDECODED.search(text):
                return self.shown(key), self.shown(text)
        return None, None

    def diagnose(self, line: bytes, columns: ColumnMap) -> Diagnosis:
        undecodable = self.undecodable(line)
        if undecodable is not None:
            return undecodable
        text = line.decode(self.encoding)
        try:
            record = json.loads(text.lstrip("\ufeff"))
        except ValueError as err:
            return Diagnosis(
                bad_rows.INVALID_JSON,
                f"the line is not valid JSON ({err}); each line must hold one JSON object"
                + ("; it is the file's last line and has no line break: the file may have been cut short."
                   if not line.endswith((b"\n", b"\r")) else "."),
            )
        if not isinstance(record, dict):
            return Diagnosis(
                bad_rows.NOT_AN_OBJECT,
                f"the line holds a JSON {type(record).__name__}, not an object; each line must hold one JSON object "
                'such as {"f0": 1.5, ...}.',
            )
        by_key = {k.lower(): v for k, v in record.items()}
        for column in self.plan.model_columns or [] if self.plan.coerce else []:
            name, arrow_type = column.name, column.type.arrow_type
            value = by_key.get(name.lower())
            if value is None:
                continue
            if isinstance(value, (dict, list)) or _cast_fails(pa.array([value]), arrow_type):
                return _CastFailure(name, 0, value, arrow_type).diagnosis()
        for position, (name, _, arrow_type) in enumerate(columns.typed()):
            value = by_key.get(name.lower())
            if position < len(columns.model) or arrow_type is None or pa.types.is_string(arrow_type) or value is None:
                continue
            if isinstance(value, (dict, list)) or _cast_fails(pa.array([value]), arrow_type):
                return columns.failure(position, 0, value, arrow_type).diagnosis()
        return Diagnosis(
            bad_rows.MALFORMED_ROW, "the line's values change type against earlier lines; check the column types."
        )


class ParquetReader(PieceReader):
    """Parquet: a piece is a list of row groups, read in batches of ``batch_size`` rows."""

    def __init__(self, *args: Any, batch_size: int, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.batch_size = batch_size

    def read(self, piece: Piece) -> Iterator[pa.Table]:
        with self._open(piece) as f:
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
            leading = _LeadingBadRows(piece.path, applies=not groups or groups[0] == 0, unit="row")
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
                            if self.plan.rejects:
                                check_missing(table, columns, self.plan)
                        except _CastFailure as failure:
                            if self.on_bad_row is None:
                                raise InputError(
                                    failure.message(), path=piece.path, row=row + failure.index + 1,
                                    column=failure.column,
                                ) from None
                            table = self._quarantine(table, columns, piece, row, leading)
                        row += batch.num_rows
                        if table.num_rows:
                            leading.good = True
                            yield columns.output(table)
                except (pa.ArrowInvalid, OSError) as err:
                    raise InputError(
                        f"row group {group} cannot be read ({err}); the file is damaged: replace it.", path=piece.path
                    ) from err
            leading.finish(whole_file=sorted(groups) == list(range(parquet.num_row_groups)))

    def _quarantine(
        self, table: pa.Table, columns: ColumnMap, piece: Piece, first_row: int, leading: _LeadingBadRows
    ) -> pa.Table:
        """Hand the rows whose values do not fit their types (or that hold a value the plan rejects) to
        ``on_bad_row``; return the others, coerced."""
        assert self.on_bad_row is not None
        bad: dict[int, _CastFailure] = {}
        for position, (_, source, arrow_type) in enumerate(columns.typed()):
            array = table.column(source)
            if arrow_type is None or array.type == arrow_type or not _cast_fails(array, arrow_type):
                continue
            for index in bad_indices(array, arrow_type):
                bad.setdefault(index, columns.failure(position, index, array[index].as_py(), arrow_type))
        kept = [index for index in range(table.num_rows) if index not in bad]
        good = coerce(table.take(pa.array(kept, pa.int64())), columns)
        if self.plan.rejects:
            refused = refused_rows(good, columns, self.plan)
            bad.update((kept[position], failure) for position, failure in refused.items())
            good = good.filter(pa.array([position not in refused for position in range(good.num_rows)], pa.bool_()))
        sources = columns.source_names
        for index in sorted(bad):
            diagnosis = bad[index].diagnosis()
            values = {source_name: table.column(source_name)[index].as_py() for source_name in sources}
            record = BadRow(
                diagnosis.reason, piece.path, row=first_row + index + 1, column=diagnosis.column,
                value=diagnosis.value, expected_type=diagnosis.expected, message=diagnosis.message,
                raw=json.dumps(values, default=str, ensure_ascii=False),
            )
            self.on_bad_row(record)
            leading.add(record)
        return good


def make_reader(
    spec: DataSpec,
    plan: ReadPlan,
    fs: fsspec.AbstractFileSystem,
    *,
    block_size: int,
    batch_size: int,
    on_bad_row: Callable[[BadRow], None] | None = None,
) -> PieceReader:
    """Return the reader of ``spec.format``.

    :param on_bad_row: receives each row that cannot be read or coerced (quarantine); ``None`` raises
        :class:`InputError` at the first one.
    """
    readers: dict[str, Callable[..., PieceReader]] = {
        "csv": CsvReader,
        "jsonl": JsonLinesReader,
    }
    if spec.format == "parquet":
        reader: PieceReader = ParquetReader(spec, plan, fs, block_size, batch_size=batch_size)
    else:
        reader = readers[spec.format](spec, plan, fs, block_size)
    reader.on_bad_row = on_bad_row
    return reader


def column_types_of(table: pa.Table) -> list[dict[str, str]]:
    """Describe a table's columns with the seven schema types."""
    return [{"name": f.name, "type": column_type_of_arrow(f.type).value} for f in table.schema]


__all__ = ["ColumnType", "ReadPlan", "make_reader", "resolve_columns", "coerce", "column_types_of"]
