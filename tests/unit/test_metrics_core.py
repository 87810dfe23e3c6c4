"""The metrics core against scikit-learn (and scipy, and direct computations) on the same rows: per-shard statistics
gathered batch by batch, merged over several shards split in different places, equal to the library's own function;
binned metrics within their stated bound."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pytest
from scipy.stats import ks_2samp
from sklearn import metrics as skm
from sklearn.calibration import calibration_curve

from airflow_batch_scoring.errors import ConfigurationError, InputError
from airflow_batch_scoring.metrics.config import MetricsConfig
from airflow_batch_scoring.metrics.curves import ScoreHistogram, binary_curves
from airflow_batch_scoring.metrics.drift import Profile, drift, psi_edges
from airflow_batch_scoring.metrics.results import compute_metrics
from airflow_batch_scoring.metrics.shard import ShardStats, merge_all
from airflow_batch_scoring.metrics.sketch import LogSketch
from airflow_batch_scoring.metrics.thresholds import ThresholdError, check_thresholds, failed_message, parse_thresholds

SPLITS = ([1.0], [0.5, 0.5], [0.1, 0.6, 0.3], [0.0, 0.2, 0.0, 0.8])


def _binary_rows(n: int = 5000, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    x1, x2 = rng.normal(size=n), rng.normal(size=n)
    group = rng.choice(["a", "b", "c"], size=n, p=[0.5, 0.3, 0.2])
    logit = 1.5 * x1 - x2 + (group == "b") * 0.7
    p1 = 1 / (1 + np.exp(-logit))
    y = (rng.random(n) < 1 / (1 + np.exp(-(logit + rng.normal(scale=1.5, size=n))))).astype(np.int64)
    return {"x1": x1, "x2": x2, "group": group, "y": y, "p1": p1, "pred": (p1 >= 0.5).astype(np.int64)}


def _stats_over(rows: dict[str, np.ndarray], config: MetricsConfig, split: list[float], label_as_text: bool = False,
                batch: int = 700) -> ShardStats:
    """The rows cut into shards by ``split`` (shares), each counted in batches, then merged as the driver merges
    the shards' reports (through JSON)."""
    n = len(rows["y"])
    cuts = np.concatenate([[0], np.round(np.cumsum(split) * n).astype(int)])
    reports = []
    for start, end in zip(cuts[:-1], cuts[1:], strict=True):
        stats = ShardStats(config)
        for first in range(start, end, batch):
            last = min(first + batch, end)
            y = rows["y"][first:last]
            label = pa.array([str(v) for v in y]) if label_as_text else pa.array(y)
            batch_table = pa.table({"x1": rows["x1"][first:last], "x2": rows["x2"][first:last],
                                    "group": rows["group"][first:last], "y": label})
            outputs = {"prediction": pa.array(rows["pred"][first:last])}
            if "p1" in rows:
                outputs["probability_0"] = pa.array(1 - rows["p1"][first:last])
                outputs["probability_1"] = pa.array(rows["p1"][first:last])
            stats.add(batch_table, batch_table.select(["x1", "x2"]), pa.table(outputs))
        reports.append(json.loads(json.dumps(stats.to_dict())))
    return merge_all(reports)


