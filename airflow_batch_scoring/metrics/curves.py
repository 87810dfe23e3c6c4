"""ROC and precision-recall curves from binned scores, with the error bound of the binning.

A :class:`ScoreHistogram` counts, for one class, the positives (rows of that class) and the negatives in ``bins``
equal bins of its predicted probability (``[k / bins, (k + 1) / bins)``, the last one closed). Every point of the
curves at a bin edge is exact; only the order of a positive and a negative in the same bin is unknown, so:

- **ROC AUC** is computed as if the rows of a bin were tied (the trapezoid, as scikit-learn treats ties); the exact
  AUC differs by at most ``sum_b pos_b * neg_b / (2 * P * N)`` over the bins holding more than one distinct score
  (each bin keeps its lowest and highest score: a bin of one score is a true tie, exact), reported as
  ``roc_auc_max_error``;
- **average precision** is computed with each bin as one threshold (scikit-learn's step sum on the binned scores);
  the exact value lies between the sums with each bin's positives ranked last and first, and the larger distance to
  them is reported as ``average_precision_max_error``.

Memory is ``2 * bins`` counts per class at most (only non-empty bins are kept), whatever the number of rows.

Never imports Airflow.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from airflow_batch_scoring.metrics.packing import pack_counts, unpack_counts

#: the default number of probability bins (a bound of 2**-16 on each score's position).
DEFAULT_SCORE_BINS = 65536
#: the most points a curve keeps in metrics.json (every kept point is exact).
MAX_CURVE_POINTS = 400


@dataclass
class ScoreHistogram:
    """Positives and negatives of one class per probability bin."""

    bins: int = DEFAULT_SCORE_BINS
    positive: dict[int, int] = field(default_factory=dict)
    negative: dict[int, int] = field(default_factory=dict)
    #: the bins whose rows do not all have one score
    mixed: set[int] = field(default_factory=set)
    #: the one score of every other bin
    single: dict[int, float] = field(default_factory=dict)

    def add(self, scores: np.ndarray, is_positive: np.ndarray) -> None:
        """Count rows with probability ``scores`` of the class, ``is_positive`` telling which are of the class."""
        scores = np.asarray(scores, dtype=np.float64)
        keys = np.clip(np.floor(scores * self.bins), 0, self.bins - 1).astype(np.int64)
        if keys.size:
            order = np.argsort(keys, kind="stable")
            unique, starts = np.unique(keys[order], return_index=True)
            low = np.minimum.reduceat(scores[order], starts)
            high = np.maximum.reduceat(scores[order], starts)
            for key, lo, hi in zip(unique.tolist(), low.tolist(), high.tolist(), strict=True):
                self._note(key, lo, hi)
        for target, chosen in ((self.positive, keys[is_positive]), (self.negative, keys[~is_positive])):
            if chosen.size:
                unique, counts = np.unique(chosen, return_counts=True)
                for key, count in zip(unique.tolist(), counts.tolist(), strict=True):
                    target[key] = target.get(key, 0) + count

    def _note(self, key: int, low: float, high: float) -> None:
        if key in self.mixed:
            return
        if low != high or self.single.get(key, low) != low:
            self.mixed.add(key)
            self.single.pop(key, None)
        else:
            self.single[key] = low

    def merge(self, other: ScoreHistogram) -> ScoreHistogram:
        if self.bins != other.bins:
            raise ValueError(f"Cannot merge score histograms of {self.bins} and {other.bins} bins.")
        for key in other.mixed:
            self.mixed.add(key)
            self.single.pop(key, None)
        for key, value in other.single.items():
            self._note(key, value, value)
        for target, source in ((self.positive, other.positive), (self.negative, other.negative)):
            for key, count in source.items():
                target[key] = target.get(key, 0) + count
        return self

    def arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """The non-empty bins in decreasing order of score: ``(bin lower edges, positives, negatives, whether the
        bin holds several distinct scores)``."""
        keys = np.array(sorted(set(self.positive) | set(self.negative), reverse=True), dtype=np.int64)
        pos = np.array([self.positive.get(k, 0) for k in keys.tolist()], dtype=np.float64)
        neg = np.array([self.negative.get(k, 0) for k in keys.tolist()], dtype=np.float64)
        mixed = np.array([k in self.mixed for k in keys.tolist()], dtype=bool)
        return keys / self.bins, pos, neg, mixed

    def to_dict(self) -> dict[str, Any]:
        return {"bins": self.bins, "positive": pack_counts(self.positive), "negative": pack_counts(self.negative),
                "mixed": pack_counts(dict.fromkeys(self.mixed, 1)), "single": pack_counts(self.single)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ScoreHistogram:
        return cls(
            bins=int(data["bins"]),
            positive={k: int(v) for k, v in unpack_counts(data["positive"]).items()},
            negative={k: int(v) for k, v in unpack_counts(data["negative"]).items()},
            mixed=set(unpack_counts(data["mixed"])),
            single={k: float(v) for k, v in unpack_counts(data["single"]).items()},
        )


def _thin(points: list[list[float]]) -> list[list[float]]:
    """At most :data:`MAX_CURVE_POINTS` of a curve's points, evenly chosen, the first and the last kept."""
    if len(points) <= MAX_CURVE_POINTS:
        return points
    picks = np.unique(np.linspace(0, len(points) - 1, MAX_CURVE_POINTS).round().astype(int))
    return [points[i] for i in picks.tolist()]


