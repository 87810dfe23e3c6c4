"""The CSV reader's polars fast path reads exactly what Arrow's parser reads, or leaves the block to Arrow.

Random blocks of numbers, null and infinity spellings, signs, exponents, blank lines, carriage returns, missing and
extra fields: whenever the fast path returns a table it equals Arrow's, and whenever Arrow refuses a block the fast
path has returned ``None`` (so Arrow parses it again and reports the line).
"""

from __future__ import annotations

import random

import pyarrow as pa
import pyarrow.csv as pa_csv
import pytest

from airflow_batch_scoring.io.readers import csv_numeric
from airflow_batch_scoring.io.readers.csv_numeric import parse_numbers, plain_numbers

pytest.importorskip("polars")


@pytest.fixture(autouse=True)
def polars_from_the_first_block(monkeypatch):
    monkeypatch.setenv("BATCH_SCORING_CSV_PARSER", "polars")
    csv_numeric._mode.cache_clear()
    yield
    csv_numeric._mode.cache_clear()

NAMES = ["id", "a", "b", "c"]
TOKENS = [
    "0", "1", "-1", "+1", "12", "1.5", "-0.25", ".5", "5.", "1e5", "1E-3", "-2.5e+10", "1e", "e5", ".", "-", "+", "",
    "nan", "NaN", "NA", "N/A", "n/a", "null", "NULL", "inf", "-inf", "+inf", "Infinity", "-Infinity", "INF", "nAn",
    "fin", "a", "1a", "9223372036854775807", "9223372036854775808", "-9223372036854775808", "1e999", "3.4e39",
    "2147483648", "1/2", "--1", "1-2", "0.1.2", " ", "1 ", " 1", "\t", "x", '"1"',
]


def arrow(block: bytes, types: dict[str, pa.DataType], include: list[str]) -> pa.Table | None:
    try:
        return pa_csv.read_csv(
            pa.BufferReader(block),
            read_options=pa_csv.ReadOptions(column_names=NAMES),
            parse_options=pa_csv.ParseOptions(quote_char=False),
            convert_options=pa_csv.ConvertOptions(column_types=types, include_columns=include),
        )
    except pa.ArrowInvalid:
        return None


#: tokens both parsers read (as a number or a null) in a float column
GOOD = ["0", "1", "-1", "12", "1.5", "-0.25", ".5", "5.", "1e5", "1E-3", "-2.5e-10", "", "7", "42"]


def random_block(rng: random.Random) -> bytes:
    lines = []
    tokens = GOOD if rng.random() < 0.6 else TOKENS
    for _ in range(rng.randint(1, 6)):
        fields = [rng.choice(tokens if rng.random() < 0.97 else TOKENS) for _ in range(rng.choice([4] * 12 + [3, 5]))]
        lines.append(",".join(fields))
        if rng.random() < 0.05:
            lines.append("")  # a blank line
    newline = rng.choice(["\n", "\n", "\r\n"])
    block = newline.join(lines) + (newline if rng.random() < 0.9 else "")
    if rng.random() < 0.03:
        block = block.replace("\n", "\r", 1)
    return block.encode()


TYPE_SETS = [
    {"id": pa.int64(), "a": pa.float64(), "b": pa.float64(), "c": pa.float32()},
    {"id": pa.float64(), "a": pa.float64(), "b": pa.float64(), "c": pa.float64()},
    {"id": pa.int32(), "a": pa.float32(), "b": pa.int64(), "c": pa.float64()},
    {"id": pa.string(), "a": pa.float64(), "b": pa.string(), "c": pa.int64()},
]