@pytest.mark.parametrize("split", SPLITS)
def test_binary_classification_equals_sklearn(split):
    rows = _binary_rows()
    config = MetricsConfig.parse(label_column="y", task="classification", protected_attributes=["group"])
    doc = compute_metrics(_stats_over(rows, config, split, label_as_text=split == [0.5, 0.5]))
    c = doc["classification"]
    y, pred, p1 = rows["y"], rows["pred"], rows["p1"]
    assert c["accuracy"] == pytest.approx(skm.accuracy_score(y, pred), abs=1e-12)
    assert c["confusion_matrix"]["matrix"] == skm.confusion_matrix(y, pred).tolist()
    for average in ("macro", "weighted"):
        p, r, f, _ = skm.precision_recall_fscore_support(y, pred, average=average, zero_division=0)
        assert c[f"precision_{average}"] == pytest.approx(p, abs=1e-12)
        assert c[f"recall_{average}"] == pytest.approx(r, abs=1e-12)
        assert c[f"f1_{average}"] == pytest.approx(f, abs=1e-12)
    p, r, f, s = skm.precision_recall_fscore_support(y, pred, average=None, zero_division=0)
    for i, key in enumerate(["0", "1"]):
        assert c["per_class"][key] == pytest.approx({"precision": p[i], "recall": r[i], "f1": f[i], "support": s[i]})
    assert c["log_loss"] == pytest.approx(skm.log_loss(y, np.c_[1 - p1, p1]), rel=1e-10)
    assert c["brier_score"] == pytest.approx(skm.brier_score_loss(y, p1), rel=1e-10)
    true, predicted = calibration_curve(y, p1, n_bins=10, strategy="uniform")
    assert np.allclose([pt[1] for pt in c["calibration"]["points"]], true, atol=1e-12)
    assert np.allclose([pt[0] for pt in c["calibration"]["points"]], predicted, atol=1e-12)
    # binned: within the stated bound, and the bound is small here
    assert abs(c["roc_auc"] - skm.roc_auc_score(y, p1)) <= c["roc_auc_max_error"] + 1e-12
    assert c["roc_auc_max_error"] < 1e-3
    assert abs(c["average_precision"] - skm.average_precision_score(y, p1)) <= c["average_precision_max_error"] + 1e-12
    assert c["average_precision_max_error"] < 1e-3
    assert doc["summary"]["f1_macro"] == c["f1_macro"]


def test_roc_and_pr_bounds_hold_with_coarse_bins():
    """With 20 bins most pairs share a bin: the error is large, and the exact value still lies within it."""
    rows = _binary_rows(n=3000, seed=3)
    y, p1 = rows["y"], rows["p1"]
    hist = ScoreHistogram(bins=20)
    hist.add(p1, y == 1)
    curves = binary_curves(hist)
    assert curves is not None
    auc_error, ap_error = curves["roc_auc_max_error"], curves["average_precision_max_error"]
    assert 1e-3 < auc_error < 0.1 and 1e-3 < ap_error < 0.2
    assert abs(curves["roc_auc"] - skm.roc_auc_score(y, p1)) <= auc_error
    assert abs(curves["average_precision"] - skm.average_precision_score(y, p1)) <= ap_error
    # with the scores quantised to the bins, the binned values are scikit-learn's exactly
    quantised = np.floor(p1 * 20) / 20
    assert curves["roc_auc"] == pytest.approx(skm.roc_auc_score(y, quantised), abs=1e-12)
    assert curves["average_precision"] == pytest.approx(skm.average_precision_score(y, quantised), abs=1e-12)
    # every ROC point is exact at its threshold
    for fpr, tpr, threshold in curves["roc_curve"]["points"][1:]:
        assert tpr == pytest.approx(np.mean(p1[y == 1] >= threshold))
        assert fpr == pytest.approx(np.mean(p1[y == 0] >= threshold))


def test_multiclass_equals_sklearn():
    rng = np.random.default_rng(5)
    n = 4000
    classes = np.array(["cat", "dog", "emu"])
    logits = rng.normal(size=(n, 3))
    proba = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    y = np.array([rng.choice(classes, p=p) for p in proba])
    pred = classes[proba.argmax(axis=1)]
    config = MetricsConfig.parse(label_column="y", task="classification")
    reports = []
    for part in np.array_split(np.arange(n), 3):
        stats = ShardStats(config)
        table = pa.table({"f": logits[part, 0], "y": y[part]})
        outputs = pa.table({"prediction": pred[part], **{f"probability_{c}": proba[part, i]
                                                        for i, c in enumerate(classes)}})
        stats.add(table, table.select(["f"]), outputs)
        reports.append(stats.to_dict())
    c = compute_metrics(merge_all(reports))["classification"]
    assert c["classes"] == ["cat", "dog", "emu"]
    assert c["confusion_matrix"]["matrix"] == skm.confusion_matrix(y, pred, labels=classes).tolist()
    assert c["f1_macro"] == pytest.approx(skm.f1_score(y, pred, average="macro"), abs=1e-12)
    assert c["f1_weighted"] == pytest.approx(skm.f1_score(y, pred, average="weighted"), abs=1e-12)
    assert c["log_loss"] == pytest.approx(skm.log_loss(y, proba, labels=classes), rel=1e-10)
    exact = skm.roc_auc_score(y, proba, multi_class="ovr", average="macro", labels=classes)
    assert abs(c["roc_auc"] - exact) <= c["roc_auc_max_error"] + 1e-12


