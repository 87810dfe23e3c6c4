"""The metrics document: every metric computed from the merged statistics, with a flat summary of the scalar ones
(what thresholds name, what XCom and MLflow get).

Never imports Airflow.
"""

from __future__ import annotations

from typing import Any

from airflow_batch_scoring.errors import ConfigurationError
from airflow_batch_scoring.flavors.base import PREDICTION, PROBABILITY_PREFIX
from airflow_batch_scoring.metrics.classification import classification_metrics
from airflow_batch_scoring.metrics.drift import Profile, drift
from airflow_batch_scoring.metrics.fairness import fairness_metrics
from airflow_batch_scoring.metrics.regression import regression_metrics
from airflow_batch_scoring.metrics.shard import ShardStats
from airflow_batch_scoring.metrics.values import key_of, sort_classes

#: the scalar classification and regression metrics the summary carries.
SCALARS = (
    "accuracy", "precision_macro", "recall_macro", "f1_macro", "precision_weighted", "recall_weighted",
    "f1_weighted", "roc_auc", "average_precision", "log_loss", "brier_score", "rmse", "mse", "mae", "r2",
)
#: the worst gap over the protected attributes that the summary carries (``max_<name>``, ``min_<name>``).
FAIRNESS_SCALARS = {
    "demographic_parity_difference": max, "equal_opportunity_difference": max, "equalized_odds_difference": max,
    "disparate_impact_ratio": min,
}


def positive_class(stats: ShardStats, positive_label: Any) -> str | None:
    """The positive class's key: the one given, else the larger of two classes (scikit-learn's ``pos_label=1`` for
    0/1 labels), else ``None`` (multiclass).

    :raises ConfigurationError: when the given one is none of the classes.
    """
    assert stats.classification is not None
    known = sort_classes({k for pair in stats.classification.confusion for k in pair}
                         | set(stats.classification.classes or ()))
    if positive_label is not None:
        key = key_of(positive_label)
        if key not in known:
            raise ConfigurationError(
                f"positive_label={positive_label!r} is none of the classes found ({', '.join(known[:20])}); "
                "give one of them."
            )
        return key
    if len(known) == 2:
        return known[1]
    return None


def compute_metrics(
    stats: ShardStats, *, positive_label: Any = None, baseline: Profile | None = None
) -> dict[str, Any]:
    """The metrics document from the merged statistics (and the baseline's profile, for drift)."""
    config = stats.config
    document: dict[str, Any] = {
        "task": config.task,
        "label_column": config.label_column,
        "rows": stats.rows,
        "rows_without_label": stats.rows_without_label,
    }
    summary: dict[str, Any] = {}
    positive: str | None = None
    if stats.classification is not None:
        positive = positive_class(stats, positive_label)
        document["classification"] = classification_metrics(stats.classification, positive)
        summary.update({k: document["classification"].get(k) for k in SCALARS if k in document["classification"]})
    if stats.regression is not None:
        document["regression"] = regression_metrics(stats.regression)
        summary.update({k: document["regression"].get(k) for k in SCALARS if k in document["regression"]})
    if config.protected_attributes:
        if positive is None:
            raise ConfigurationError(
                "Fairness metrics compare how often each group is predicted the positive class: with more than two "
                "classes, give positive_label= (a class) or leave protected_attributes out."
            )
        fairness = fairness_metrics(stats.groups, positive)
        document["fairness"] = {"positive_label": positive, "attributes": fairness}
        for name, pick in FAIRNESS_SCALARS.items():
            values = [a[name] for a in fairness.values() if a[name] is not None]
            summary[f"{'max' if pick is max else 'min'}_{name}"] = pick(values) if values else None
    if baseline is not None:
        outputs = [n for n in stats.profile.columns if n == PREDICTION or n.startswith(PROBABILITY_PREFIX)]
        found = drift(stats.profile, baseline, outputs)
        found["prediction_column"] = _prediction_column(stats.profile, positive)
        document["drift"] = found
        summary["max_psi"], summary["max_ks"] = found["max_psi"], found["max_ks"]
        prediction = found["columns"].get(found["prediction_column"]) or {}
        summary["prediction_psi"], summary["prediction_ks"] = prediction.get("psi"), prediction.get("ks")
    document["summary"] = summary
    return document


def _prediction_column(profile: Profile, positive: str | None) -> str:
    """The column whose drift is the prediction's: the positive class's probability when there is one."""
    name = f"{PROBABILITY_PREFIX}{positive}"
    return name if positive is not None and name in profile.columns else PREDICTION