@pytest.mark.unit
@pytest.mark.parametrize("types", TYPE_SETS)
@pytest.mark.parametrize("include", [NAMES, ["c", "id", "a"], ["b"]])
def test_the_fast_path_reads_what_arrow_reads_or_leaves_the_block_to_arrow(types, include):
    rng = random.Random(f"{sorted(types.items())}{include}")
    fast_tables = 0
    for _ in range(600):
        block = random_block(rng)
        wanted = {name: types[name] for name in include}
        fast = parse_numbers(block, NAMES, wanted, include)
        expected = arrow(block, wanted, include)
        if fast is None:
            continue
        fast_tables += 1
        assert expected is not None, f"Arrow refuses {block!r}; the fast path read {fast.to_pydict()}"
        assert fast.schema == expected.schema, block
        assert str(fast.to_pydict()) == str(expected.to_pydict()), block  # (str: NaN equals NaN)
    assert fast_tables > 5  # (the fast path was taken often enough to mean something)


@pytest.mark.unit
@pytest.mark.parametrize(
    "block, integers, plain",
    [
        (b"1,2.5\n3,4\n", True, True),
        (b"1,2.5\r\n3,4\r\n", True, True),
        (b"1,nan\n3,Infinity\n", True, False),  # letters: Arrow reads nan as null, polars as NaN
        (b"1,2e+5\n", True, False),  # a "+" with an integer column: Arrow refuses "+1", polars takes it
        (b"1,2e+5\n", False, True),
        (b"1,2\r3,4\r", False, False),  # lone carriage returns
        (b"1, 2\n", False, False),
        (b'1,"2"\n', False, False),
        (b"1,#N/A\n", False, False),
        (b"", False, False),
    ],
)
def test_which_blocks_count_as_plain_numbers(block, integers, plain):
    assert plain_numbers(block, integers) is plain


@pytest.mark.unit
def test_columns_without_a_numeric_type_and_the_switch_leave_blocks_to_arrow(monkeypatch):
    block = b"1,2.5,3,4\n"
    assert parse_numbers(block, NAMES, {"id": pa.int64(), "a": pa.bool_()}, ["id", "a"]) is None
    assert parse_numbers(block, NAMES, {"id": pa.int64()}, ["id", "a"]) is None  # "a" left to inference
    read = parse_numbers(block, NAMES, {"id": pa.int64(), "c": pa.float32()}, ["c", "id"])
    assert read is not None and read.to_pydict() == {"c": [4.0], "id": [1]}
    for blank in (b"1,2.5,3,4\n\n2,1,1,1\n", b"\n1,2.5,3,4\n"):  # Arrow skips a blank line, polars reads nulls
        assert parse_numbers(blank, NAMES, {"id": pa.int64()}, ["id"]) is None
    assert parse_numbers(b"1\n\n2\n", ["x"], {"x": pa.int64()}, ["x"]) is None  # (one column: no delimiter)
    assert parse_numbers(b"1\n2\n", ["x"], {"x": pa.int64()}, ["x"]).to_pydict() == {"x": [1, 2]}
    monkeypatch.setenv("BATCH_SCORING_CSV_PARSER", "arrow")
    csv_numeric._mode.cache_clear()
    assert parse_numbers(block, NAMES, {"id": pa.int64()}, ["id"]) is None


@pytest.mark.unit
def test_by_default_a_process_turns_to_polars_after_its_warm_up(monkeypatch):
    monkeypatch.delenv("BATCH_SCORING_CSV_PARSER")
    csv_numeric._mode.cache_clear()
    monkeypatch.setattr(csv_numeric, "WARM_UP_BYTES", 30)
    monkeypatch.setitem(csv_numeric._warm_up, "parsed", 0)
    block = b"1,2.5,3,4\n" * 2  # 20 bytes
    assert parse_numbers(block, NAMES, {"id": pa.int64()}, ["id"]) is None  # 20 of 30 bytes: Arrow
    assert parse_numbers(block, NAMES, {"id": pa.int64()}, ["id"]) is None  # 40 of 30 bytes: Arrow
    assert parse_numbers(block, NAMES, {"id": pa.int64()}, ["id"]).to_pydict() == {"id": [1, 1]}
