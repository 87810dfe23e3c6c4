r"""Reading line-delimited text (CSV, JSON lines) by byte range, in blocks that end on a line boundary.

A byte range ``[start, end)`` owns exactly the lines whose first byte lies inside it, so ranges that tile a file
read every line exactly once, whatever the ranges' boundaries (the Hadoop line-split rule).

Lines end with ``\n`` (``\r\n`` too), or with a bare ``\r`` in a file whose first line ends so (classic Mac OS
text, see :func:`detect_newline`): its blocks are handed on with each ``\r`` turned into ``\n`` (same length, so
every offset holds). A line (or CSV record) longer than ``max_line`` bytes is never held whole: :func:`iter_blocks`
skips it and yields a :class:`LongLine` in its place, so one long line costs at most about ``max_line`` bytes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import BinaryIO

_SCAN = 64 * 1024
#: the longest line (or CSV record, line break included) a reader holds by default (source['max_line_bytes']).
DEFAULT_MAX_LINE_BYTES = 16 * 1024 * 1024
#: bytes of a line's head read to tell its line breaks, and kept of a line that is too long.
HEAD_BYTES = 64 * 1024


def detect_newline(head: bytes) -> bytes:
    r"""The line break of a text that starts with ``head``: ``b"\r"`` when its first line ends with a bare CR and no
    ``\n`` is in sight (classic Mac OS text), else ``b"\n"`` (``\n`` and ``\r\n``)."""
    if b"\n" in head:
        return b"\n"
    return b"\r" if b"\r" in head[:-1] else b"\n"  # (a CR followed by a byte that is not \n)


def _find_newline_from(f: BinaryIO, position: int, newline: bytes = b"\n") -> int:
    """Return the offset just past the first newline at or after ``position`` (or the end of the file)."""
    f.seek(position)
    offset = position
    while True:
        chunk = f.read(_SCAN)
        if not chunk:
            return offset
        index = chunk.find(newline)
        if index >= 0:
            return offset + index + 1
        offset += len(chunk)


def range_bounds(f: BinaryIO, start: int, end: int, size: int, newline: bytes = b"\n") -> tuple[int, int]:
    """Return the byte offsets ``[a, b)`` of the whole lines owned by the range ``[start, end)``.

    :param end: ``-1`` or a value past ``size`` means the end of the file.
    :param newline: the file's line break (:func:`detect_newline`).
    """
    end = size if end < 0 or end > size else end
    first = 0 if start <= 0 else _find_newline_from(f, start - 1, newline)
    last = size if end >= size else _find_newline_from(f, end - 1, newline)
    return first, max(first, last)


def first_line(f: BinaryIO, newline: bytes = b"\n", limit: int = DEFAULT_MAX_LINE_BYTES) -> bytes:
    """Read the file's first line from its start, with its line break (at most ``limit + 1`` bytes are read)."""
    f.seek(0)
    data = b""
    while len(data) <= limit:
        chunk = f.read(min(_SCAN, limit + 1 - len(data)))
        if not chunk:
            break
        index = chunk.find(newline)
        if index >= 0:
            return data + chunk[: index + 1]
        data += chunk
    return data


def last_line_end(buffer: bytes) -> int:
    """The offset just past the last newline of ``buffer`` (0 when it has none)."""
    return buffer.rfind(b"\n") + 1


def last_record_end(buffer: bytes) -> int:
    """The offset just past the last newline of ``buffer`` that is outside quotes (0 when there is none).

    For CSV whose quoted values may hold line breaks: a newline ends a record when the quotes before it are even in
    number (a quote inside a quoted value is written twice, so it keeps the count even). ``buffer`` must start at a
    record's start.
    """
    quotes = buffer.count(b'"')
    end = len(buffer)
    while True:
        newline = buffer.rfind(b"\n", 0, end)
        if newline < 0:
            return 0
        quotes -= buffer.count(b'"', newline, end)
        if quotes % 2 == 0:
            return newline + 1
        end = newline


@dataclass
class LongLine:
    """A line (or CSV record) longer than the limit, skipped unread: its length and its first bytes.

    :param newlines: the line breaks it holds (its own, and those inside a CSV record's quoted values).
    """

    length: int
    head: bytes
    newlines: int


