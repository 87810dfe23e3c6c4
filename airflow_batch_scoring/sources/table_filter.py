"""A table source's ``filter`` (``(column, operator, value)`` conditions that all hold) as the expressions that apply
it: an Arrow expression for the rows read, a pyiceberg expression for planning an Iceberg scan (partition and
column-statistics pruning of its data files).

Shared with the runtime: never imports Airflow.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import pyarrow.compute as pc

Condition = tuple[str, str, Any]


def arrow_filter(conditions: Sequence[Condition]) -> pc.Expression:
    """The rows where every condition holds (a null never satisfies a comparison)."""
    terms = []
    for column, operator, value in conditions:
        field = pc.field(column)
        if operator == "in":
            term = field.isin(list(value))
        elif operator == "not in":
            term = ~field.isin(list(value))
        else:
            term = {"=": field == value, "!=": field != value, "<": field < value, "<=": field <= value,
                    ">": field > value, ">=": field >= value}[operator]
        terms.append(term)
    return functools.reduce(lambda left, right: left & right, terms)


def iceberg_filter(conditions: Sequence[Condition]) -> Any:
    """The same conditions as a pyiceberg row filter (for ``Table.scan(row_filter=...)``)."""
    from pyiceberg import expressions

    ops: Any = expressions  # (pydantic models: their constructors confuse type checkers)
    terms = []
    for column, operator, value in conditions:
        if operator in ("in", "not in"):
            term = (ops.In if operator == "in" else ops.NotIn)(column, set(value))
        elif value is None:
            term = ops.IsNull(column) if operator == "=" else ops.NotNull(column)
        else:
            term = {"=": ops.EqualTo, "!=": ops.NotEqualTo, "<": ops.LessThan, "<=": ops.LessThanOrEqual,
                    ">": ops.GreaterThan, ">=": ops.GreaterThanOrEqual}[operator](column, value)
        terms.append(term)
    return functools.reduce(ops.And, terms[1:], terms[0]) if terms else ops.AlwaysTrue()


__all__ = ["arrow_filter", "iceberg_filter"]
