"""Byte ranges own the lines that start inside them: ranges that tile a file read every line exactly once."""

from __future__ import annotations

import io
import random

import pytest

from airflow_batch_scoring.io.textblocks import (
    HEAD_BYTES,
    LongLine,
    count_lines_before,
    detect_newline,
    iter_blocks,
    last_line_end,
    last_record_end,
    range_bounds,
    split_records,
)


def lines_of_range(data: bytes, start: int, end: int, block_size: int) -> list[bytes]:
    f = io.BytesIO(data)
    first, last = range_bounds(f, start, end, len(data))
    return [line for _, block in iter_blocks(f, first, last, block_size) for line in block.splitlines()]


@pytest.mark.parametrize("trailing_newline", [True, False])
@pytest.mark.parametrize("seed", range(20))
def test_random_tilings_read_every_line_once(seed: int, trailing_newline: bool):
    rng = random.Random(seed)
    lines = [(f"{i}," + "x" * rng.randint(0, 40)).encode() for i in range(rng.randint(1, 300))]
    data = b"\n".join(lines) + (b"\n" if trailing_newline else b"")
    cuts = sorted({0, len(data), *(rng.randint(0, len(data)) for _ in range(rng.randint(0, 12)))})
    read = []
    for start, end in zip(cuts, cuts[1:], strict=False):
        read += lines_of_range(data, start, end, block_size=rng.choice([1, 7, 64, 4096]))
    assert read == lines


def test_blocks_end_on_line_boundaries_and_long_lines_stay_whole():
    data = b"a\n" + b"b" * 100 + b"\nc\n"
    blocks = list(iter_blocks(io.BytesIO(data), 0, len(data), 8))
    assert b"".join(block for _, block in blocks) == data
    assert all(block.endswith(b"\n") for _, block in blocks)
    assert [offset for offset, _ in blocks] == [0, 2, 103][: len(blocks)]


def test_count_lines_before():
    data = b"1\n2\n3\n4\n"
    assert count_lines_before(io.BytesIO(data), 4) == 2


def test_last_record_end_skips_newlines_inside_quotes():
    text = b'1,"a\nb",2\n3,"say ""hi""\nthere",4\n5,"open\n'
    assert last_line_end(text) == len(text)
    assert last_record_end(text) == text.index(b'4\n') + 2  # the quoted "open\n..." is not over yet
    assert last_record_end(b'1,"a\nb') == 0
    assert last_record_end(b'1,"x ""y"" z",2\n') == len(b'1,"x ""y"" z",2\n')


def test_blocks_of_quoted_records_end_on_record_boundaries():
    records = [f'{i},"line\nbreak {i}",x\n'.encode() if i % 3 == 0 else f"{i},plain,x\n".encode() for i in range(500)]
    data = b"".join(records)
    blocks = list(iter_blocks(io.BytesIO(data), 0, len(data), 64, cut=last_record_end))
    assert b"".join(block for _, block in blocks) == data
    assert all(block.count(b'"') % 2 == 0 for _, block in blocks)  # no block ends inside a quoted value
    assert all(offset == data.index(block) for offset, block in blocks[:5])


class _CountingFile(io.BytesIO):
    """Records the largest single read, to show how much of one line the reader ever asks for at once."""

    largest = 0

    def read(self, size: int | None = -1) -> bytes:
        data = super().read(size)
        self.largest = max(self.largest, len(data))
        return data


@pytest.mark.parametrize("records", [False, True])
@pytest.mark.parametrize("where", ["middle", "last", "last-without-newline"])
def test_a_line_longer_than_the_limit_is_skipped_without_holding_it(records: bool, where: str):
    limit = 4096
    short = [f"{i},x,{i * 2}\n".encode() for i in range(300)]
    long_line = b'7,"' + b"a\nb" * 3000 + b'",9\n' if records else b"7," + b"z" * 20_000 + b",9\n"
    position = {"middle": 150, "last": 300, "last-without-newline": 300}[where]
    if where == "last-without-newline":
        long_line = long_line[:-1]
    lines = [*short[:position], long_line, *short[position:]]
    data = b"".join(lines)
    f = _CountingFile(data)
    items = list(iter_blocks(f, 0, len(data), 1 << 20, cut=last_record_end if records else last_line_end,
                             max_line=limit, records=records))
    skipped = [(offset, item) for offset, item in items if isinstance(item, LongLine)]
    assert [(offset, item.length, item.newlines) for offset, item in skipped] == [
        (sum(map(len, short[:position])), len(long_line), long_line.count(b"\n"))
    ]
    head = skipped[0][1].head
    assert long_line.startswith(head) and min(limit, len(long_line)) <= len(head) <= HEAD_BYTES
    blocks = [block for _, block in items if isinstance(block, bytes)]
    assert b"".join(blocks) == b"".join(short)  # every other line, once, in order
    assert f.largest <= limit  # the limit bounds every read...
    assert max(len(block) for block in blocks) <= 2 * limit  # ...and every block held


def test_lines_up_to_the_limit_are_read_whole():
    lines = [b"x" * 4095 + b"\n", b"y" * 10 + b"\n", b"z" * 4095 + b"\n"]
    data = b"".join(lines)
    items = list(iter_blocks(io.BytesIO(data), 0, len(data), 100, max_line=4096))
    assert b"".join(block for _, block in items) == data


@pytest.mark.parametrize(
    ("head", "newline"),
    [(b"a,b\nc,d\n", b"\n"), (b"a,b\r\nc,d\r\n", b"\n"), (b"a,b\rc,d\r", b"\r"), (b"a,b", b"\n"), (b"a,b\r", b"\n"),
     (b"", b"\n")],
)
def test_detect_newline(head: bytes, newline: bytes):
    assert detect_newline(head) == newline


@pytest.mark.parametrize("seed", range(5))
def test_cr_only_text_tiles_and_reads_as_lines(seed: int):
    """Classic Mac OS text: ranges own the lines that start in them, and blocks come with \\n for \\r."""
    rng = random.Random(seed)
    lines = [(f"{i}," + "x" * rng.randint(0, 40)).encode() for i in range(rng.randint(1, 300))]
    data = b"\r".join(lines) + b"\r"
    cuts = sorted({0, len(data), *(rng.randint(0, len(data)) for _ in range(rng.randint(0, 12)))})
    read = []
    for start, end in zip(cuts, cuts[1:], strict=False):
        f = io.BytesIO(data)
        first, last = range_bounds(f, start, end, len(data), newline=b"\r")
        for _, block in iter_blocks(f, first, last, rng.choice([1, 7, 64, 4096]), newline=b"\r"):
            assert b"\r" not in block
            read += block.splitlines()
    assert read == lines
    assert count_lines_before(io.BytesIO(data), len(data), newline=b"\r") == len(lines)


def test_split_records_keeps_quoted_line_breaks_inside_their_record():
    block = b'1,"a\nb",x\n2,plain,y\n3,"c ""q""\nd",z\n4,"open\n'
    assert split_records(block) == [b'1,"a\nb",x\n', b"2,plain,y\n", b'3,"c ""q""\nd",z\n', b'4,"open\n']
