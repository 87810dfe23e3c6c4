"""Byte ranges own the lines that start inside them: ranges that tile a file read every line exactly once."""

from __future__ import annotations

import io
import random

import pytest

from airflow_batch_scoring.io.textblocks import (
    count_lines_before,
    iter_blocks,
    last_line_end,
    last_record_end,
    range_bounds,
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
