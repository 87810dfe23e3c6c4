"""Turning user-given values (task arguments, rendered templates, CLI flags, JSON) into typed values, once, at the edge.

Templated operator arguments arrive as strings (``"True"``, ``"4"``, ``"id,score"``); every parser here accepts
the real type and its rendered text, and raises :class:`~airflow_batch_scoring.errors.ConfigurationError` naming
the argument and the value for anything else. :class:`ColumnIndex` is the one case-insensitive column lookup.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Sequence
from typing import Any

from airflow_batch_scoring.errors import ConfigurationError

_TRUE = ("true", "1", "yes")
_FALSE = ("false", "0", "no")
_NONE = ("", "none", "null")


def to_bool(value: Any, name: str) -> bool:
    """``True``/``False`` from a bool, ``0``/``1``, or their rendered text (``"True"``, ``"false"``, ``"yes"``).

    :raises ConfigurationError: for anything else.
    """
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str):
        text = value.strip().lower()
        if text in _TRUE:
            return True
        if text in _FALSE:
            return False
    raise ConfigurationError(f"{name} must be true or false, got {value!r}.")


def to_optional_bool(value: Any, name: str) -> bool | None:
    """:func:`to_bool`, with ``None`` (not given) kept as ``None``."""
    return None if value is None else to_bool(value, name)


def to_int(value: Any, name: str, minimum: int | None = None) -> int:
    """A whole number from an int, a whole float or its text (``"4"``, ``" 4 "``), at least ``minimum``.

    :raises ConfigurationError: for booleans, fractions, text that is not a number, or a number below ``minimum``.
    """
    number: int | None = None
    if isinstance(value, bool):
        number = None
    elif isinstance(value, int):
        number = value
    elif isinstance(value, float) and value.is_integer():
        number = int(value)
    elif isinstance(value, str) and value.strip().lstrip("+-").isdigit():
        number = int(value.strip())
    if number is None:
        wanted = "a whole number" if minimum is None else f"a whole number >= {minimum}"
        raise ConfigurationError(f"{name} must be {wanted}, got {value!r}.")
    if minimum is not None and number < minimum:
        raise ConfigurationError(f"{name} must be a whole number >= {minimum}, got {value!r}.")
    return number


def to_positive_int(value: Any, name: str) -> int:
    """A whole number >= 1 (``replicas``, ``batch_size``, ...); see :func:`to_int`."""
    try:
        return to_int(value, name, minimum=1)
    except ConfigurationError:
        raise ConfigurationError(f"{name} must be a positive integer, got {value!r}.") from None


def to_optional_int(value: Any, name: str, minimum: int | None = None) -> int | None:
    """:func:`to_int`, with ``None``, ``""``, ``"none"`` and ``"null"`` read as not given (``None``)."""
    if value is None or (isinstance(value, str) and value.strip().lower() in _NONE):
        return None
    return to_int(value, name, minimum)


def to_optional_float(
    value: Any, name: str, minimum: float | None = None, maximum: float | None = None
) -> float | None:
    """A number (or its text) between ``minimum`` and ``maximum`` inclusive; ``None``/``""``/``"none"``: ``None``.

    :raises ConfigurationError: for booleans, text that is not a number, NaN, or a number out of range.
    """
    if value is None or (isinstance(value, str) and value.strip().lower() in _NONE):
        return None
    number: float | None = None
    if not isinstance(value, bool):
        try:
            number = float(value.strip() if isinstance(value, str) else value)
        except (TypeError, ValueError):
            number = None
    if number is None or number != number:
        raise ConfigurationError(f"{name} must be a number, got {value!r}.")
    if (minimum is not None and number < minimum) or (maximum is not None and number > maximum):
        low = "" if minimum is None else f">= {minimum}"
        high = "" if maximum is None else f"<= {maximum}"
        raise ConfigurationError(f"{name} must be a number {' and '.join(p for p in (low, high) if p)}, got {value!r}.")
    return number


def to_columns(value: Any, name: str, *, required: bool = False) -> list[str] | None:
    """A list of column names from a list, a tuple or comma-separated text (``"id, score"``); no name twice (names
    are case-insensitive). Empty (``None``, ``""``, ``[]``) gives ``None``, or an error when ``required``.

    :raises ConfigurationError: for anything that is not names, a name given twice, or nothing when required.
    """
    if isinstance(value, str):
        value = [part.strip() for part in value.split(",") if part.strip()]
    if value is None or (isinstance(value, (list, tuple)) and not value):
        if required:
            raise ConfigurationError(f"{name} must be a non-empty list of column names, got {value!r}.")
        return None
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) and v.strip() for v in value):
        raise ConfigurationError(f"{name} must be a list of column names, got {value!r}.")
    names = [v.strip() for v in value]
    keys = [n.lower() for n in names]
    twice = sorted({n for n, key in zip(names, keys, strict=True) if keys.count(key) > 1})
    if twice:
        raise ConfigurationError(f"{name} names a column twice (names are case-insensitive): {twice}.")
    return names


class ColumnIndex:
    """The one case-insensitive column lookup: each name's first spelling, found by any spelling.

    >>> index = ColumnIndex(["ID", "Score"])
    >>> index.get("id"), index.get("nope")
    ('ID', None)
    """

    def __init__(self, names: Iterable[str]):
        self.names: list[str] = list(names)
        self._by_key: dict[str, str] = {}
        for name in self.names:
            self._by_key.setdefault(name.lower(), name)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.lower() in self._by_key

    def __len__(self) -> int:
        return len(self.names)

    def get(self, name: str) -> str | None:
        """The indexed spelling of ``name`` (ignoring case), or ``None``."""
        return self._by_key.get(name.lower())

    def missing(self, wanted: Iterable[str]) -> list[str]:
        """The names of ``wanted`` that are not in the index, in their order."""
        return [name for name in wanted if name.lower() not in self._by_key]

    def suggest(self, name: str) -> str | None:
        """The indexed name closest to ``name``, for a "did you mean" hint (``None`` when none is close)."""
        close = difflib.get_close_matches(name.lower(), list(self._by_key), n=1, cutoff=0.6)
        return self._by_key[close[0]] if close else None

    def resolve(self, wanted: Sequence[str], what: str = "column") -> list[str]:
        """The indexed spellings of ``wanted``, in its order.

        :raises ConfigurationError: naming each missing name, what the closest indexed name is, and the names there.
        """
        missing = self.missing(wanted)
        if missing:
            hints = [f"{name!r} (did you mean {hint!r}?)" if (hint := self.suggest(name)) else repr(name)
                     for name in missing]
            raise ConfigurationError(f"No {what} {', '.join(hints)}; the columns are {self.names}.")
        return [self._by_key[name.lower()] for name in wanted]
