"""The fast path of the CSV reader: a block of plain numbers parsed by polars, when polars is installed.

polars' CSV parser spends about a third less CPU than Arrow's on numeric text (this machine: 98 against 152 CPU-ms
for a 16 MiB block of the benchmark's 21-column file, checks included; see benchmarks/README.md). It is used only
where its result is the one Arrow's parser gives, else the block goes to Arrow (:meth:`CsvReader.parse`), which also
raises every error, so a bad line is reported exactly as before (file, line, column):

- every column read has a declared type, int32, int64, float32, float64 or string (the columns not read are parsed
  as text and dropped);
- the block holds only digits, ``. , - + e E``, commas and line breaks: no quote, no blank, no tab, no letter (Arrow
  reads ``nan``, ``NA`` or ``null`` as nulls in number columns and as text in text columns; polars reads ``nan`` as
  NaN), no lone carriage return; and a ``+`` only when no column is an integer (Arrow refuses ``+1`` as an integer,
  polars takes it);
- polars raises on a line with more fields than columns, but fills a line with fewer fields (or a blank line) with
  nulls, where Arrow raises (or skips it): the block's delimiters are counted, and a result is kept only when every
  line holds one field per column.

Any polars error sends the block to Arrow. A process turns to polars after its first 48 MiB (:data:`WARM_UP_BYTES`;
importing polars pays off only on large inputs); ``BATCH_SCORING_CSV_PARSER=arrow`` turns the fast path off,
``=polars`` takes it from the first block.
``tests/unit/test_csv_numeric.py`` compares both parsers on random blocks.

Shared with the runtime: never imports Airflow.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from functools import cache
from typing import Any

import numpy as np
import pyarrow as pa

#: the bytes a block may hold for polars to parse it: digits, signs, the decimal point, exponents, commas, line breaks.
#: No letters: Arrow reads its null spellings (``nan``, ``NA``, ``null``, ...) as nulls in number columns and as text
#: in text columns, polars reads ``nan`` as NaN (and given Arrow's list, takes 80 % longer): such blocks go to Arrow.
ALLOWED_BYTES = b"0123456789.,-+eE\r\n"
_NUMBERS = {
    pa.int32(): "Int32", pa.int64(): "Int64", pa.float32(): "Float32", pa.float64(): "Float64", pa.string(): "String",
}
_INTEGERS = (pa.int32(), pa.int64())
_COMMA = ord(",")


#: bytes a process parses with Arrow before it turns to polars (``BATCH_SCORING_CSV_PARSER`` unset): importing polars
#: costs ~0.15 CPU-s, which the faster parse pays back only over ~100 MiB (1.5 CPU-ms per MiB), so short jobs never
#: import it.
WARM_UP_BYTES = 48 << 20
_warm_up = {"parsed": 0}


@cache
def _mode() -> str:
    """``arrow`` (never polars), ``polars`` (from the first block) or ``auto`` (after :data:`WARM_UP_BYTES`), from
    ``BATCH_SCORING_CSV_PARSER``."""
    mode = os.environ.get("BATCH_SCORING_CSV_PARSER", "").strip().lower()
    return mode if mode in ("arrow", "polars") else "auto"


@cache
def _polars() -> Any | None:
    """The polars module, or ``None`` when it is not installed."""
    try:
        import polars
    except ImportError:
        return None
    return polars


def _warmed_up(size: int) -> bool:
    """Whether this process has parsed enough to turn to polars (counting this block of ``size`` bytes if not)."""
    mode = _mode()
    if mode != "auto":
        return mode == "polars"
    if _warm_up["parsed"] >= WARM_UP_BYTES:
        return True
    _warm_up["parsed"] += size
    return False


def plain_numbers(block: bytes, integers: bool) -> bool:
    """Whether ``block`` holds only what both parsers read alike (see the module docstring): blank lines are found
    by :func:`parse_numbers`' count of the delimiters.

    :param integers: whether an integer column is read (then no ``+``).
    """
    if not block or block.translate(None, ALLOWED_BYTES):
        return False
    if integers and b"+" in block:
        return False
    return b"\r" not in block or block.count(b"\r") == block.count(b"\r\n")  # no lone carriage return


def parse_numbers(
    block: bytes, names: Sequence[str], types: Mapping[str, pa.DataType], include: Sequence[str]
) -> pa.Table | None:
    """The columns ``include`` of the CSV ``block`` (no header; its columns ``names``), typed by ``types``, as
    Arrow's parser would read them; ``None`` when the block must go to Arrow.

    :param types: the declared type of each column to read (every one of ``include`` must have one).
    """
    if not names or not include or any(types.get(name) not in _NUMBERS for name in include):
        return None
    if not _warmed_up(len(block)):
        return None
    if len(names) == 1 and (block.startswith((b"\n", b"\r")) or b"\n\n" in block or b"\n\r\n" in block):
        return None  # a blank line (with one column, the delimiters cannot tell it)
    if not plain_numbers(block, any(types[name] in _INTEGERS for name in include)):
        return None
    pl = _polars()
    if pl is None:
        return None
    schema = {name: getattr(pl, _NUMBERS[types[name]] if name in include else "String") for name in names}
    try:
        frame = pl.read_csv(
            block, has_header=False, new_columns=list(names), schema=schema, quote_char=None, null_values=None,
            empty_string_is_null=False, raise_if_empty=False,
        )
    except Exception:  # noqa: BLE001 - Arrow parses the block again and reports what is wrong
        return None
    if int(np.count_nonzero(np.frombuffer(block, np.uint8) == _COMMA)) != frame.height * (len(names) - 1):
        return None  # a line with fewer fields, or a blank line (polars gave it nulls, Arrow refuses or skips it)
    table = frame.select(list(include)).to_arrow()
    return table.cast(pa.schema([(name, types[name]) for name in include]))