@pytest.mark.parametrize("split", SPLITS)
def test_regression_equals_sklearn(split):
    rng = np.random.default_rng(7)
    n = 6000
    y = 1e6 + rng.normal(scale=50, size=n)  # a large mean: R² must keep its precision
    pred = y + rng.standard_t(df=3, size=n) * 10
    config = MetricsConfig.parse(label_column="y", task="regression")
    cuts = np.concatenate([[0], np.round(np.cumsum(split) * n).astype(int)])
    reports = []
    for start, end in zip(cuts[:-1], cuts[1:], strict=True):
        stats = ShardStats(config)
        for first in range(start, end, 1000):
            sl = slice(first, min(first + 1000, end))
            table = pa.table({"x": y[sl] * 0, "y": pa.array([repr(float(v)) for v in y[sl]])})  # labels as text (CSV)
            stats.add(table, table.select(["x"]), pa.table({"prediction": pred[sl]}))
        reports.append(stats.to_dict())
    r = compute_metrics(merge_all(reports))["regression"]
    assert r["rmse"] == pytest.approx(np.sqrt(skm.mean_squared_error(y, pred)), rel=1e-10)
    assert r["mae"] == pytest.approx(skm.mean_absolute_error(y, pred), rel=1e-10)
    assert r["r2"] == pytest.approx(skm.r2_score(y, pred), rel=1e-9)
    residuals = y - pred
    alpha = r["residual_quantiles_relative_error"]
    for q, value in r["residual_quantiles"].items():
        exact = np.quantile(residuals, float(q), method="lower")
        assert abs(value - exact) <= alpha * abs(exact) + 1e-9


def test_sketch_quantiles_within_bound_and_merge():
    rng = np.random.default_rng(11)
    values = np.concatenate([rng.lognormal(sigma=3, size=5000), -rng.exponential(size=3000), np.zeros(50)])
    rng.shuffle(values)
    parts = [LogSketch(0.01) for _ in range(4)]
    for part, chunk in zip(parts, np.array_split(values, 4), strict=True):
        part.add(chunk)
    merged = LogSketch.from_dict(json.loads(json.dumps(parts[0].to_dict())))
    for part in parts[1:]:
        merged.merge(part)
    assert merged.count == len(values)
    for q in np.linspace(0, 1, 41):
        exact = np.quantile(values, q, method="lower")
        assert abs(merged.quantile(q) - exact) <= 0.01 * abs(exact) + 1e-12
    assert len(merged.positive) + len(merged.negative) < 3000  # bounded by the range, not the 8,050 values


def _direct_psi(current: np.ndarray, baseline: np.ndarray, edges: list[float]) -> float:
    def shares(values: np.ndarray) -> np.ndarray:
        counts = np.bincount(np.searchsorted(edges, values, side="left"), minlength=len(edges) + 1)
        return np.maximum(counts / counts.sum(), 1e-4)

    c, b = shares(current), shares(baseline)
    return float(np.sum((c - b) * np.log(c / b)))


