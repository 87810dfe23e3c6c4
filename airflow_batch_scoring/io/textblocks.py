"""Reading line-delimited text (CSV, JSON lines) by byte range, in blocks that end on a line boundary.

A byte range ``[start, end)`` owns exactly the lines whose first byte lies inside it, so ranges that tile a file
read every line exactly once, whatever the ranges' boundaries (the Hadoop line-split rule).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import BinaryIO

_SCAN = 64 * 1024


def _find_newline_from(f: BinaryIO, position: int) -> int:
    """Return the offset just past the first newline at or after ``position`` (or the end of the file)."""
    f.seek(position)
    offset = position
    while True:
        chunk = f.read(_SCAN)
        if not chunk:
            return offset
        index = chunk.find(b"\n")
        if index >= 0:
            return offset + index + 1
        offset += len(chunk)


def range_bounds(f: BinaryIO, start: int, end: int, size: int) -> tuple[int, int]:
    """Return the byte offsets ``[a, b)`` of the whole lines owned by the range ``[start, end)``.

    :param end: ``-1`` or a value past ``size`` means the end of the file.
    """
    end = size if end < 0 or end > size else end
    first = 0 if start <= 0 else _find_newline_from(f, start - 1)
    last = size if end >= size else _find_newline_from(f, end - 1)
    return first, max(first, last)


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


def iter_blocks(
    f: BinaryIO, first: int, last: int, block_size: int, cut: Callable[[bytes], int] = last_line_end
) -> Iterator[tuple[int, bytes]]:
    """Yield ``(offset, block)`` pairs covering ``[first, last)``, each block ending on a line boundary.

    A line longer than ``block_size`` is yielded whole in one larger block.

    :param cut: where a buffer's whole lines end (:func:`last_record_end` for CSV records that may span lines).
    """
    f.seek(first)
    offset = first
    carry = b""
    remaining = last - first
    while remaining > 0 or carry:
        chunk = f.read(min(block_size, remaining)) if remaining > 0 else b""
        if not chunk:
            remaining = 0  # the end of the file (``last`` may be past it: a compressed stream's size is unknown)
        remaining -= len(chunk)
        buffer = carry + chunk if carry else chunk
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


def count_lines_before(f: BinaryIO, offset: int) -> int:
    """Count the newlines before ``offset`` (used only to name a line in an error message)."""
    f.seek(0)
    count = 0
    remaining = offset
    while remaining > 0:
        chunk = f.read(min(8 * 1024 * 1024, remaining))
        if not chunk:
            break
        count += chunk.count(b"\n")
        remaining -= len(chunk)
    return count


def split_lines(block: bytes) -> list[bytes]:
    """Split a block into lines, each keeping its newline."""
    return block.splitlines(keepends=True)