def _harmonic_sum(a: np.ndarray, b: np.ndarray, p: np.ndarray) -> np.ndarray:
    """``sum_{i=1..p} (a + i) / (b + i)`` element-wise, in closed form (digamma), for ``b >= a >= 0``."""
    from scipy.special import digamma  # type: ignore[import-untyped]

    return p + (a - b) * (digamma(b + p + 1) - digamma(b + 1))


def binary_curves(hist: ScoreHistogram) -> dict[str, Any] | None:
    """ROC AUC and average precision of one class with their error bounds, and the two curves (thresholds at bin
    edges); ``None`` when the class has no positives or no negatives."""
    edges, pos, neg, mixed = hist.arrays()
    total_pos, total_neg = pos.sum(), neg.sum()
    if total_pos == 0 or total_neg == 0:
        return None
    tp, fp = np.cumsum(pos), np.cumsum(neg)
    tp_before, fp_before = tp - pos, fp - neg
    auc = float(np.sum(neg * (tp_before + pos / 2)) / (total_pos * total_neg))
    auc_error = float(np.sum((pos * neg)[mixed]) / (2 * total_pos * total_neg))
    nonzero = pos > 0
    ap = float(np.sum(pos[nonzero] * tp[nonzero] / (tp[nonzero] + fp[nonzero])) / total_pos)
    # each bin's positives ranked first (upper bound) and last (lower bound) among the bin's rows
    best = _harmonic_sum(tp_before[nonzero], tp_before[nonzero] + fp_before[nonzero], pos[nonzero])
    worst = _harmonic_sum(tp_before[nonzero], tp_before[nonzero] + fp_before[nonzero] + neg[nonzero], pos[nonzero])
    tied = pos[nonzero] * tp[nonzero] / (tp[nonzero] + fp[nonzero])  # a bin of one score: exact as a tie
    exact = ~mixed[nonzero]
    best[exact], worst[exact] = tied[exact], tied[exact]
    ap_high, ap_low = float(best.sum() / total_pos), float(worst.sum() / total_pos)
    roc = [[0.0, 0.0, 1.0]] + [
        [float(f / total_neg), float(t / total_pos), float(e)] for f, t, e in zip(fp, tp, edges, strict=True)
    ]
    precision = tp / (tp + fp)
    pr = [[float(r / total_pos), float(p), float(e)] for r, p, e in zip(tp, precision, edges, strict=True)]
    return {
        "roc_auc": auc,
        "roc_auc_max_error": auc_error,
        "average_precision": ap,
        "average_precision_max_error": max(ap_high - ap, ap - ap_low, 0.0),
        "roc_curve": {"columns": ["fpr", "tpr", "threshold"], "points": _thin(roc)},
        "pr_curve": {"columns": ["recall", "precision", "threshold"], "points": _thin(pr)},
        "positives": int(total_pos),
        "negatives": int(total_neg),
    }
