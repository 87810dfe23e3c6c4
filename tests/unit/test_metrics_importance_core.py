"""The permutation importance's parts without a model process: the reservoir sample (bounded, uniform, its merge the
sample of all the shards' rows, weighted by their sizes, repeatable), the permutations (scikit-learn's) and the exact
ROC AUC."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.inspection import permutation_importance
from sklearn.metrics import roc_auc_score

from airflow_batch_scoring.errors import ConfigurationError
from airflow_batch_scoring.metrics.config import MetricsConfig
from airflow_batch_scoring.metrics.importance import permutations, roc_auc
from airflow_batch_scoring.metrics.sample import LABEL, Reservoir

pytestmark = pytest.mark.unit


def _fill(reservoir: Reservoir, ids: np.ndarray, batch: int = 37) -> Reservoir:
    for start in range(0, len(ids), batch):
        part = ids[start:start + batch]
        reservoir.add(pa.table({"id": part}), pa.array(part % 2))
    return reservoir


def _ids(reservoir: Reservoir) -> list[int]:
    assert reservoir.table is not None
    return reservoir.table.column("id").to_pylist()


def test_reservoir_is_bounded_and_its_merge_is_the_sample_of_all_rows():
    small, large = np.arange(100), np.arange(100, 1000)
    a, b = _fill(Reservoir(50, seed=3, shard=0), small), _fill(Reservoir(50, seed=3, shard=1), large)
    assert a.rows == b.rows == 50 and a.table is not None and a.table.column_names == ["id", LABEL]
    assert a.table.column(LABEL).to_pylist() == [i % 2 for i in _ids(a)]
    keys = np.concatenate([a.keys, b.keys])
    ids = np.array(_ids(a) + _ids(b))
    merged = Reservoir.from_dict(a.to_dict()).merge(Reservoir.from_dict(b.to_dict()))
    assert merged.rows == 50 and _ids(merged) == ids[np.argsort(keys)][:50].tolist()  # the 50 smallest keys
    assert _ids(merged) == _ids(Reservoir.from_dict(b.to_dict()).merge(Reservoir.from_dict(a.to_dict())))
    again = _fill(Reservoir(50, seed=3, shard=0), small)
    assert _ids(again) == _ids(a) and _ids(_fill(Reservoir(50, seed=4, shard=0), small)) != _ids(a)
    assert len(set(_ids(a))) == 50 and set(_ids(a)) <= set(small.tolist())


def test_merged_sample_is_uniform_over_unequal_shards():
    small, large = np.arange(100), np.arange(100, 1000)
    counts = np.zeros(1000)
    trials = 400
    for seed in range(trials):
        merged = _fill(Reservoir(50, seed, 0), small).merge(_fill(Reservoir(50, seed, 1), large, batch=200))
        counts[_ids(merged)] += 1
    # every row has a 50/1000 chance: the small shard gives a tenth of the sample, not a half
    assert counts[:100].sum() / counts.sum() == pytest.approx(0.1, abs=0.01)
    assert counts.mean() / trials == pytest.approx(0.05) and abs(counts / trials - 0.05).max() < 0.05


class _Recorder(BaseEstimator, RegressorMixin):
    """A regressor whose score tells which rows its first feature was shuffled to (a scoring function records)."""

    def fit(self, x, y):
        return self

    def predict(self, x):
        return np.asarray(x)[:, 0].astype(float)


def test_permutations_are_scikit_learns():
    x = np.column_stack([np.arange(40, dtype=float), np.zeros(40)])
    seen: list[np.ndarray] = []

    def scorer(estimator, data, y):
        seen.append(np.asarray(data)[:, 0].astype(int))
        return 0.0

    permutation_importance(_Recorder().fit(x, None), x, np.zeros(40), scoring=scorer, n_repeats=4, random_state=11)
    orders = permutations(40, 4, 11)
    assert [o.tolist() for o in orders] == [s.tolist() for s in seen[1:5]]  # after the baseline, column 0's


def test_exact_roc_auc_with_ties():
    rng = np.random.default_rng(0)
    y = rng.random(500) < 0.3
    score = np.round(rng.random(500) + y * 0.3, 1)  # many ties
    assert roc_auc(y, score) == pytest.approx(roc_auc_score(y, score), abs=1e-12)
    assert roc_auc(np.ones(5, dtype=bool), np.arange(5.0)) is None


@pytest.mark.parametrize(("field", "value", "words"), [
    ("importance_sample", -1, "importance_sample must be a number of rows"),
    ("importance_sample", 10**9, "importance_sample must be a number of rows"),
    ("importance_repeats", 0, "importance_repeats must be a whole number"),
    ("importance_seed", "x", "importance_seed must be a whole number"),
])
def test_importance_settings_are_checked(field, value, words):
    with pytest.raises(ConfigurationError, match=words):
        MetricsConfig.parse(label_column="y", task="classification", **{field: value})
    assert MetricsConfig.parse(label_column="y", task="classification", importance_sample="300").importance_sample \
        == 300
