"""A mergeable quantile sketch with a relative error bound (the DDSketch construction), for residual quantiles and
the distributions compared for drift.

A value ``x`` with ``|x| > MIN_VALUE`` falls in bucket ``i = ceil(log_gamma(|x|))`` of its sign, the interval
``(gamma**(i-1), gamma**i]``, where ``gamma = (1 + alpha) / (1 - alpha)``; values with ``|x| <= MIN_VALUE`` are counted
as zero. A bucket is represented by ``2 * gamma**i / (gamma + 1)``, which is within ``alpha`` (relative) of every value
in it. So :meth:`LogSketch.quantile` returns a value within ``alpha * |x|`` of the exact ``x`` (``numpy.quantile``
with ``method="lower"``), or within ``MIN_VALUE`` of it near zero. The number of buckets is bounded by the range of the
values (about 2,800 per sign from 1e-12 to 1e12 with ``alpha = 0.01``), never by their count, and two sketches with the
same ``alpha`` merge by adding their counts.

Never imports Airflow.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from airflow_batch_scoring.metrics.packing import pack_counts, unpack_counts

#: the default relative accuracy of the sketch.
DEFAULT_ALPHA = 0.005
#: absolute values at or below this are counted as zero.
MIN_VALUE = 1e-12
#: the zero bucket's slot (positive buckets have even slots, negative ones odd).
ZERO_SLOT = 1 << 62


def _add_counts(into: dict[int, int], keys: np.ndarray) -> None:
    if keys.size == 0:
        return
    unique, counts = np.unique(keys, return_counts=True)
    for key, count in zip(unique.tolist(), counts.tolist(), strict=True):
        into[key] = into.get(key, 0) + count


@dataclass
class LogSketch:
    """Counts of values in logarithmic buckets (see the module's docstring); NaN values are counted apart.

    :param alpha: the relative accuracy of every bucket (``0 < alpha < 1``).
    """

    alpha: float = DEFAULT_ALPHA
    positive: dict[int, int] = field(default_factory=dict)
    negative: dict[int, int] = field(default_factory=dict)
    zero: int = 0
    nan: int = 0
    #: buckets (by :meth:`slot`) whose values are not all one value, and the one value of every other bucket: a
    #: bucket of one value is a point, where a distribution function is exact (see ``drift.numeric_drift``)
    mixed: set[int] = field(default_factory=set)
    single: dict[int, float] = field(default_factory=dict)

    @property
    def gamma(self) -> float:
        return (1 + self.alpha) / (1 - self.alpha)

    @property
    def count(self) -> int:
        """The values counted (NaN apart)."""
        return self.zero + sum(self.positive.values()) + sum(self.negative.values())

    def _index(self, magnitudes: np.ndarray) -> np.ndarray:
        return np.ceil(np.log(magnitudes) / math.log(self.gamma)).astype(np.int64)

    @staticmethod
    def slot(sign: int, index: int) -> int:
        """One integer for a bucket: positive ``index`` (``sign`` 1), negative (``-1``) or the zero bucket (0)."""
        return ZERO_SLOT if sign == 0 else 2 * index if sign > 0 else 2 * index + 1

    def add(self, values: np.ndarray) -> None:
        """Count ``values`` (a float array; NaN counted in :attr:`nan`; infinities are not accepted)."""
        values = np.asarray(values, dtype=np.float64)
        missing = np.isnan(values)
        self.nan += int(missing.sum())
        values = values[~missing]
        magnitudes = np.abs(values)
        small = magnitudes <= MIN_VALUE
        self.zero += int(small.sum())
        positive, negative = values[(values > 0) & ~small], values[(values < 0) & ~small]
        pos_index, neg_index = self._index(positive), self._index(-negative)
        _add_counts(self.positive, pos_index)
        _add_counts(self.negative, neg_index)
        slots = np.concatenate([2 * pos_index, 2 * neg_index + 1, np.full(int(small.sum()), ZERO_SLOT)])
        ordered = np.concatenate([positive, negative, values[small]])
        if slots.size:
            order = np.argsort(slots, kind="stable")
            unique, starts = np.unique(slots[order], return_index=True)
            low = np.minimum.reduceat(ordered[order], starts)
            high = np.maximum.reduceat(ordered[order], starts)
            for slot, lo, hi in zip(unique.tolist(), low.tolist(), high.tolist(), strict=True):
                self._note(slot, lo, hi)

    def _note(self, slot: int, low: float, high: float) -> None:
        if slot in self.mixed:
            return
        if low != high or self.single.get(slot, low) != low:
            self.mixed.add(slot)
            self.single.pop(slot, None)
        else:
            self.single[slot] = low

    def point(self, slot: int) -> float | None:
        """The one value of a bucket that holds one value (``None``: several, or none)."""
        return None if slot in self.mixed else self.single.get(slot)

    def merge(self, other: LogSketch) -> LogSketch:
        """Add ``other``'s counts to this sketch (same ``alpha``); returns this sketch."""
        if not math.isclose(self.alpha, other.alpha):
            raise ValueError(f"Cannot merge sketches of accuracy {self.alpha} and {other.alpha}.")
        for key, count in other.positive.items():
            self.positive[key] = self.positive.get(key, 0) + count
        for key, count in other.negative.items():
            self.negative[key] = self.negative.get(key, 0) + count
        self.zero += other.zero
        self.nan += other.nan
        for slot in other.mixed:
            self.mixed.add(slot)
            self.single.pop(slot, None)
        for slot, value in other.single.items():
            self._note(slot, value, value)
        return self

    def value(self, index: int) -> float:
        """The representative value of positive bucket ``index`` (within ``alpha`` of every value in it)."""
        return 2 * self.gamma**index / (self.gamma + 1)

    def buckets(self) -> list[tuple[float, int]]:
        """Every non-empty bucket in increasing order of value, as ``(upper edge, count)``: a value ``x`` lies in
        the first bucket whose upper edge is ``>= x`` (the zero bucket's edge is ``MIN_VALUE``)."""
        return [(edge, count) for edge, count, _ in self.slots()]

    def slots(self) -> list[tuple[float, int, int]]:
        """:meth:`buckets` with each bucket's :meth:`slot`."""
        out: list[tuple[float, int, int]] = []
        for key in sorted(self.negative, reverse=True):
            out.append((-(self.gamma ** (key - 1)), self.negative[key], self.slot(-1, key)))
        if self.zero:
            out.append((MIN_VALUE, self.zero, ZERO_SLOT))
        for key in sorted(self.positive):
            out.append((self.gamma**key, self.positive[key], self.slot(1, key)))
        return out

    def quantile(self, q: float) -> float | None:
        """The value of rank ``floor(q * (n - 1))`` in sorted order, within ``alpha`` relative (or ``MIN_VALUE``
        absolute) of the exact one; ``None`` when the sketch is empty."""
        n = self.count
        if n == 0:
            return None
        rank = math.floor(q * (n - 1))
        seen = 0
        for key in sorted(self.negative, reverse=True):
            seen += self.negative[key]
            if seen > rank:
                return -self.value(key)
        seen += self.zero
        if seen > rank:
            return 0.0
        for key in sorted(self.positive):
            seen += self.positive[key]
            if seen > rank:
                return self.value(key)
        return self.value(max(self.positive))  # not reached

    def to_dict(self) -> dict[str, Any]:
        return {
            "alpha": self.alpha,
            "positive": pack_counts(self.positive),
            "negative": pack_counts(self.negative),
            "zero": self.zero,
            "nan": self.nan,
            "mixed": pack_counts(dict.fromkeys(self.mixed, 1)),
            "single": pack_counts(self.single),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> LogSketch:
        return cls(
            alpha=float(data["alpha"]),
            positive={k: int(v) for k, v in unpack_counts(data["positive"]).items()},
            negative={k: int(v) for k, v in unpack_counts(data["negative"]).items()},
            zero=int(data["zero"]),
            nan=int(data["nan"]),
            mixed=set(unpack_counts(data["mixed"])),
            single={k: float(v) for k, v in unpack_counts(data["single"]).items()},
        )
