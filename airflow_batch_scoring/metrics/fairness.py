"""Fairness per protected attribute: each group's confusion counts (mergeable), and from them, for a positive class,
each group's size, selection rate, true and false positive rates, and the gaps between groups.

- selection rate: the share of the group predicted positive;
- demographic parity difference: the largest minus the smallest selection rate;
- disparate impact ratio: the smallest over the largest selection rate (``None`` when no group is selected);
- equal opportunity difference: the largest minus the smallest true positive rate;
- equalised odds difference: the larger of the true and the false positive rates' differences (as Fairlearn).

Rates of a group without positives (or negatives) are ``None`` and left out of the differences. All exact.

Never imports Airflow.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from airflow_batch_scoring.errors import InputError

#: the most groups one protected attribute may have (a column with more is not a group attribute).
MAX_GROUPS = 1000


@dataclass
class GroupStats:
    """``{attribute: {group: {(label, prediction): rows}}}`` over one shard."""

    groups: dict[str, dict[str, dict[tuple[str, str], int]]] = field(default_factory=dict)

    def add(self, attribute: str, groups: np.ndarray, labels: np.ndarray, predictions: np.ndarray) -> None:
        into = self.groups.setdefault(attribute, {})
        keys = np.char.add(np.char.add(np.char.add(np.char.add(groups.astype(str), "\x1f"), labels.astype(str)),
                                       "\x1f"), predictions.astype(str))
        unique, counts = np.unique(keys, return_counts=True)
        for key, count in zip(unique.tolist(), counts.tolist(), strict=True):
            group, label, predicted = key.split("\x1f")
            cell = into.setdefault(group, {})
            cell[(label, predicted)] = cell.get((label, predicted), 0) + count
        self._check(attribute)

    def _check(self, attribute: str) -> None:
        if len(self.groups[attribute]) > MAX_GROUPS:
            raise InputError(
                f"the protected attribute {attribute!r} has more than {MAX_GROUPS} distinct values; fairness "
                "metrics compare a few groups: name a column of groups (or bucket the values first).",
                column=attribute,
            )

    def merge(self, other: GroupStats) -> GroupStats:
        for attribute, groups in other.groups.items():
            into = self.groups.setdefault(attribute, {})
            for group, cells in groups.items():
                cell = into.setdefault(group, {})
                for pair, count in cells.items():
                    cell[pair] = cell.get(pair, 0) + count
            self._check(attribute)
        return self

    def to_dict(self) -> dict[str, Any]:
        return {
            attribute: {group: [[a, b, c] for (a, b), c in sorted(cells.items())] for group, cells in groups.items()}
            for attribute, groups in self.groups.items()
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> GroupStats:
        return cls({
            attribute: {group: {(str(a), str(b)): int(c) for a, b, c in cells} for group, cells in groups.items()}
            for attribute, groups in data.items()
        })


def _rate(numerator: int, denominator: int) -> float | None:
    return numerator / denominator if denominator else None


def _spread(values: list[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return max(known) - min(known) if known else None


def fairness_metrics(stats: GroupStats, positive_label: str) -> dict[str, Any]:
    """Per attribute: each group's counts and rates, and the differences between groups, for ``positive_label``."""
    result: dict[str, Any] = {}
    for attribute, groups in stats.groups.items():
        table: dict[str, Any] = {}
        for group in sorted(groups):
            cells = groups[group]
            tp = sum(c for (y, p), c in cells.items() if y == positive_label and p == positive_label)
            fn = sum(c for (y, p), c in cells.items() if y == positive_label and p != positive_label)
            fp = sum(c for (y, p), c in cells.items() if y != positive_label and p == positive_label)
            tn = sum(c for (y, p), c in cells.items() if y != positive_label and p != positive_label)
            size = tp + fn + fp + tn
            table[group] = {
                "size": size, "tp": tp, "fp": fp, "tn": tn, "fn": fn,
                "selection_rate": _rate(tp + fp, size),
                "true_positive_rate": _rate(tp, tp + fn),
                "false_positive_rate": _rate(fp, fp + tn),
            }
        selection = [g["selection_rate"] for g in table.values()]
        tpr = _spread([g["true_positive_rate"] for g in table.values()])
        fpr = _spread([g["false_positive_rate"] for g in table.values()])
        known = [s for s in selection if s is not None]
        result[attribute] = {
            "groups": table,
            "demographic_parity_difference": _spread(selection),
            "disparate_impact_ratio": (min(known) / max(known)) if known and max(known) > 0 else None,
            "equal_opportunity_difference": tpr,
            "equalized_odds_difference": max(v for v in (tpr, fpr) if v is not None) if (tpr, fpr) != (None, None)
            else None,
        }
    return result
