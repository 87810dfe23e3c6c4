"""SQL values as Arrow, and the values of a partition column as JSON: the SQL source's value helpers.

A partition column's bounds travel in the job document (:attr:`~airflow_batch_scoring.job.Piece.sql_range`) as JSON:
:func:`encode` and :func:`decode` turn dates, timestamps and decimals into text and back; :func:`split_range` cuts a
column's ``[min, max]`` into near-equal ranges; :func:`to_arrow` turns one column of fetched values into Arrow.

Shared with the runtime: never imports Airflow.
"""

from __future__ import annotations

import json
import math
from datetime import date, datetime
from decimal import Decimal
from typing import Any

import pyarrow as pa


def kind_of(value: Any) -> str | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return "int"
    if isinstance(value, float):
        return "float" if math.isfinite(value) else None
    if isinstance(value, Decimal):
        return "decimal" if value.is_finite() else None
    if isinstance(value, datetime):
        return "datetime"
    if isinstance(value, date):
        return "date"
    return None


def encode(value: Any, kind: str) -> Any:
    if value is None:
        return None
    if kind in ("date", "datetime"):
        return value.isoformat()
    if kind == "decimal":
        return str(value)
    return value


def decode(value: Any, kind: str) -> Any:
    if value is None:
        return None
    if kind == "datetime":
        return datetime.fromisoformat(value)
    if kind == "date":
        return date.fromisoformat(value)
    if kind == "decimal":
        return Decimal(value)
    return value


def split_range(low: Any, high: Any, parts: int, kind: str) -> list[Any]:
    """The inner bounds ``b_1 < ... < b_m`` (``m <= parts - 1``) cutting ``[low, high]`` into near-equal ranges."""
    bounds: list[Any] = []
    for i in range(1, parts):
        if kind in ("int", "date"):  # whole numbers, whole days
            bound = low + (high - low) * i // parts
        else:  # float, decimal, datetime (timedelta * int / int)
            bound = low + (high - low) * i / parts
        if bound > low and bound <= high and (not bounds or bound > bounds[-1]):
            bounds.append(bound)
    return bounds


def _text(value: Any) -> str | None:
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, (dict, list)):
        return json.dumps(value, default=str)  # JSON columns stay JSON
    return str(value)


def _as_text(values: list[Any]) -> pa.Array:
    return pa.array([_text(v) for v in values], pa.string())


def to_arrow(values: list[Any], declared: pa.DataType) -> pa.Array:
    """One column of Python values as Arrow, of the column's type where the values fit it.

    A value that does not fit (text in a SQLite REAL column, say) leaves the column as read; a model column is then
    coerced, and the bad value reported, by the schema code.
    """
    if pa.types.is_string(declared):
        return _as_text(values)
    try:
        array = pa.array(values)
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
        return _as_text(values)
    if array.type != declared:
        try:
            array = array.cast(declared)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError):
            pass
    return array
