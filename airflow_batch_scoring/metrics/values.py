"""Labels, predictions and group values as the metrics compare them.

A class is compared by its key, a string: integers and integral floats as ``"1"``, other floats as ``repr``, booleans
as ``"True"``/``"False"``, text as it is. So a CSV label ``"1"`` (text), a Parquet label ``1`` (int) and a
scikit-learn prediction ``1`` (int) or ``1.0`` are one class, and the probability column ``probability_1`` is its
probability.

Never imports Airflow.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from airflow_batch_scoring.errors import InputError

#: the key of a missing value (a protected attribute's group).
MISSING = "(missing)"


def _float_key(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def key_of(value: object) -> str:
    """The key of one class name or value."""
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        return _float_key(float(value))
    text = str(value)
    try:
        number = float(text)
    except ValueError:
        return text
    return _float_key(number) if np.isfinite(number) else text


def is_numeric(array: pa.Array | pa.ChunkedArray) -> bool:
    return pa.types.is_integer(array.type) or pa.types.is_floating(array.type) or pa.types.is_decimal(array.type)


def as_float(array: pa.Array | pa.ChunkedArray, column: str, role: str) -> np.ndarray:
    """The column's values as float64 (text parsed as numbers); nulls become NaN.

    :raises InputError: naming the column, a value that is not a number, and what to do.
    """
    if pa.types.is_boolean(array.type):
        array = pc.cast(array, pa.int8())
    try:
        cast = pc.cast(array, pa.float64()) if not pa.types.is_floating(array.type) else array
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        bad = next((v for v in array.to_pylist() if v is not None and key_of(v) == str(v) and not _number(v)), None)
        raise InputError(
            f"the {role} column holds {bad!r}, which is not a number, but the model predicts numbers "
            f"({role} values must be numbers of the model's classes or targets). Fix the {role} column, or choose "
            "the right label_column and task.",
            column=column,
        ) from None
    return np.asarray(cast.to_numpy(zero_copy_only=False), dtype=np.float64)


def _number(value: object) -> bool:
    try:
        float(str(value))
    except ValueError:
        return False
    return True


def class_keys(array: pa.Array | pa.ChunkedArray, *, numeric: bool, column: str, role: str) -> np.ndarray:
    """The keys of a column of classes (an array of ``str``); ``numeric``: the model predicts numbers, so the
    values must be numbers (text is parsed).

    :raises InputError: when ``numeric`` and a value is not a number.
    """
    if numeric:
        values = as_float(array, column, role)
        integral = np.isfinite(values) & (values == np.round(values))
        out = np.empty(len(values), dtype=object)
        out[integral] = values[integral].astype(np.int64).astype(str)
        out[~integral] = [repr(float(v)) for v in values[~integral]]
        return out.astype(str)
    if pa.types.is_boolean(array.type):
        return np.array([str(v) for v in array.to_pylist()])
    return np.asarray(pc.cast(array, pa.string()).to_numpy(zero_copy_only=False)).astype(str)


def group_keys(array: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """The keys of a protected attribute's groups (missing values: :data:`MISSING`)."""
    values = array.to_pylist()
    return np.array([MISSING if v is None else key_of(v) for v in values], dtype=object).astype(str)


def sort_classes(keys: Iterable[str]) -> list[str]:
    """Class keys in scikit-learn's order: numerically when every key is a number, else as text."""
    keys = list(keys)
    try:
        return sorted(keys, key=float)
    except ValueError:
        return sorted(keys)
