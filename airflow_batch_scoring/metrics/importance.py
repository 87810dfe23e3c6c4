"""Permutation importance on the merged sample of labeled rows (:mod:`.sample`): how much the main metric drops
when one feature's values are shuffled, the model scoring the shuffled rows.

The permutations follow :func:`sklearn.inspection.permutation_importance`'s for ``random_state=seed``: one seed drawn
from ``RandomState(seed)``, the same for every feature; each repeat shuffles the previous repeat's order again (the
column shuffled in place). So, on the same sample, the importances equal scikit-learn's.

The driver does not load the model: it writes the sample and its shuffled copies (``1 + features * repeats`` blocks
of the sample's rows, a row group each, a ``__row__`` number on every row) into one Parquet file, which the run
scores as a plain scoring job on its runtime, then reads the predictions back in ``__row__`` order and scores each
block. Memory: a block at a time while writing, the predictions of every block while reading.

The main metric: ``roc_auc`` for a binary classification with probabilities, else ``accuracy``; ``r2`` for a
regression. Exact (no bins: the sample is small). The AUC is the positive class's probability's (scikit-learn's
``"roc_auc"`` scorer takes a model's ``decision_function`` when it has one: where two scores round to one
probability, a tie, the two differ by ``1 / (positives * negatives)`` per such pair).

Never imports Airflow.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from airflow_batch_scoring.io.files import filesystem
from airflow_batch_scoring.metrics.sample import LABEL
from airflow_batch_scoring.metrics.shard import model_outputs
from airflow_batch_scoring.metrics.values import as_float, class_keys, is_numeric

#: the passthrough column numbering the rows of the shuffled copies.
ROW = "__row__"
#: the features the XCom summary lists.
TOP_FEATURES = 5


def permutations(rows: int, repeats: int, seed: int) -> list[np.ndarray]:
    """Each repeat's order of the sample's rows (the shuffled column's row ``i`` is the sample's row
    ``order[i]``), as scikit-learn's ``permutation_importance(..., random_state=seed)`` shuffles every feature."""
    state = np.random.RandomState(np.random.RandomState(seed).randint(np.iinfo(np.int32).max + 1))
    shuffling = np.arange(rows)
    order = np.arange(rows)
    orders = []
    for _ in range(repeats):
        state.shuffle(shuffling)
        order = order[shuffling]
        orders.append(order)
    return orders


def features_of(sample: pa.Table) -> list[str]:
    return [name for name in sample.column_names if name != LABEL]


def write_permuted(sample: pa.Table, orders: Sequence[np.ndarray], uri: str, secrets: Mapping[str, Any] | None) -> int:
    """Write the sample, then each feature shuffled by each order, as one Parquet file; return its rows."""
    features = sample.select(features_of(sample))
    rows = features.num_rows
    fs, path = filesystem(uri, secrets)
    block = 0
    with fs.open(path, "wb") as f, pq.ParquetWriter(f, features.schema.append(pa.field(ROW, pa.int64()))) as writer:
        def write(table: pa.Table) -> None:
            nonlocal block
            numbers = pa.array(np.arange(block * rows, (block + 1) * rows, dtype=np.int64))
            writer.write_table(table.append_column(ROW, numbers), row_group_size=rows)
            block += 1

        write(features)
        for index, name in enumerate(features.column_names):
            column = features.column(index)
            for order in orders:
                write(features.set_column(index, name, column.take(pa.array(order))))
    return block * rows


def main_metric(task: str, positive: str | None, binary: bool, probabilities: bool) -> str:
    if task == "regression":
        return "r2"
    return "roc_auc" if binary and probabilities and positive is not None else "accuracy"


def roc_auc(positive: np.ndarray, score: np.ndarray) -> float | None:
    """The exact area under the ROC curve (the Mann–Whitney statistic, ties counted half); ``None`` with one class."""
    n1 = int(positive.sum())
    n0 = len(positive) - n1
    if not n1 or not n0:
        return None
    order = np.argsort(score, kind="mergesort")
    ordered = score[order]
    distinct = np.r_[True, ordered[1:] != ordered[:-1]]
    starts = np.flatnonzero(distinct)
    ends = np.r_[starts[1:], len(score)]
    ranks = np.empty(len(score), dtype=np.float64)
    ranks[order] = ((starts + ends + 1) / 2.0)[np.cumsum(distinct) - 1]
    return float((ranks[positive].sum() - n1 * (n1 + 1) / 2.0) / (n1 * n0))


class _Scorer:
    """The main metric of one block of predictions, against the sample's labels."""

    def __init__(self, metric: str, label: pa.ChunkedArray | pa.Array, positive: str | None, label_column: str):
        self.metric = metric
        self.label = label
        self.positive = positive
        self.label_column = label_column
        if metric == "r2":
            self.y = as_float(label, label_column, "label")
        elif metric == "roc_auc":
            self.y = class_keys(label, numeric=is_numeric(label), column=label_column, role="label") == positive

    def __call__(self, outputs: pa.Table) -> float | None:
        prediction, probabilities = model_outputs(outputs)
        if self.metric == "roc_auc":
            assert self.positive is not None
            score = np.asarray(probabilities[self.positive].to_numpy(zero_copy_only=False), dtype=np.float64)
            return roc_auc(self.y, score)
        if self.metric == "r2":
            p = np.asarray(prediction.cast(pa.float64()).to_numpy(zero_copy_only=False), dtype=np.float64)
            total = float(np.sum((self.y - self.y.mean()) ** 2))
            residual = float(np.sum((self.y - p) ** 2))
            return 1.0 - residual / total if total else None
        numeric = is_numeric(prediction) or (pa.types.is_boolean(prediction.type) and is_numeric(self.label))
        labels = class_keys(self.label, numeric=numeric, column=self.label_column, role="label")
        predicted = class_keys(prediction, numeric=numeric, column="prediction", role="prediction")
        return float(np.mean(labels == predicted))


def importance_from_scores(
    outputs: pa.Table,
    sample: pa.Table,
    *,
    metric: str,
    positive: str | None,
    label_column: str,
    repeats: int,
) -> dict[str, Any]:
    """The importances from the scored copies (``outputs``: the model's outputs and :data:`ROW`, any order)."""
    rows = sample.num_rows
    outputs = outputs.take(pa.array(np.argsort(np.asarray(outputs.column(ROW).to_numpy()), kind="stable")))
    outputs = outputs.drop_columns([ROW])
    score = _Scorer(metric, sample.column(LABEL), positive, label_column)
    baseline = score(outputs.slice(0, rows))
    found: list[dict[str, Any]] = []
    for index, name in enumerate(features_of(sample)):
        drops = []
        for repeat in range(repeats):
            block = 1 + index * repeats + repeat
            value = score(outputs.slice(block * rows, rows))
            drops.append(None if value is None or baseline is None else baseline - value)
        known = np.array([d for d in drops if d is not None], dtype=np.float64)
        found.append({
            "feature": name,
            "mean": float(known.mean()) if known.size else None,
            "std": float(known.std()) if known.size else None,
            "importances": drops,
        })
    found.sort(key=lambda f: np.inf if f["mean"] is None else -float(f["mean"]))
    return {"metric": metric, "baseline_score": baseline, "sample_rows": rows, "repeats": repeats,
            "positive_label": positive if metric == "roc_auc" else None, "features": found}


def top_features(importance: Mapping[str, Any] | None, count: int = TOP_FEATURES) -> list[dict[str, Any]]:
    """The most important features, for the XCom summary."""
    if not importance:
        return []
    return [{"feature": f["feature"], "importance": f["mean"], "std": f["std"]}
            for f in importance["features"][:count]]
