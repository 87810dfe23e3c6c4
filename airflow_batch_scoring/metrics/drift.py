"""Distributions of features and predictions (:class:`Profile`, mergeable) and the drift of one against a baseline:
the population stability index (PSI) and the Kolmogorov–Smirnov statistic (KS).

A numeric column is kept as a :class:`~airflow_batch_scoring.metrics.sketch.LogSketch`, a text or boolean one as
counts per value (at most :data:`MAX_CATEGORIES`, the rest counted as ``(other)``). Missing values are counted apart.

- **PSI** ``sum((c - b) * ln(c / b))`` over :data:`PSI_BINS` bins whose edges are the baseline's deciles, each
  rounded up to the edge of its sketch bucket (so every row is binned exactly; the edges are reported); a bin's share
  is at least :data:`PSI_FLOOR` (an empty bin would make it infinite); missing values are one more bin when either
  side has some. For a text column, the bins are its values.
- **KS** is the largest distance between the two empirical distribution functions at the sketch's bucket edges, where
  both are exact: a lower bound of the exact statistic (``scipy.stats.ks_2samp``), which is at most ``ks_max_error``
  larger (the largest share of rows either side has in one bucket next to the distance at its edges). Numeric only.

Never imports Airflow.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa

from airflow_batch_scoring.metrics.sketch import DEFAULT_ALPHA, LogSketch
from airflow_batch_scoring.metrics.values import MISSING, group_keys

PSI_BINS = 10
PSI_FLOOR = 1e-4
MAX_CATEGORIES = 1000
OTHER = "(other)"


@dataclass
class ColumnProfile:
    """One column's distribution: a sketch (numeric) or counts per value (text, booleans)."""

    sketch: LogSketch | None = None
    counts: dict[str, int] | None = None

    @classmethod
    def for_type(cls, arrow_type: pa.DataType, alpha: float = DEFAULT_ALPHA) -> ColumnProfile:
        numeric = pa.types.is_integer(arrow_type) or pa.types.is_floating(arrow_type) or pa.types.is_decimal(arrow_type)
        return cls(sketch=LogSketch(alpha)) if numeric else cls(counts={})

    @property
    def numeric(self) -> bool:
        return self.sketch is not None

    def add(self, column: pa.Array | pa.ChunkedArray) -> None:
        if self.sketch is not None:
            values = column.cast(pa.float64()).to_numpy(zero_copy_only=False)
            self.sketch.add(np.asarray(values, dtype=np.float64))
            return
        assert self.counts is not None
        unique, counts = np.unique(group_keys(column), return_counts=True)
        for key, count in zip(unique.tolist(), counts.tolist(), strict=True):
            self._count(key, count)

    def _count(self, key: str, count: int) -> None:
        assert self.counts is not None
        if key not in self.counts and len(self.counts) >= MAX_CATEGORIES:
            key = OTHER
        self.counts[key] = self.counts.get(key, 0) + count

    def merge(self, other: ColumnProfile) -> ColumnProfile:
        if self.sketch is not None and other.sketch is not None:
            self.sketch.merge(other.sketch)
        elif self.counts is not None and other.counts is not None:
            for key, count in other.counts.items():
                self._count(key, count)
        else:
            raise ValueError("Cannot merge a numeric and a text profile of one column.")
        return self

    def to_dict(self) -> dict[str, Any]:
        if self.sketch is not None:
            return {"kind": "numeric", "sketch": self.sketch.to_dict()}
        return {"kind": "categorical", "counts": self.counts}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ColumnProfile:
        if data["kind"] == "numeric":
            return cls(sketch=LogSketch.from_dict(data["sketch"]))
        return cls(counts={str(k): int(v) for k, v in data["counts"].items()})


@dataclass
class Profile:
    """The distributions of several columns (the model's features, its predictions) over one shard, by name."""

    columns: dict[str, ColumnProfile] = field(default_factory=dict)

    def add(self, name: str, column: pa.Array | pa.ChunkedArray) -> None:
        if name not in self.columns:
            self.columns[name] = ColumnProfile.for_type(column.type)
        self.columns[name].add(column)

    def merge(self, other: Profile) -> Profile:
        for name, column in other.columns.items():
            if name in self.columns:
                self.columns[name].merge(column)
            else:
                self.columns[name] = ColumnProfile.from_dict(column.to_dict())
        return self

    def to_dict(self) -> dict[str, Any]:
        return {name: column.to_dict() for name, column in self.columns.items()}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Profile:
        return cls({name: ColumnProfile.from_dict(value) for name, value in data.items()})


def _psi(current: np.ndarray, baseline: np.ndarray) -> float:
    c = np.maximum(current / current.sum(), PSI_FLOOR)
    b = np.maximum(baseline / baseline.sum(), PSI_FLOOR)
    return float(np.sum((c - b) * np.log(c / b)))


