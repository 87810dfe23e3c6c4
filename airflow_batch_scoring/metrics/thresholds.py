"""Thresholds a metrics run must meet (``thresholds={"roc_auc": 0.8, "max_psi": 0.2}``): a gate for a promotion.

A number is a lower bound for a score (``accuracy``, ``roc_auc``, ``r2``, ``min_disparate_impact_ratio``, ...) and an
upper bound for a loss or a gap (``log_loss``, ``rmse``, ``max_psi``, ...); ``{"min": x}`` or ``{"max": x}`` says it
explicitly. A run that misses one fails with :class:`ThresholdError`, which is not retried.

Never imports Airflow.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from airflow_batch_scoring.errors import BatchScoringError, ConfigurationError

#: metrics that must be at least the threshold.
AT_LEAST = (
    "accuracy", "precision_macro", "recall_macro", "f1_macro", "precision_weighted", "recall_weighted",
    "f1_weighted", "roc_auc", "average_precision", "r2", "min_disparate_impact_ratio",
)
#: metrics that must be at most the threshold.
AT_MOST = (
    "log_loss", "brier_score", "rmse", "mse", "mae", "max_psi", "max_ks", "prediction_psi", "prediction_ks",
    "max_demographic_parity_difference", "max_equal_opportunity_difference", "max_equalized_odds_difference",
)


#: the metrics only a classification computes, only a regression, only with protected attributes, only a baseline.
CLASSIFICATION_ONLY = {
    "accuracy", "precision_macro", "recall_macro", "f1_macro", "precision_weighted", "recall_weighted",
    "f1_weighted", "roc_auc", "average_precision", "log_loss", "brier_score",
}
REGRESSION_ONLY = {"rmse", "mse", "mae", "r2"}
FAIRNESS = {
    "min_disparate_impact_ratio", "max_demographic_parity_difference", "max_equal_opportunity_difference",
    "max_equalized_odds_difference",
}
DRIFT = {"max_psi", "max_ks", "prediction_psi", "prediction_ks"}


class ThresholdError(BatchScoringError):
    """A metric missed its threshold (not retried: a retry computes the same metrics)."""


@dataclass(frozen=True)
class Threshold:
    metric: str
    bound: float
    at_least: bool

    def describe(self) -> str:
        return f"{self.metric} {'>=' if self.at_least else '<='} {self.bound:g}"


def parse_thresholds(thresholds: Mapping[str, Any] | None) -> list[Threshold]:
    """The thresholds from the user's mapping.

    :raises ConfigurationError: for an unknown metric or a bound that is not a number.
    """
    parsed = []
    for metric, value in (thresholds or {}).items():
        if metric not in AT_LEAST and metric not in AT_MOST:
            raise ConfigurationError(
                f"thresholds: unknown metric {metric!r}; the metrics a threshold can name are "
                f"{', '.join(AT_LEAST + AT_MOST)}."
            )
        at_least = metric in AT_LEAST
        if isinstance(value, Mapping):
            if set(value) not in ({"min"}, {"max"}):
                raise ConfigurationError(f"thresholds[{metric!r}] must be a number, {{'min': x}} or {{'max': x}}.")
            at_least = "min" in value
            value = value["min"] if at_least else value["max"]
        try:
            bound = float(value)
        except (TypeError, ValueError):
            raise ConfigurationError(f"thresholds[{metric!r}] must be a number, got {value!r}.") from None
        if not math.isfinite(bound):
            raise ConfigurationError(f"thresholds[{metric!r}] must be a finite number, got {value!r}.")
        parsed.append(Threshold(metric, bound, at_least))
    return parsed


def check_applicable(thresholds: list[Threshold], *, task: str, fairness: bool, drift: bool) -> None:
    """Refuse, before anything runs, a threshold on a metric this run cannot compute.

    :raises ConfigurationError: naming the metric and why.
    """
    for threshold in thresholds:
        metric = threshold.metric
        why = (
            f"a {task} does not compute it" if (task == "regression" and metric in CLASSIFICATION_ONLY)
            or (task == "classification" and metric in REGRESSION_ONLY)
            else "it needs protected_attributes" if metric in FAIRNESS and not fairness
            else "it needs a baseline" if metric in DRIFT and not drift
            else None
        )
        if why:
            raise ConfigurationError(f"thresholds: {metric!r} cannot be checked: {why}.")


def check_thresholds(thresholds: list[Threshold], summary: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Each threshold's outcome (``metric``, ``threshold``, ``value``, ``passed``), for metrics.json."""
    outcomes = []
    for threshold in thresholds:
        value = summary.get(threshold.metric)
        passed = value is not None and (value >= threshold.bound if threshold.at_least else value <= threshold.bound)
        outcomes.append({"metric": threshold.metric, "threshold": threshold.describe(), "value": value,
                         "passed": bool(passed)})
    return outcomes


def failed_message(outcomes: list[dict[str, Any]], where: str) -> str | None:
    """The message of a run that missed thresholds (``None`` when every one passed)."""
    missed = [o for o in outcomes if not o["passed"]]
    if not missed:
        return None
    parts = [
        f"{o['metric']} = {o['value']:.6g} (needs {o['threshold']})" if o["value"] is not None
        else f"{o['metric']} was not computed (needs {o['threshold']}: check the task, probabilities, "
        "protected_attributes and baseline)"
        for o in missed
    ]
    return f"The model missed {len(missed)} threshold(s): {'; '.join(parts)}. The metrics are in {where}."