def test_drift_psi_and_ks_against_direct_and_scipy():
    rng = np.random.default_rng(13)
    base = {"x": rng.normal(size=8000), "color": rng.choice(["red", "blue", "green"], size=8000, p=[.5, .3, .2])}
    cur = {"x": rng.normal(loc=0.3, scale=1.2, size=6000),
           "color": rng.choice(["red", "blue", "green"], size=6000, p=[.3, .3, .4])}
    profiles = []
    for data in (cur, base):
        merged = Profile()
        for chunk in np.array_split(np.arange(len(data["x"])), 3):
            part = Profile()
            part.add("x", pa.array(data["x"][chunk]))
            part.add("color", pa.array(data["color"][chunk]))
            merged.merge(Profile.from_dict(json.loads(json.dumps(part.to_dict()))))
        profiles.append(merged)
    found = drift(profiles[0], profiles[1])
    x = found["columns"]["x"]
    edges = psi_edges(profiles[1].columns["x"].sketch)
    assert x["psi_edges"] == edges and len(edges) == 9
    # every edge is within the sketch's accuracy of the baseline's decile
    for k, edge in enumerate(edges, start=1):
        assert abs(edge - np.quantile(base["x"], k / 10)) <= 0.05 * abs(edge) + 0.05
    assert x["psi"] == pytest.approx(_direct_psi(cur["x"], base["x"], edges), rel=1e-12)
    exact_ks = ks_2samp(cur["x"], base["x"]).statistic
    assert x["ks"] <= exact_ks + 1e-12 <= x["ks"] + x["ks_max_error"] + 2e-12
    assert x["ks_max_error"] < 0.01
    c, b = [np.array([np.mean(d["color"] == v) for v in ("blue", "green", "red")]) for d in (cur, base)]
    assert found["columns"]["color"]["psi"] == pytest.approx(float(np.sum((c - b) * np.log(c / b))), rel=1e-12)
    assert found["max_psi"] == max(x["psi"], found["columns"]["color"]["psi"])


def test_fairness_equals_direct_computation_from_group_confusion_matrices():
    rows = _binary_rows(n=4000, seed=17)
    config = MetricsConfig.parse(label_column="y", task="classification", protected_attributes="group")
    doc = compute_metrics(_stats_over(rows, config, [0.3, 0.7]))
    fairness = doc["fairness"]["attributes"]["group"]
    selection, tpr, fpr = {}, {}, {}
    for g in ("a", "b", "c"):
        in_group = rows["group"] == g
        tn, fp, fn, tp = skm.confusion_matrix(rows["y"][in_group], rows["pred"][in_group], labels=[0, 1]).ravel()
        assert fairness["groups"][g]["size"] == in_group.sum()
        assert (fairness["groups"][g]["tp"], fairness["groups"][g]["fp"]) == (tp, fp)
        selection[g], tpr[g], fpr[g] = (tp + fp) / in_group.sum(), tp / (tp + fn), fp / (fp + tn)
        assert fairness["groups"][g]["selection_rate"] == pytest.approx(selection[g])
    spread = lambda d: max(d.values()) - min(d.values())  # noqa: E731
    assert fairness["demographic_parity_difference"] == pytest.approx(spread(selection))
    assert fairness["disparate_impact_ratio"] == pytest.approx(min(selection.values()) / max(selection.values()))
    assert fairness["equal_opportunity_difference"] == pytest.approx(spread(tpr))
    assert fairness["equalized_odds_difference"] == pytest.approx(max(spread(tpr), spread(fpr)))
    assert doc["summary"]["max_demographic_parity_difference"] == pytest.approx(spread(selection))


