"""Regression: one shard's sufficient statistics (:class:`RegressionStats`, mergeable) and the metrics computed from
the merged ones (:func:`regression_metrics`).

RMSE, MAE and R² are exact (sums, and the labels' mean and sum of squared deviations merged by Chan's formula, so
that R² keeps its precision when the labels' mean is large); the residual quantiles come from a
:class:`~airflow_batch_scoring.metrics.sketch.LogSketch`, within its relative accuracy ``alpha`` of the exact
``numpy.quantile(residuals, q, method="lower")``.

Never imports Airflow.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from airflow_batch_scoring.metrics.sketch import DEFAULT_ALPHA, LogSketch

#: the residual quantiles reported.
QUANTILES = (0.01, 0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95, 0.99)


@dataclass
class RegressionStats:
    """Sums over the rows of a shard: residuals ``e = y - prediction``."""

    rows: int = 0
    sum_error: float = 0.0
    sum_squared_error: float = 0.0
    sum_absolute_error: float = 0.0
    label_mean: float = 0.0
    label_m2: float = 0.0
    residuals: LogSketch = field(default_factory=lambda: LogSketch(DEFAULT_ALPHA))

    def add(self, labels: np.ndarray, predictions: np.ndarray) -> None:
        n = len(labels)
        if n == 0:
            return
        errors = labels - predictions
        self.sum_error += float(errors.sum())
        self.sum_squared_error += float(np.dot(errors, errors))
        self.sum_absolute_error += float(np.abs(errors).sum())
        mean = float(labels.mean())
        m2 = float(np.sum((labels - mean) ** 2))
        self._merge_moments(n, mean, m2)
        self.residuals.add(errors)

    def _merge_moments(self, n: int, mean: float, m2: float) -> None:
        total = self.rows + n
        delta = mean - self.label_mean
        self.label_m2 += m2 + delta * delta * self.rows * n / total
        self.label_mean += delta * n / total
        self.rows = total

    def merge(self, other: RegressionStats) -> RegressionStats:
        if other.rows == 0:
            return self
        self.sum_error += other.sum_error
        self.sum_squared_error += other.sum_squared_error
        self.sum_absolute_error += other.sum_absolute_error
        self._merge_moments(other.rows, other.label_mean, other.label_m2)
        self.residuals.merge(other.residuals)
        return self

    def to_dict(self) -> dict[str, Any]:
        return {
            "rows": self.rows, "sum_error": self.sum_error, "sum_squared_error": self.sum_squared_error,
            "sum_absolute_error": self.sum_absolute_error, "label_mean": self.label_mean, "label_m2": self.label_m2,
            "residuals": self.residuals.to_dict(),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RegressionStats:
        return cls(
            rows=int(data["rows"]), sum_error=float(data["sum_error"]),
            sum_squared_error=float(data["sum_squared_error"]), sum_absolute_error=float(data["sum_absolute_error"]),
            label_mean=float(data["label_mean"]), label_m2=float(data["label_m2"]),
            residuals=LogSketch.from_dict(data["residuals"]),
        )


def regression_metrics(stats: RegressionStats) -> dict[str, Any]:
    """RMSE, MAE, R² (scikit-learn's: 1 when the labels are constant and predicted exactly, 0 when constant and
    not), the mean error and the residual quantiles, with the quantiles' relative accuracy."""
    n = stats.rows
    if n == 0:
        return {"rows": 0}
    sse = stats.sum_squared_error
    if stats.label_m2 > 0:
        r2: float = 1 - sse / stats.label_m2
    else:
        r2 = 1.0 if sse == 0 else 0.0
    return {
        "rows": n,
        "rmse": float(np.sqrt(sse / n)),
        "mse": sse / n,
        "mae": stats.sum_absolute_error / n,
        "r2": r2,
        "mean_error": stats.sum_error / n,
        "residual_quantiles": {str(q): stats.residuals.quantile(q) for q in QUANTILES},
        "residual_quantiles_relative_error": stats.residuals.alpha,
    }
