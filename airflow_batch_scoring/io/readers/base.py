"""The base of the format readers (:class:`PieceReader`) and the shared reader of the line-delimited formats
(:class:`TextReader`): byte ranges, blocks, and finding (fail) or setting aside (quarantine) the bad lines of a block.

A value that cannot be read or coerced stops the read with an :class:`~airflow_batch_scoring.errors.InputError`
naming the file, the line (or row), the column and the value. Text formats find that line by bisecting the failed
block, so the fast path never pays for error reporting. With a bad-row handler set (``on_bad_rows="quarantine"``), a
failed block is split instead into its good runs, which are read as usual and in order, and its bad lines (or Parquet
rows), which go to the handler with a reason code.
"""

from __future__ import annotations

import codecs
import re
import sys
from collections.abc import Callable, Iterator
from itertools import accumulate
from typing import Any, BinaryIO, ClassVar

import fsspec
import pyarrow as pa

from airflow_batch_scoring.errors import InputError
from airflow_batch_scoring.formats import compression_of
from airflow_batch_scoring.io.bad_rows import quarantine
from airflow_batch_scoring.io.bad_rows.quarantine import BadRow, Diagnosis, raw_text, salvage
from airflow_batch_scoring.io.readers.casts import CastFailure, MissingValue
from airflow_batch_scoring.io.readers.columns import ColumnMap, ReadPlan
from airflow_batch_scoring.io.textblocks import (
    DEFAULT_MAX_LINE_BYTES,
    HEAD_BYTES,
    LongLine,
    count_lines_before,
    detect_newline,
    iter_blocks,
    last_line_end,
    range_bounds,
    split_lines,
)
from airflow_batch_scoring.job import Piece
from airflow_batch_scoring.specs import FileSpec

#: the characters ``surrogateescape`` decodes undecodable bytes to.
UNDECODED = re.compile("[\udc80-\udcff]")
#: what a failed block raises: Arrow cannot parse it, a value does not fit, or it is not text in its encoding.
PARSE_FAILURES = (pa.ArrowInvalid, CastFailure, UnicodeDecodeError)


def with_long_lines(block: bytes, read: Callable[[dict[str, Any]], pa.Table]) -> pa.Table:
    """Call ``read(options)`` with Arrow's reader options, again with a block size past the block's size when a line
    is longer than Arrow's block (1 MiB: a "straddling object"). Lines are bounded by ``max_line_bytes``."""
    try:
        return read({})
    except pa.ArrowInvalid as err:
        if "straddl" not in str(err):
            raise
    return read({"block_size": len(block) + 1})


class LeadingBadRows:
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
        if self.bad >= quarantine.LEADING_BAD_LINES:
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


class PieceReader:
    """Base of the format readers: yields coerced Arrow tables for the pieces of one shard.

    :param block_size: bytes read at a time (text formats: a block of whole lines is parsed at once).
    :param batch_size: rows per table read from a columnar format (Parquet); text formats yield one per block.
    :param on_bad_row: receives each row that cannot be read or coerced (quarantine); ``None`` raises
        :class:`~airflow_batch_scoring.errors.InputError` at the first one.
    """

    #: the ``format`` of the sources this reader reads (``FileSpec.format``), its key in the readers' registry.
    format: ClassVar[str]

    def __init__(
        self,
        spec: FileSpec,
        plan: ReadPlan,
        fs: fsspec.AbstractFileSystem,
        block_size: int,
        *,
        batch_size: int = 65536,
        on_bad_row: Callable[[BadRow], None] | None = None,
    ):
        self.spec = spec
        self.plan = plan
        self.fs = fs
        self.block_size = block_size
        self.batch_size = batch_size
        #: bytes of text consumed so far (for progress); stays 0 for Parquet.
        self.bytes_done = 0
        #: receives each bad row (quarantine); ``None`` stops at the first bad row (fail).
        self.on_bad_row = on_bad_row

    def read(self, piece: Piece) -> Iterator[pa.Table]:
        """Yield the piece's rows as tables in the reader's output layout (:meth:`ColumnMap.output`)."""
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


class TextReader(PieceReader):
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
            leading = LeadingBadRows(piece.path, applies=piece.start <= 0)
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
                except PARSE_FAILURES as err:
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
            quarantine.LINE_TOO_LONG, piece.path, line=number, message=message,
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
                reason = quarantine.INVALID_ENCODING
                message = (
                    f"the {'value' if column else 'line'} is not {self.spec.encoding} text ({err.reason} at byte "
                    f"{err.start} of the line); fix the file or source['encoding']."
                )
            else:
                reason = quarantine.INVALID_UTF8
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
        self, block: bytes, columns: ColumnMap, piece: Piece, lines_before: int, leading: LeadingBadRows
    ) -> Iterator[pa.Table]:
        """Yield the good runs of a block that failed, in order, and hand each bad line to ``on_bad_row``."""
        assert self.on_bad_row is not None
        units = self.units(block)
        newlines: list[int] | None = None

        def parse(data: bytes) -> pa.Table:
            return columns.output(self.parse(data, columns, piece, partial=True))

        for item in salvage(units, parse, PARSE_FAILURES):
            if isinstance(item, pa.Table):
                if item.num_rows:
                    leading.good = True
                    yield item
                continue
            if newlines is None:
                newlines = list(accumulate((unit.count(b"\n") for unit in units), initial=0))
            diagnosis = self._missing_in(units[item], columns, piece) or self.diagnose(units[item], columns)
            bad = diagnosis.bad_row(
                piece.path, line=lines_before + newlines[item] + 1, raw=raw_text(units[item], self.encoding)
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
        except PARSE_FAILURES:
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
        missing = self._missing_in(bad_line, columns, piece) if isinstance(err, MissingValue) else None
        if missing is not None:
            diagnosis = missing
        elif not self._fails(bad_line, columns, piece) and not isinstance(err, CastFailure):
            diagnosis = self.in_context(bad_line, columns, err)
        else:
            diagnosis = self.diagnose(bad_line, columns)
        return diagnosis.error(piece.path, line=line_number)

    def _missing_in(self, unit: bytes, columns: ColumnMap, piece: Piece) -> Diagnosis | None:
        """The diagnosis of a unit that reads but lacks a value in a model column (``plan.reject_missing``), or holds
        an infinite one (``plan.reject_infinite``)."""
        if not self.plan.rejects:
            return None
        try:
            self.parse(unit, columns, piece, partial=True)
        except MissingValue as missing:
            return missing.diagnosis()
        except PARSE_FAILURES:
            return None
        return None

    def in_context(self, line: bytes, columns: ColumnMap, err: Exception) -> Diagnosis:
        """Explain a line that reads alone but fails after the lines before it (``err``: the block's error)."""
        diagnosis = self.diagnose(line, columns)
        if diagnosis.reason != quarantine.MALFORMED_ROW:
            return diagnosis
        return Diagnosis(quarantine.MALFORMED_ROW, f"cannot be parsed: {err}")