def psi_edges(baseline: LogSketch) -> list[float]:
    """The PSI bins' upper edges: the baseline's deciles, rounded up to their buckets' edges (the last bin is open)."""
    buckets = baseline.buckets()
    total = sum(count for _, count in buckets)
    edges: list[float] = []
    seen, decile = 0, 1
    for edge, count in buckets[:-1]:  # the last bucket closes the last bin
        seen += count
        passed = False
        while decile < PSI_BINS and seen >= total * decile / PSI_BINS:
            decile += 1
            passed = True
        if passed:  # one edge, even where one bucket holds several deciles
            edges.append(edge)
    return edges


def _binned(sketch: LogSketch, edges: list[float]) -> np.ndarray:
    """The sketch's rows per bin (bin ``j``: values ``<= edges[j]`` and above the edge before; the last, the rest),
    and its missing values last."""
    counts = np.zeros(len(edges) + 2, dtype=np.float64)
    for edge, count in sketch.buckets():
        counts[int(np.searchsorted(edges, edge, side="left"))] += count
    counts[-1] = sketch.nan
    return counts


def numeric_drift(current: LogSketch, baseline: LogSketch) -> dict[str, Any]:
    """PSI and KS (with its bound) of one numeric column."""
    if current.count == 0 or baseline.count == 0:
        return {"psi": None, "ks": None, "ks_max_error": None, "rows": current.count, "baseline_rows": baseline.count}
    edges = psi_edges(baseline)
    cur, base = _binned(current, edges), _binned(baseline, edges)
    if cur[-1] == 0 and base[-1] == 0:
        cur, base = cur[:-1], base[:-1]
    # KS at every bucket edge either side has, where both distribution functions are exact. Inside a bucket the
    # distance may exceed the edges' by the larger share one side has in it, unless the bucket holds one value on
    # each side that has rows there, the same one (a point: the distance only jumps there).
    a = {slot: (edge, count) for edge, count, slot in current.slots()}
    b = {slot: (edge, count) for edge, count, slot in baseline.slots()}
    grid = sorted({slot: edge for slot, (edge, _) in {**a, **b}.items()}.items(), key=lambda item: item[1])
    na, nb = current.count, baseline.count
    fa = fb = 0.0
    previous = 0.0
    ks = upper = 0.0
    for slot, _ in grid:
        ma, mb = a.get(slot, (0, 0))[1] / na, b.get(slot, (0, 0))[1] / nb
        fa += ma
        fb += mb
        distance = abs(fa - fb)
        ks = max(ks, distance)
        points = {current.point(slot) if ma else "none", baseline.point(slot) if mb else "none"} - {"none"}
        if len(points) == 1 and None not in points:
            upper = max(upper, distance)
        else:
            upper = max(upper, min(previous, distance) + max(ma, mb))
        previous = distance
    return {
        "psi": _psi(cur, base),
        "psi_edges": edges,
        "ks": ks,
        "ks_max_error": max(upper - ks, 0.0),
        "rows": na,
        "baseline_rows": nb,
        "missing": current.nan,
        "baseline_missing": baseline.nan,
    }


def categorical_drift(current: Mapping[str, int], baseline: Mapping[str, int]) -> dict[str, Any]:
    """PSI over the values of a text (or boolean) column."""
    keys = sorted(set(current) | set(baseline))
    cur = np.array([current.get(k, 0) for k in keys], dtype=np.float64)
    base = np.array([baseline.get(k, 0) for k in keys], dtype=np.float64)
    if not cur.sum() or not base.sum():
        return {"psi": None, "ks": None, "rows": int(cur.sum()), "baseline_rows": int(base.sum())}
    return {"psi": _psi(cur, base), "ks": None, "rows": int(cur.sum()), "baseline_rows": int(base.sum()),
            "values": len(keys), "missing": int(current.get(MISSING, 0))}


def drift(current: Profile, baseline: Profile, outputs: Collection[str] = ()) -> dict[str, Any]:
    """PSI and KS of every column both profiles hold, with the largest of each over the features (the columns not
    in ``outputs``, the model's output columns)."""
    columns: dict[str, Any] = {}
    for name in sorted(set(current.columns) & set(baseline.columns)):
        mine, theirs = current.columns[name], baseline.columns[name]
        if mine.sketch is not None and theirs.sketch is not None:
            columns[name] = numeric_drift(mine.sketch, theirs.sketch)
        elif mine.counts is not None and theirs.counts is not None:
            columns[name] = categorical_drift(mine.counts, theirs.counts)
    features = [c for name, c in columns.items() if name not in outputs]
    psis = [c["psi"] for c in features if c.get("psi") is not None and math.isfinite(c["psi"])]
    kss = [c["ks"] for c in features if c.get("ks") is not None]
    return {"columns": columns, "max_psi": max(psis) if psis else None, "max_ks": max(kss) if kss else None}
