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

    @property
    def gamma(self) -> float:
        return (1 + self.alpha) / (1 - self.alpha)

    @property
    def count(self) -> int:
        """The values counted (NaN apart)."""
        return self.zero + sum(self.positive.values()) + sum(self.negative.values())

    def _index(self, magnitudes: np.ndarray) -> np.ndarray:
        return np.ceil(np.log(magnitudes) / math.log(self.gamma)).astype(np.int64)

    def add(self, values: np.ndarray) -> None:
        """Count ``values`` (a float array; NaN counted in :attr:`nan`; infinities are not accepted)."""
        values = np.asarray(values, dtype=np.float64)
        missing = np.isnan(values)
        self.nan += int(missing.sum())
        values = values[~missing]
        magnitudes = np.abs(values)
        small = magnitudes <= MIN_VALUE
        self.zero += int(small.sum())
        _add_counts(self.positive, self._index(values[(values > 0) & ~small]))
        _add_counts(self.negative, self._index(-values[(values < 0) & ~small]))

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
        return self

    def value(self, index: int) -> float:
        """The representative value of positive bucket ``index`` (within ``alpha`` of every value in it)."""
        return 2 * self.gamma**index / (self.gamma + 1)

    def buckets(self) -> list[tuple[float, int]]:
        """Every non-empty bucket in increasing order of value, as ``(upper edge, count)``: a value ``x`` lies in
        the first bucket whose upper edge is ``>= x`` (the zero bucket's edge is ``MIN_VALUE``)."""
        out: list[tuple[float, int]] = []
        for key in sorted(self.negative, reverse=True):
            out.append((-(self.gamma ** (key - 1)), self.negative[key]))
        if self.zero:
            out.append((MIN_VALUE, self.zero))
        for key in sorted(self.positive):
            out.append((self.gamma**key, self.positive[key]))
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
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> LogSketch:
        return cls(
            alpha=float(data["alpha"]),
            positive={k: int(v) for k, v in unpack_counts(data["positive"]).items()},
            negative={k: int(v) for k, v in unpack_counts(data["negative"]).items()},
            zero=int(data["zero"]),
            nan=int(data["nan"]),
        )
