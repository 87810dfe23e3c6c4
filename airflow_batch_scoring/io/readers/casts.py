"""Which values do not fit their column's type, and the failures that say so: a value that cannot be cast, a
passthrough value that does not fit the run's type, a missing or infinite value a model refuses.

A failure is an exception (it stops the vectorised read of a block at once) that knows its column, its row's index
in the block and its :class:`~airflow_batch_scoring.io.bad_rows.quarantine.Diagnosis`.
"""

from __future__ import annotations

from typing import Any

import pyarrow as pa

from airflow_batch_scoring.io.bad_rows import quarantine
from airflow_batch_scoring.io.bad_rows.quarantine import Diagnosis
from airflow_batch_scoring.schema import column_type_of_arrow


def _type_name(arrow_type: pa.DataType) -> str:
    return f"{column_type_of_arrow(arrow_type).value} ({arrow_type})"


def cast_fails(array: pa.Array | pa.ChunkedArray, arrow_type: pa.DataType) -> bool:
    """Whether some value of ``array`` cannot be cast to ``arrow_type``."""
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
        if low >= high or not cast_fails(array.slice(low, high - low), arrow_type):
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
        if cast_fails(array.slice(0, middle), arrow_type):
            high = middle
        else:
            low = middle + 1
    return low - 1


class CastFailure(Exception):
    """A value of a model column that cannot be cast to the column's schema type."""

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
        return Diagnosis(quarantine.TYPE_MISMATCH, self.message(), self.column, self.value, self.expected)


class PassthroughCastFailure(CastFailure):
    """A passthrough value that does not fit the run's type for its column (given, or the source's own)."""

    def message(self) -> str:
        return (
            f"value {self.value!r} of the passthrough column cannot be read as {_type_name(self.arrow_type)}, the "
            "column's type for this run (from passthrough_schema, or the source's own type). Fix the value, or give "
            'the column another type in passthrough_schema ([{"name": ..., "type": "String"}] carries any value as '
            "text)."
        )


class MissingValue(CastFailure):
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
        return Diagnosis(quarantine.MISSING_VALUE, self.message(), self.column)


class InfiniteValue(MissingValue):
    """A model column holding inf or -inf, when the plan rejects infinite values."""

    def message(self) -> str:
        return (
            "the value is infinite (inf or -inf), and the model does not accept infinite values. Replace it upstream "
            "(with a finite value, or an empty one if the model accepts missing values), or score with a model that "
            "handles them."
        )

    def diagnosis(self) -> Diagnosis:
        return Diagnosis(quarantine.INFINITE_VALUE, self.message(), self.column)
