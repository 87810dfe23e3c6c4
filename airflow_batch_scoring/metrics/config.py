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
#: the permutation importance's default sample (rows) and repeats.
DEFAULT_IMPORTANCE_SAMPLE = 2000
DEFAULT_IMPORTANCE_REPEATS = 5
#: the largest sample the importance takes (the driver holds it, the model scores it ``1 + features * repeats`` times).
MAX_IMPORTANCE_SAMPLE = 200_000


@dataclass(frozen=True)
class MetricsConfig:
    """The statistics each replica gathers over its shard.

    :param label_column: the column of true labels (``None``: a baseline, whose distributions only are profiled).
    :param task: ``"classification"`` or ``"regression"``.
    :param protected_attributes: columns whose groups the fairness metrics compare.
    :param profile: profile the distributions of the model's features and outputs (for drift).
    :param score_bins: bins of a class probability for the ROC and PR curves.
    :param alpha: the relative accuracy of the quantile sketches (residuals, drift).
    :param importance_sample: the labeled rows each replica samples (uniformly) for the permutation importance, and
        the merged sample's size; ``0``: no importance.
    :param importance_repeats: the permutations of each feature.
    :param importance_seed: seeds the sample and the permutations (a run is repeatable).
    """

    label_column: str | None
    task: str
    protected_attributes: tuple[str, ...] = ()
    profile: bool = True
    score_bins: int = DEFAULT_SCORE_BINS
    alpha: float = DEFAULT_ALPHA
    importance_sample: int = 0
    importance_repeats: int = DEFAULT_IMPORTANCE_REPEATS
    importance_seed: int = 0

    def __post_init__(self) -> None:
        if self.task not in TASKS:
            raise ConfigurationError(f"task must be one of {TASKS}, got {self.task!r}.")
        if not 2 <= self.score_bins <= 1 << 20:
            raise ConfigurationError(f"score_bins must be between 2 and {1 << 20}, got {self.score_bins}.")
        if not 0 < self.alpha < 0.5:
            raise ConfigurationError(f"alpha must be between 0 and 0.5, got {self.alpha}.")
        if (not isinstance(self.importance_sample, int) or isinstance(self.importance_sample, bool)
                or not 0 <= self.importance_sample <= MAX_IMPORTANCE_SAMPLE):
            raise ConfigurationError(
                f"importance_sample must be a number of rows between 0 (no permutation importance) and "
                f"{MAX_IMPORTANCE_SAMPLE:,}, got {self.importance_sample!r}."
            )
        if (not isinstance(self.importance_repeats, int) or isinstance(self.importance_repeats, bool)
                or not 1 <= self.importance_repeats <= 100):
            raise ConfigurationError(
                f"importance_repeats must be a whole number between 1 and 100, got {self.importance_repeats!r}."
            )
        if not isinstance(self.importance_seed, int) or isinstance(self.importance_seed, bool) \
                or self.importance_seed < 0:
            raise ConfigurationError(f"importance_seed must be a whole number >= 0, got {self.importance_seed!r}.")

    @classmethod
    def parse(
        cls,
        *,
        label_column: Any,
        task: str,
        protected_attributes: Sequence[str] | str | None = None,
        profile: bool = True,
        importance_sample: Any = 0,
        importance_repeats: Any = DEFAULT_IMPORTANCE_REPEATS,
        importance_seed: Any = 0,
    ) -> MetricsConfig:
        """The configuration from user-given values.

        :raises ConfigurationError: naming the argument that is wrong.
        """
        if label_column is not None and (not isinstance(label_column, str) or not label_column.strip()):
            raise ConfigurationError(f"label_column must be a column name, got {label_column!r}.")
        protected = tuple(to_columns(protected_attributes, "protected_attributes") or ())
        if label_column is not None and label_column.lower() in {p.lower() for p in protected}:
            raise ConfigurationError(f"The label column {label_column!r} cannot be a protected attribute too.")
        return cls(label_column=label_column, task=str(task), protected_attributes=protected, profile=profile,
                   importance_sample=_whole(importance_sample, "importance_sample"),
                   importance_repeats=_whole(importance_repeats, "importance_repeats"),
                   importance_seed=_whole(importance_seed, "importance_seed"))

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["protected_attributes"] = list(self.protected_attributes)
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> MetricsConfig:
        return cls(**{**data, "protected_attributes": tuple(data.get("protected_attributes") or ())})


def _whole(value: Any, name: str) -> Any:
    """A whole number given as text (a templated field, a command's argument) as an ``int``; anything else as it is
    (refused by the checks, naming ``name``)."""
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value.strip())
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if value is None:
        raise ConfigurationError(f"{name} must be a whole number, got None.")
    return value