def test_bad_labels_and_mismatched_task_are_clear_errors():
    features = pa.table({"x": [0.1, 0.2]})
    classification = ShardStats(MetricsConfig.parse(label_column="y", task="classification"))
    with pytest.raises(InputError, match=r"column 'y'.*'yes', which is not a number"):
        classification.add(pa.table({"x": [0.1, 0.2], "y": ["yes", "no"]}), features,
                           pa.table({"prediction": [1, 0]}))
    with pytest.raises(InputError, match=r"label_column 'label' is not in the input \(its columns: x\)"):
        ShardStats(MetricsConfig.parse(label_column="label", task="classification")).add(
            features, features, pa.table({"prediction": [1, 0]}))
    with pytest.raises(ConfigurationError, match=r"continuous values .*regression model.*task='regression'"):
        classification.add(pa.table({"x": [0.1, 0.2], "y": [1, 0]}), features,
                           pa.table({"prediction": [0.37, 2.5]}))
    with pytest.raises(ConfigurationError, match=r"task='regression'.*predicts classes \(e.g. 'yes'\)"):
        ShardStats(MetricsConfig.parse(label_column="y", task="regression")).add(
            pa.table({"x": [0.1, 0.2], "y": [1.0, 0.0]}), features, pa.table({"prediction": ["yes", "no"]}))
    with pytest.raises(InputError, match=r"protected attribute 'sex' is not in the input"):
        ShardStats(MetricsConfig.parse(label_column="y", task="classification", protected_attributes=["sex"])).add(
            pa.table({"x": [0.1, 0.2], "y": [1, 0]}), features, pa.table({"prediction": [1, 0]}))
    with pytest.raises(ConfigurationError, match="task must be one of"):
        MetricsConfig.parse(label_column="y", task="ranking")


def test_missing_labels_are_counted_not_scored():
    stats = ShardStats(MetricsConfig.parse(label_column="y", task="classification"))
    table = pa.table({"x": [0.1, 0.2, 0.3], "y": pa.array([1, None, 0], pa.int64())})
    stats.add(table, table.select(["x"]), pa.table({"prediction": [1, 1, 1]}))
    doc = compute_metrics(stats)
    assert (doc["rows"], doc["rows_without_label"], doc["classification"]["rows"]) == (3, 1, 2)
    assert doc["classification"]["accuracy"] == 0.5


def test_thresholds():
    parsed = parse_thresholds({"roc_auc": 0.8, "max_psi": 0.2, "rmse": {"max": 3}, "f1_macro": {"min": "0.7"}})
    outcomes = check_thresholds(parsed, {"roc_auc": 0.75, "max_psi": 0.1, "rmse": 2.0, "f1_macro": None})
    assert [o["passed"] for o in outcomes] == [False, True, True, False]
    message = failed_message(outcomes, "file:///out/metrics.json")
    assert message is not None
    assert "roc_auc = 0.75 (needs roc_auc >= 0.8)" in message and "f1_macro was not computed" in message
    assert failed_message(outcomes[1:3], "x") is None
    with pytest.raises(ConfigurationError, match="unknown metric 'auc'"):
        parse_thresholds({"auc": 0.8})
    with pytest.raises(ConfigurationError, match="must be a number"):
        parse_thresholds({"roc_auc": "high"})
    assert not ThresholdError("x").retryable


def test_bins_of_one_score_are_exact_ties():
    """A tree model's probabilities take few values: each bin then holds one score, and ROC AUC and average
    precision are exact (scikit-learn's own tie handling), with a zero error bound, however the shards split."""
    rng = np.random.default_rng(19)
    scores = rng.choice([0.1, 0.25, 0.4, 0.7, 0.9], size=3000)
    y = rng.random(3000) < scores
    merged = ScoreHistogram()
    for chunk in np.array_split(np.arange(3000), 4):
        part = ScoreHistogram()
        part.add(scores[chunk], y[chunk])
        merged.merge(ScoreHistogram.from_dict(json.loads(json.dumps(part.to_dict()))))
    curves = binary_curves(merged)
    assert curves is not None
    assert curves["roc_auc_max_error"] == 0 and curves["average_precision_max_error"] == 0
    assert curves["roc_auc"] == pytest.approx(skm.roc_auc_score(y, scores), abs=1e-12)
    assert curves["average_precision"] == pytest.approx(skm.average_precision_score(y, scores), abs=1e-12)