def first_unit_end(buffer: bytes, records: bool = False, quotes: int = 0) -> int:
    """The offset just past the first line (``records``: CSV record) end of ``buffer``, or 0 when it has none.

    :param quotes: the quotes of the record before ``buffer`` (``records`` only).
    """
    if not records:
        return buffer.find(b"\n") + 1
    position = 0
    while True:
        newline = buffer.find(b"\n", position)
        if newline < 0:
            return 0
        quotes += buffer.count(b'"', position, newline)
        if quotes % 2 == 0:
            return newline + 1
        position = newline + 1


def iter_blocks(
    f: BinaryIO,
    first: int,
    last: int,
    block_size: int,
    cut: Callable[[bytes], int] = last_line_end,
    *,
    max_line: int | None = None,
    records: bool = False,
    newline: bytes = b"\n",
) -> Iterator[tuple[int, bytes | LongLine]]:
    r"""Yield ``(offset, block)`` pairs covering ``[first, last)``, each block ending on a line boundary.

    A line longer than ``block_size`` is yielded whole in one larger block; a line longer than ``max_line`` is
    skipped and a :class:`LongLine` yielded in its place (reads are then at most ``max_line`` bytes, so no block
    holds a longer line).

    :param cut: where a buffer's whole lines end (:func:`last_record_end` for CSV records that may span lines).
    :param records: the units are CSV records whose quoted values may hold line breaks (``cut`` is
        :func:`last_record_end`).
    :param newline: the file's line break; a bare ``\r`` is turned into ``\n`` in every block.
    """
    f.seek(first)
    offset = first
    carry = b""
    remaining = last - first
    read_size = block_size if max_line is None else max(1, min(block_size, max_line))
    while remaining > 0 or carry:
        chunk = f.read(min(read_size, remaining)) if remaining > 0 else b""
        if not chunk:
            remaining = 0  # the end of the file (``last`` may be past it: a compressed stream's size is unknown)
        remaining -= len(chunk)
        if newline == b"\r":
            chunk = chunk.replace(b"\r", b"\n")
        buffer = carry + chunk if carry else chunk
        if max_line is not None and carry:  # the line begun in ``carry`` may end in ``chunk``, past the limit
            end = first_unit_end(buffer, records)
            if end > max_line or (end == 0 and len(buffer) > max_line):
                long_line, carry, remaining = _skip(f, buffer, end, remaining, read_size, records, newline)
                yield offset, long_line
                offset += long_line.length
                continue
        if remaining <= 0:
            if buffer:
                yield offset, buffer
            return
        end = cut(buffer)
        if end == 0:
            carry = buffer
            continue
        yield offset, buffer[:end]
        offset += end
        carry = buffer[end:]


def _skip(
    f: BinaryIO, buffer: bytes, end: int, remaining: int, read_size: int, records: bool, newline: bytes
) -> tuple[LongLine, bytes, int]:
    """Read past a line that is too long without holding it: return it, what follows it, and the bytes left."""
    head = buffer[:HEAD_BYTES]
    if end:
        return LongLine(end, head, buffer.count(b"\n", 0, end)), buffer[end:], remaining
    length, newlines, quotes = len(buffer), buffer.count(b"\n"), buffer.count(b'"') if records else 0
    while remaining > 0:
        chunk = f.read(min(read_size, remaining))
        if not chunk:
            break
        remaining -= len(chunk)
        if newline == b"\r":
            chunk = chunk.replace(b"\r", b"\n")
        end = first_unit_end(chunk, records, quotes)
        if end:
            return LongLine(length + end, head, newlines + chunk.count(b"\n", 0, end)), chunk[end:], remaining
        length, newlines = length + len(chunk), newlines + chunk.count(b"\n")
        quotes += chunk.count(b'"') if records else 0
    return LongLine(length, head, newlines), b"", 0


def count_lines_before(f: BinaryIO, offset: int, newline: bytes = b"\n") -> int:
    """Count the newlines before ``offset`` (used only to name a line in an error message)."""
    f.seek(0)
    count = 0
    remaining = offset
    while remaining > 0:
        chunk = f.read(min(8 * 1024 * 1024, remaining))
        if not chunk:
            break
        count += chunk.count(newline)
        remaining -= len(chunk)
    return count


def split_lines(block: bytes) -> list[bytes]:
    """Split a block into lines, each keeping its newline."""
    return block.splitlines(keepends=True)


def split_records(block: bytes) -> list[bytes]:
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
