"""What a metrics job computes, as the job document carries it to every replica (``ScoringJob.metrics``).

Never imports Airflow.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from airflow_batch_scoring.coercion import to_columns
from airflow_batch_scoring.errors import ConfigurationError
from airflow_batch_scoring.metrics.curves import DEFAULT_SCORE_BINS
from airflow_batch_scoring.metrics.sketch import DEFAULT_ALPHA

TASKS = ("classification", "regression")


@dataclass(frozen=True)
class MetricsConfig:
    """The statistics each replica gathers over its shard.

    :param label_column: the column of true labels (``None``: a baseline, whose distributions only are profiled).
    :param task: ``"classification"`` or ``"regression"``.
    :param protected_attributes: columns whose groups the fairness metrics compare.
    :param profile: profile the distributions of the model's features and outputs (for drift).
    :param score_bins: bins of a class probability for the ROC and PR curves.
    :param alpha: the relative accuracy of the quantile sketches (residuals, drift).
    """

    label_column: str | None
    task: str
    protected_attributes: tuple[str, ...] = ()
    profile: bool = True
    score_bins: int = DEFAULT_SCORE_BINS
    alpha: float = DEFAULT_ALPHA

    def __post_init__(self) -> None:
        if self.task not in TASKS:
            raise ConfigurationError(f"task must be one of {TASKS}, got {self.task!r}.")
        if not 2 <= self.score_bins <= 1 << 20:
            raise ConfigurationError(f"score_bins must be between 2 and {1 << 20}, got {self.score_bins}.")
        if not 0 < self.alpha < 0.5:
            raise ConfigurationError(f"alpha must be between 0 and 0.5, got {self.alpha}.")

    @classmethod
    def parse(
        cls,
        *,
        label_column: Any,
        task: str,
        protected_attributes: Sequence[str] | str | None = None,
        profile: bool = True,
    ) -> MetricsConfig:
        """The configuration from user-given values.

        :raises ConfigurationError: naming the argument that is wrong.
        """
        if label_column is not None and (not isinstance(label_column, str) or not label_column.strip()):
            raise ConfigurationError(f"label_column must be a column name, got {label_column!r}.")
        protected = tuple(to_columns(protected_attributes, "protected_attributes") or ())
        if label_column is not None and label_column.lower() in {p.lower() for p in protected}:
            raise ConfigurationError(f"The label column {label_column!r} cannot be a protected attribute too.")
        return cls(label_column=label_column, task=str(task), protected_attributes=protected, profile=profile)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["protected_attributes"] = list(self.protected_attributes)
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> MetricsConfig:
        return cls(**{**data, "protected_attributes": tuple(data.get("protected_attributes") or ())})