def test_operator_checks_thresholds_and_output_when_the_dag_is_parsed():
    from airflow_batch_scoring.operators import BatchMetricsOperator

    task = BatchMetricsOperator(task_id="m", model="models:/churn@champion", source="s3://data/in/",
                                output="s3://data/metrics/", label_column="churned", thresholds={"roc_auc": 0.8})
    assert task.sink == "s3://data/metrics/" and "thresholds" in task.template_fields
    with pytest.raises(ConfigurationError, match="unknown metric 'auc'"):
        BatchMetricsOperator(task_id="m", model="m", source="s3://d/in/", output="s3://d/out/", label_column="y",
                             thresholds={"auc": 0.8})
    with pytest.raises(ConfigurationError, match="output=, not sink="):
        BatchMetricsOperator(task_id="m", model="m", source="s3://d/in/", output="s3://d/out/", label_column="y",
                             sink="s3://d/other/")


def test_settings_that_do_not_fit_are_named():
    from airflow_batch_scoring.job import ModelSpec
    from airflow_batch_scoring.metrics.run import infer_task, output_places
    from airflow_batch_scoring.specs import parse_data_spec

    stats = _stats_over(_binary_rows(n=300), MetricsConfig.parse(label_column="y", task="classification"), [1.0])
    with pytest.raises(ConfigurationError, match=r"positive_label='maybe' is none of the classes found \(0, 1\)"):
        compute_metrics(stats, positive_label="maybe")
    assert compute_metrics(stats, positive_label=0)["classification"]["positive_label"] == "0"
    spec = ModelSpec(uri="model.joblib", path="/m/model.joblib", flavor="sklearn")
    with pytest.raises(ConfigurationError, match="give task='classification' or task='regression'"):
        infer_task(None, spec)
    regression = ModelSpec(uri="m", path="/m", flavor="mlflow", output_schema=[{"name": "y", "type": "Float64"}])
    assert infer_task(None, regression) == "regression" and infer_task("classification", regression) == \
        "classification"
    with pytest.raises(ConfigurationError, match="not a SQL table"):
        output_places(parse_data_spec({"conn_id": "db", "table": "metrics"}, "sink"))
    scored, baseline, metrics_uri = output_places(parse_data_spec("s3://b/run-1", "sink"))
    assert (scored.uri, scored.format, baseline.uri, metrics_uri) == \
        ("s3://b/run-1/scored/", "parquet", "s3://b/run-1/baseline/", "s3://b/run-1/metrics.json")


def test_ks_is_exact_for_values_that_are_points():
    """A tree model's probabilities (or a count feature) take few values: each bucket then holds one value per
    side, and KS is scipy's exactly, with no error."""
    rng = np.random.default_rng(23)
    levels = np.array([0.05, 0.2, 0.21, 0.5, 0.8, 3.0, -1.0, 0.0])
    current, baseline = rng.choice(levels, size=3000), rng.choice(levels, size=2000, p=[.2, .1, .1, .2, .1, .1, .1, .1])
    profiles = []
    for values in (current, baseline):
        merged = Profile()
        for chunk in np.array_split(values, 3):
            part = Profile()
            part.add("p", pa.array(chunk))
            merged.merge(Profile.from_dict(json.loads(json.dumps(part.to_dict()))))
        profiles.append(merged)
    found = drift(profiles[0], profiles[1])["columns"]["p"]
    assert found["ks_max_error"] == 0
    assert found["ks"] == pytest.approx(ks_2samp(current, baseline).statistic, abs=1e-12)


def test_a_threshold_the_run_cannot_compute_is_refused_before_it_runs():
    from airflow_batch_scoring.metrics.thresholds import check_applicable

    check_applicable(parse_thresholds({"rmse": 2, "max_psi": 0.2}), task="regression", fairness=False, drift=True)
    for thresholds, task, message in [
        ({"roc_auc": 0.8}, "regression", "'roc_auc' cannot be checked: a regression does not compute it"),
        ({"r2": 0.5}, "classification", "'r2' cannot be checked: a classification does not compute it"),
        ({"max_demographic_parity_difference": 0.1}, "classification", "it needs protected_attributes"),
        ({"max_psi": 0.2}, "classification", "it needs a baseline"),
    ]:
        with pytest.raises(ConfigurationError, match=message):
            check_applicable(parse_thresholds(thresholds), task=task, fairness=False, drift=False)
