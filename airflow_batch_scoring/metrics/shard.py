"""One shard's statistics (:class:`ShardStats`): gathered batch by batch in a replica, carried in the shard's report,
merged by the driver. Their size depends on the metrics (classes, bins, groups, the values' range), never on the
number of rows.

Never imports Airflow.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from airflow_batch_scoring.errors import ConfigurationError, InputError
from airflow_batch_scoring.flavors.base import PREDICTION, PROBABILITY_PREFIX
from airflow_batch_scoring.metrics.classification import ClassificationStats
from airflow_batch_scoring.metrics.config import MetricsConfig
from airflow_batch_scoring.metrics.drift import Profile
from airflow_batch_scoring.metrics.fairness import GroupStats
from airflow_batch_scoring.metrics.regression import RegressionStats
from airflow_batch_scoring.metrics.sample import Reservoir
from airflow_batch_scoring.metrics.values import as_float, class_keys, group_keys, is_numeric, key_of


def _column(table: pa.Table, name: str, what: str) -> pa.ChunkedArray:
    by_key = {n.lower(): n for n in table.column_names}
    if name.lower() not in by_key:
        raise InputError(
            f"{what} {name!r} is not in the input (its columns: {', '.join(table.column_names)}); name an "
            f"existing column as {what}.",
            column=name,
        )
    return table.column(by_key[name.lower()])


def model_outputs(outputs: pa.Table) -> tuple[pa.ChunkedArray, dict[str, pa.ChunkedArray]]:
    """The model's prediction column (``prediction``, else its first output) and its probability columns by class
    key."""
    probabilities = {
        key_of(name[len(PROBABILITY_PREFIX):]): outputs.column(name)
        for name in outputs.column_names if name.startswith(PROBABILITY_PREFIX)
    }
    names = [n for n in outputs.column_names if not n.startswith(PROBABILITY_PREFIX)]
    if not names:
        raise ConfigurationError("The model returned only probability columns; metrics need its prediction column.")
    return outputs.column(PREDICTION if PREDICTION in names else names[0]), probabilities


@dataclass
class ShardStats:
    """Everything one shard adds up: labeled-row metrics, fairness groups, and the distributions for drift."""

    config: MetricsConfig
    rows: int = 0
    rows_without_label: int = 0
    classification: ClassificationStats | None = None
    regression: RegressionStats | None = None
    groups: GroupStats = field(default_factory=GroupStats)
    profile: Profile = field(default_factory=Profile)
    #: the labeled rows sampled for the permutation importance (``config.importance_sample`` rows at most).
    sample: Reservoir | None = None

    def __post_init__(self) -> None:
        if self.config.label_column is None:
            return
        if self.config.importance_sample and self.sample is None:
            self.sample = Reservoir(self.config.importance_sample, self.config.importance_seed)
        if self.config.task == "classification" and self.classification is None:
            self.classification = ClassificationStats(bins=self.config.score_bins)
        if self.config.task == "regression" and self.regression is None:
            self.regression = RegressionStats()

    def add(self, batch: pa.Table, features: pa.Table, outputs: pa.Table) -> None:
        """Count one scored batch: ``batch`` as read (features and passthrough columns), the model's ``features``
        and its ``outputs``.

        :raises InputError: for a label or group column that is missing or of the wrong type.
        :raises ConfigurationError: for a model whose output does not fit the task.
        """
        config = self.config
        prediction, probabilities = model_outputs(outputs)
        self.rows += batch.num_rows
        if config.profile:
            for name in features.column_names:
                self.profile.add(name, features.column(name))
            self.profile.add(PREDICTION, prediction)
            for key, column in probabilities.items():
                self.profile.add(f"{PROBABILITY_PREFIX}{key}", column)
        if config.label_column is None:
            return
        label = _column(batch, config.label_column, "label_column")
        groups = [(name, _column(batch, name, "protected attribute")) for name in config.protected_attributes]
        valid = label.is_valid()
        if pa.types.is_floating(label.type):
            valid = pc.and_(valid, pc.invert(pc.is_nan(label)))
        mask = np.asarray(valid.to_numpy(zero_copy_only=False), dtype=bool)
        self.rows_without_label += int((~mask).sum())
        if not mask.all():
            selected = pa.array(mask)
            label, prediction = label.filter(selected), prediction.filter(selected)
            probabilities = {k: v.filter(selected) for k, v in probabilities.items()}
            groups = [(name, column.filter(selected)) for name, column in groups]
        if self.sample is not None:
            self.sample.add(features if mask.all() else features.filter(pa.array(mask)), label)
        if config.task == "regression":
            self._regression(label, prediction)
            return
        numeric = is_numeric(prediction) or (pa.types.is_boolean(prediction.type) and is_numeric(label))
        if pa.types.is_floating(prediction.type):
            values = np.asarray(prediction.to_numpy(zero_copy_only=False), dtype=np.float64)
            continuous = values[np.isfinite(values) & (values != np.round(values))]
            if continuous.size:
                raise ConfigurationError(
                    f"task='classification', but the model predicts continuous values (e.g. {continuous[0]!r}): it is "
                    "a regression model. Use task='regression', or a classifier."
                )
        labels = class_keys(label, numeric=numeric, column=config.label_column, role="label")
        predicted = class_keys(prediction, numeric=numeric, column=PREDICTION, role="prediction")
        assert self.classification is not None
        self.classification.add(
            labels, predicted, {k: np.asarray(v.to_numpy(zero_copy_only=False)) for k, v in probabilities.items()}
        )
        for name, column in groups:
            self.groups.add(name, group_keys(column), labels, predicted)

    def _regression(self, label: pa.ChunkedArray, prediction: pa.ChunkedArray) -> None:
        if not is_numeric(prediction):
            sample = next((v for v in prediction.to_pylist() if v is not None), None)
            raise ConfigurationError(
                f"task='regression', but the model predicts classes (e.g. {sample!r}): it is a classifier. Use "
                "task='classification', or a regression model."
            )
        assert self.config.label_column is not None and self.regression is not None
        labels = as_float(label, self.config.label_column, "label")
        predictions = np.asarray(prediction.cast(pa.float64()).to_numpy(zero_copy_only=False), dtype=np.float64)
        self.regression.add(labels, predictions)

    def merge(self, other: ShardStats) -> ShardStats:
        self.rows += other.rows
        self.rows_without_label += other.rows_without_label
        if self.classification is not None and other.classification is not None:
            self.classification.merge(other.classification)
        if self.regression is not None and other.regression is not None:
            self.regression.merge(other.regression)
        self.groups.merge(other.groups)
        self.profile.merge(other.profile)
        if self.sample is not None and other.sample is not None:
            self.sample.merge(other.sample)
        elif other.sample is not None:
            self.sample = other.sample
        return self

    def to_dict(self) -> dict[str, Any]:
        return {
            "config": self.config.to_dict(),
            "rows": self.rows,
            "rows_without_label": self.rows_without_label,
            "classification": self.classification.to_dict() if self.classification is not None else None,
            "regression": self.regression.to_dict() if self.regression is not None else None,
            "groups": self.groups.to_dict(),
            "profile": self.profile.to_dict(),
            "sample": self.sample.to_dict() if self.sample is not None else None,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ShardStats:
        return cls(
            config=MetricsConfig.from_dict(data["config"]),
            rows=int(data["rows"]),
            rows_without_label=int(data["rows_without_label"]),
            classification=ClassificationStats.from_dict(data["classification"]) if data.get("classification")
            else None,
            regression=RegressionStats.from_dict(data["regression"]) if data.get("regression") else None,
            groups=GroupStats.from_dict(data["groups"]),
            profile=Profile.from_dict(data["profile"]),
            sample=Reservoir.from_dict(data["sample"]) if data.get("sample") else None,
        )


def merge_all(shards: list[Mapping[str, Any]]) -> ShardStats:
    """Merge every shard's statistics (as their reports carry them) into one."""
    if not shards:
        raise ValueError("No shard statistics to merge.")
    merged = ShardStats.from_dict(shards[0])
    for data in shards[1:]:
        merged.merge(ShardStats.from_dict(data))
    return merged
