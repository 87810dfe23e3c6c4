"""Classification: the sufficient statistics of one shard (:class:`ClassificationStats`, mergeable) and the metrics
computed from the merged ones (:func:`classification_metrics`).

Exact from counts and sums: accuracy, precision, recall and F1 per class and their macro and weighted means, the
confusion matrix, log loss, the Brier score and the calibration curve (scikit-learn's ``strategy="uniform"`` bins).
Binned, with a stated bound: ROC AUC and average precision (:mod:`airflow_batch_scoring.metrics.curves`).

Classes are compared by their key (:func:`airflow_batch_scoring.metrics.values.class_keys`): a label ``1``, ``"1"`` or
``1.0`` and a prediction ``1`` are the same class.

Never imports Airflow.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from airflow_batch_scoring.metrics.curves import DEFAULT_SCORE_BINS, ScoreHistogram, binary_curves
from airflow_batch_scoring.metrics.values import sort_classes

#: the calibration curve's bins (as scikit-learn's ``calibration_curve(n_bins=10, strategy="uniform")``).
CALIBRATION_BINS = 10
#: probabilities are clipped to ``[EPS, 1 - EPS]`` for the log loss, as scikit-learn does for float64.
EPS = float(np.finfo(np.float64).eps)


@dataclass
class ClassStats:
    """What one class's probability column adds up to, over the rows of one shard.

    :param histogram: the class's probability, positives (rows of the class) and negatives per bin.
    :param squared_error: ``sum((p - [y == class]) ** 2)`` (the Brier score's numerator).
    :param calibration: per calibration bin ``[rows, sum of p, rows of the class]``.
    """

    histogram: ScoreHistogram
    squared_error: float = 0.0
    calibration: list[list[float]] = field(default_factory=lambda: [[0, 0.0, 0] for _ in range(CALIBRATION_BINS)])

    def add(self, probability: np.ndarray, is_class: np.ndarray) -> None:
        self.histogram.add(probability, is_class)
        self.squared_error += float(np.sum((probability - is_class) ** 2))
        ids = np.searchsorted(np.linspace(0.0, 1.0, CALIBRATION_BINS + 1)[1:-1], probability)
        rows = np.bincount(ids, minlength=CALIBRATION_BINS)
        sums = np.bincount(ids, weights=probability, minlength=CALIBRATION_BINS)
        hits = np.bincount(ids, weights=is_class.astype(np.float64), minlength=CALIBRATION_BINS)
        for b in range(CALIBRATION_BINS):
            self.calibration[b][0] += int(rows[b])
            self.calibration[b][1] += float(sums[b])
            self.calibration[b][2] += int(hits[b])

    def merge(self, other: ClassStats) -> None:
        self.histogram.merge(other.histogram)
        self.squared_error += other.squared_error
        for mine, theirs in zip(self.calibration, other.calibration, strict=True):
            mine[0] += theirs[0]
            mine[1] += theirs[1]
            mine[2] += theirs[2]

    def to_dict(self) -> dict[str, Any]:
        return {"histogram": self.histogram.to_dict(), "squared_error": self.squared_error,
                "calibration": self.calibration}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ClassStats:
        return cls(ScoreHistogram.from_dict(data["histogram"]), float(data["squared_error"]),
                   [list(b) for b in data["calibration"]])


@dataclass
class ClassificationStats:
    """One shard's classification statistics: the confusion counts, and per probability column its class stats and
    the log loss's sum.

    :param confusion: ``{(label, prediction): rows}`` by class keys.
    :param classes: the model's classes (its probability columns), by key, when it gives probabilities.
    :param log_loss_sum: ``sum(-log(clip(p_label)))`` over the rows whose label is one of ``classes``.
    :param log_loss_rows: those rows.
    """

    bins: int = DEFAULT_SCORE_BINS
    confusion: dict[tuple[str, str], int] = field(default_factory=dict)
    classes: list[str] | None = None
    per_class: dict[str, ClassStats] = field(default_factory=dict)
    log_loss_sum: float = 0.0
    log_loss_rows: int = 0
    rows: int = 0

    def add(self, labels: np.ndarray, predictions: np.ndarray, probabilities: Mapping[str, np.ndarray] | None) -> None:
        """Count one batch: ``labels`` and ``predictions`` as class keys (object arrays of ``str``), and the
        probability of each class (by key) when the model gives them."""
        self.rows += len(labels)
        pairs = np.char.add(np.char.add(labels.astype(str), "\x1f"), predictions.astype(str))
        unique, counts = np.unique(pairs, return_counts=True)
        for pair, count in zip(unique.tolist(), counts.tolist(), strict=True):
            label, _, predicted = pair.partition("\x1f")
            self.confusion[(label, predicted)] = self.confusion.get((label, predicted), 0) + count
        if not probabilities:
            return
        if self.classes is None:
            self.classes = list(probabilities)
        p_label = np.zeros(len(labels), dtype=np.float64)
        known = np.zeros(len(labels), dtype=bool)
        for key in self.classes:
            probability = np.asarray(probabilities[key], dtype=np.float64)
            is_class = labels == key
            stats = self.per_class.setdefault(key, ClassStats(ScoreHistogram(self.bins)))
            stats.add(probability, is_class)
            p_label[is_class] = probability[is_class]
            known |= is_class
        self.log_loss_sum += float(np.sum(-np.log(np.clip(p_label[known], EPS, 1 - EPS))))
        self.log_loss_rows += int(known.sum())

    def merge(self, other: ClassificationStats) -> ClassificationStats:
        self.rows += other.rows
        for pair, count in other.confusion.items():
            self.confusion[pair] = self.confusion.get(pair, 0) + count
        if other.classes is not None:
            if self.classes is None:
                self.classes = list(other.classes)
            for key, stats in other.per_class.items():
                if key in self.per_class:
                    self.per_class[key].merge(stats)
                else:
                    self.per_class[key] = ClassStats.from_dict(stats.to_dict())
        self.log_loss_sum += other.log_loss_sum
        self.log_loss_rows += other.log_loss_rows
        return self

    def to_dict(self) -> dict[str, Any]:
        return {
            "bins": self.bins,
            "rows": self.rows,
            "confusion": [[label, predicted, count] for (label, predicted), count in sorted(self.confusion.items())],
            "classes": self.classes,
            "per_class": {key: stats.to_dict() for key, stats in self.per_class.items()},
            "log_loss_sum": self.log_loss_sum,
            "log_loss_rows": self.log_loss_rows,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ClassificationStats:
        return cls(
            bins=int(data["bins"]),
            rows=int(data["rows"]),
            confusion={(str(a), str(b)): int(c) for a, b, c in data["confusion"]},
            classes=list(data["classes"]) if data.get("classes") is not None else None,
            per_class={key: ClassStats.from_dict(value) for key, value in data["per_class"].items()},
            log_loss_sum=float(data["log_loss_sum"]),
            log_loss_rows=int(data["log_loss_rows"]),
        )


def confusion_matrix(confusion: Mapping[tuple[str, str], int], classes: Sequence[str]) -> np.ndarray:
    """The confusion matrix (rows: labels, columns: predictions) over ``classes``, as scikit-learn orders it."""
    index = {key: i for i, key in enumerate(classes)}
    matrix = np.zeros((len(classes), len(classes)), dtype=np.int64)
    for (label, predicted), count in confusion.items():
        matrix[index[label], index[predicted]] += count
    return matrix


def _divide(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    """``numerator / denominator``, 0 where the denominator is 0 (scikit-learn's ``zero_division=0``)."""
    out = np.zeros_like(numerator, dtype=np.float64)
    np.divide(numerator, denominator, out=out, where=denominator != 0)
    return out


def classification_metrics(stats: ClassificationStats, positive_label: str | None) -> dict[str, Any]:
    """Every classification metric from merged statistics.

    :param positive_label: the positive class (key) of a binary problem: the ROC and PR curves, the calibration
        curve and the Brier score are that class's; ``None`` for the multiclass one-vs-rest means only.
    """
    classes = sort_classes({key for pair in stats.confusion for key in pair} | set(stats.classes or ()))
    matrix = confusion_matrix(stats.confusion, classes)
    tp = np.diag(matrix).astype(np.float64)
    support = matrix.sum(axis=1).astype(np.float64)
    predicted = matrix.sum(axis=0).astype(np.float64)
    precision = _divide(tp, predicted)
    recall = _divide(tp, support)
    f1 = _divide(2 * tp, support + predicted)
    total = float(matrix.sum())
    weights = support / total if total else support
    present = (support + predicted) > 0  # scikit-learn's macro mean runs over the labels present in either
    result: dict[str, Any] = {
        "rows": int(total),
        "classes": classes,
        "accuracy": float(tp.sum() / total) if total else None,
        "confusion_matrix": {"labels": classes, "matrix": matrix.tolist()},
        "per_class": {
            key: {"precision": float(precision[i]), "recall": float(recall[i]), "f1": float(f1[i]),
                  "support": int(support[i])}
            for i, key in enumerate(classes)
        },
        "precision_macro": float(precision[present].mean()) if present.any() else None,
        "recall_macro": float(recall[present].mean()) if present.any() else None,
        "f1_macro": float(f1[present].mean()) if present.any() else None,
        "precision_weighted": float(np.sum(precision * weights)),
        "recall_weighted": float(np.sum(recall * weights)),
        "f1_weighted": float(np.sum(f1 * weights)),
    }
    if stats.classes is None:
        return result
    result["log_loss"] = stats.log_loss_sum / stats.log_loss_rows if stats.log_loss_rows else None
    result["log_loss_rows"] = stats.log_loss_rows
    curves = {key: binary_curves(stats.per_class[key].histogram) for key in stats.classes if key in stats.per_class}
    if positive_label is not None and len(stats.classes) == 2 and positive_label in stats.per_class:
        chosen = stats.per_class[positive_label]
        binary = curves[positive_label]
        rows = sum(b[0] for b in chosen.calibration)
        result["positive_label"] = positive_label
        result["brier_score"] = chosen.squared_error / rows if rows else None
        result["calibration"] = {
            "bins": CALIBRATION_BINS,
            "columns": ["mean_predicted", "fraction_positive", "rows"],
            "points": [[b[1] / b[0], b[2] / b[0], int(b[0])] for b in chosen.calibration if b[0]],
        }
        if binary is not None:
            result.update(binary)
    else:
        scored = [c for c in curves.values() if c is not None]
        if scored and len(scored) == len(curves):
            result["roc_auc"] = float(np.mean([c["roc_auc"] for c in scored]))  # one-vs-rest, macro
            result["roc_auc_max_error"] = float(np.mean([c["roc_auc_max_error"] for c in scored]))
            result["roc_auc_per_class"] = {k: c["roc_auc"] for k, c in curves.items() if c is not None}
    return result
