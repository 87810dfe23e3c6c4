"""Metrics jobs for real: real scikit-learn models scored by real replica processes (1 and 3), CSV and Parquet, local
files and the S3 server; every metric equals scikit-learn's (or scipy's, or a direct computation) on the same rows
and the model's own predictions, binned ones within their stated bound; bad input fails clearly, publishing nothing.

The jobs run through ``batch-scoring metrics`` (the command, in this process; its replicas are processes)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy.stats import ks_2samp
from sklearn import metrics as skm
from sklearn.inspection import permutation_importance
from sklearn.metrics import roc_auc_score

from airflow_batch_scoring import cli
from tests.support.helpers import FEATURES, Models, make_frame, write_frame
from tests.support.servers import S3_KEY, S3_SECRET


def labeled_frame(rows: int, seed: int, shift: float = 0.0) -> pd.DataFrame:
    """Features as the test models know them, a noisy label (``yes``/``no``), a regression target and a group."""
    frame = make_frame(rows, seed=seed)
    frame["f0"] += shift
    rng = np.random.default_rng(seed + 1)
    frame["label"] = np.where(frame["f0"] + frame["f1"] / 10 + rng.normal(scale=0.5, size=rows) > 0, "yes", "no")
    frame["target"] = frame["f0"] * 3.3 + frame["f3"] / 1e6 + rng.normal(scale=0.3, size=rows)
    frame["region"] = rng.choice(["north", "south", "east"], size=rows)
    return frame


def run_cli(capsys: pytest.CaptureFixture, *args: str) -> tuple[int, dict, str]:
    """``batch-scoring metrics``; the permutation importance (its own job) only when asked: it has its own tests."""
    extra = [] if "--importance-sample" in args else ["--importance-sample", "0"]
    code = cli.main(["metrics", *args, *extra])
    out = capsys.readouterr()
    return code, (json.loads(out.out) if code == 0 else {}), out.err


def read_metrics(folder: Path) -> dict:
    return json.loads((folder / "metrics.json").read_text())


def check_classification(record: dict, frame: pd.DataFrame, model) -> None:
    x = frame[FEATURES]
    y, pred, proba = frame["label"].to_numpy(), model.predict(x), model.predict_proba(x)
    p_yes = proba[:, list(model.classes_).index("yes")]
    c = record["classification"]
    assert record["rows"] == len(frame) and c["rows"] == len(frame)
    assert c["accuracy"] == pytest.approx(skm.accuracy_score(y, pred), abs=1e-12)
    assert c["confusion_matrix"]["matrix"] == skm.confusion_matrix(y, pred, labels=["no", "yes"]).tolist()
    assert c["f1_macro"] == pytest.approx(skm.f1_score(y, pred, average="macro"), abs=1e-12)
    assert c["f1_weighted"] == pytest.approx(skm.f1_score(y, pred, average="weighted"), abs=1e-12)
    assert c["precision_macro"] == pytest.approx(skm.precision_score(y, pred, average="macro"), abs=1e-12)
    assert c["recall_macro"] == pytest.approx(skm.recall_score(y, pred, average="macro"), abs=1e-12)
    assert c["log_loss"] == pytest.approx(skm.log_loss(y, proba, labels=model.classes_), rel=1e-9)
    assert c["brier_score"] == pytest.approx(skm.brier_score_loss(y, p_yes, pos_label="yes"), rel=1e-9)
    assert c["positive_label"] == "yes"
    assert abs(c["roc_auc"] - skm.roc_auc_score(y == "yes", p_yes)) <= c["roc_auc_max_error"] + 1e-12
    assert abs(c["average_precision"] - skm.average_precision_score(y == "yes", p_yes)) \
        <= c["average_precision_max_error"] + 1e-12
    assert c["roc_auc_max_error"] < 1e-3


@pytest.mark.parametrize(("fmt", "replicas"), [("csv_header", 1), ("csv_header", 3), ("parquet", 3)])
def test_classification_metrics_on_local_files(models: Models, tmp_path: Path, capsys, fmt: str, replicas: int):
    frame = labeled_frame(3000, seed=5)
    ext = "csv" if fmt.startswith("csv") else "parquet"
    for i, part in enumerate([frame.iloc[:1700], frame.iloc[1700:]]):
        write_frame(part, tmp_path / "in" / f"part-{i}.{ext}", fmt)
    source = json.dumps({"uri": f"file://{tmp_path}/in/", "format": ext, **({"header": True} if ext == "csv" else {})})
    code, summary, err = run_cli(
        capsys, "--model", str(models.classifier_path), "--source", source, "--output", f"file://{tmp_path}/out/",
        "--label-column", "label", "--task", "classification", "--protected-attributes", "region",
        "--replicas", str(replicas), "--batch-size", "700", "--thresholds", '{"accuracy": 0.5}',
    )
    assert code == 0, err[-3000:]
    record = read_metrics(tmp_path / "out")
    check_classification(record, frame, models.classifier)
    assert record["replicas"] == replicas and record["model"]["digest"].startswith("sha256:")
    assert record["input"]["uri"] == f"file://{tmp_path}/in/"
    assert record["thresholds"] == [{"metric": "accuracy", "threshold": "accuracy >= 0.5",
                                     "value": record["classification"]["accuracy"], "passed": True}]
    assert summary["metrics_uri"] == f"file://{tmp_path}/out/metrics.json" and summary["passed"] is True
    assert summary["metrics"]["accuracy"] == record["classification"]["accuracy"]
    # fairness: each region's confusion counts, straight from the rows
    pred = models.classifier.predict(frame[FEATURES])
    groups = record["fairness"]["attributes"]["region"]["groups"]
    rates = {}
    for region in ("east", "north", "south"):
        rows = (frame["region"] == region).to_numpy()
        tn, fp, fn, tp = skm.confusion_matrix(frame["label"][rows], pred[rows], labels=["no", "yes"]).ravel()
        assert (groups[region]["tp"], groups[region]["fp"], groups[region]["tn"], groups[region]["fn"]) == \
            (tp, fp, tn, fn)
        rates[region] = (tp + fp) / rows.sum()
    assert record["fairness"]["attributes"]["region"]["demographic_parity_difference"] == \
        pytest.approx(max(rates.values()) - min(rates.values()))
    # the scored rows are published beside metrics.json, with the label and the group
    scored = pd.read_parquet(tmp_path / "out" / "scored")
    assert len(scored) == len(frame) and {"label", "region", "prediction", "probability_yes"} <= set(scored.columns)


def test_regression_and_drift_on_s3(models: Models, seaweedfs, s3_bucket: str, tmp_path: Path, capsys):
    import fsspec

    options = {"key": S3_KEY, "secret": S3_SECRET, "endpoint_url": seaweedfs.endpoint}
    fs = fsspec.filesystem("s3", **options)
    frame, baseline = labeled_frame(2500, seed=21, shift=0.4), labeled_frame(2000, seed=22)
    write_frame(frame, tmp_path / "labeled.parquet", "parquet")
    write_frame(baseline[["id", *FEATURES]], tmp_path / "baseline.csv", "csv_header")
    fs.put(str(tmp_path / "labeled.parquet"), f"{s3_bucket}/metrics-in/labeled.parquet")
    fs.put(str(tmp_path / "baseline.csv"), f"{s3_bucket}/metrics-baseline/baseline.csv")
    options_file = tmp_path / "options.json"
    options_file.write_text(json.dumps({"source": options, "baseline": options, "output": options}))
    code, summary, err = run_cli(
        capsys, "--model", str(models.regressor_path), "--source", f"s3://{s3_bucket}/metrics-in/",
        "--output", f"s3://{s3_bucket}/metrics-out/", "--label-column", "target", "--task", "regression",
        "--baseline", json.dumps({"uri": f"s3://{s3_bucket}/metrics-baseline/", "format": "csv", "header": True}),
        "--replicas", "3", "--batch-size", "600", "--storage-options", str(options_file),
    )
    assert code == 0, err[-3000:]
    assert S3_SECRET not in json.dumps(summary) + err
    record = json.loads(fs.cat(f"{s3_bucket}/metrics-out/metrics.json"))
    y, pred = frame["target"].to_numpy(), models.regressor.predict(frame[FEATURES])
    r = record["regression"]
    assert r["rmse"] == pytest.approx(np.sqrt(skm.mean_squared_error(y, pred)), rel=1e-9)
    assert r["mae"] == pytest.approx(skm.mean_absolute_error(y, pred), rel=1e-9)
    assert r["r2"] == pytest.approx(skm.r2_score(y, pred), rel=1e-9)
    for q, value in r["residual_quantiles"].items():
        exact = np.quantile(y - pred, float(q), method="lower")
        assert abs(value - exact) <= r["residual_quantiles_relative_error"] * abs(exact) + 1e-9
    drift = record["drift"]
    base_pred = models.regressor.predict(baseline[FEATURES])
    for column, current, reference in [("f0", frame["f0"], baseline["f0"]), ("f3", frame["f3"], baseline["f3"]),
                                       ("prediction", pred, base_pred)]:
        found = drift["columns"][column]
        exact = ks_2samp(current, reference).statistic
        assert found["ks"] - 1e-12 <= exact <= found["ks"] + found["ks_max_error"] + 1e-12
        edges = found["psi_edges"]
        shares = [np.maximum(np.bincount(np.searchsorted(edges, v, side="left"), minlength=len(edges) + 1) / len(v),
                           1e-4) for v in (np.asarray(current), np.asarray(reference))]
        assert found["psi"] == pytest.approx(float(np.sum((shares[0] - shares[1]) * np.log(shares[0] / shares[1]))),
                                             rel=1e-9)
    assert drift["columns"]["f0"]["psi"] > drift["columns"]["f2"]["psi"]  # f0 shifted, f2 not
    assert summary["metrics"]["max_psi"] == drift["max_psi"] == max(
        drift["columns"][f]["psi"] for f in FEATURES)
    assert record["baseline"]["rows"] == 2000


def test_bad_input_is_a_clear_error_and_publishes_nothing(models: Models, tmp_path: Path, capsys):
    frame = labeled_frame(400, seed=31)
    write_frame(frame, tmp_path / "in" / "data.parquet", "parquet")
    write_frame(frame[["id", "f0", "f1"]], tmp_path / "narrow" / "data.parquet", "parquet")
    common = ["--source", f"file://{tmp_path}/in/", "--output", f"file://{tmp_path}/out/"]
    cases = [
        (["--model", str(models.classifier_path), "--label-column", "churned", "--task", "classification"],
         "column 'churned': the label_column column is missing; the input has columns ['id', 'f0'"),
        (["--model", str(models.classifier_path), "--label-column", "label", "--task", "classification",
          "--protected-attributes", "gender"], "column 'gender': the protected_attributes column is missing"),
        (["--model", str(models.regressor_path), "--label-column", "label", "--task", "regression"],
         "not a number"),
        (["--model", str(models.regressor_path), "--label-column", "target", "--task", "classification"],
         "task='regression'"),
        (["--model", str(models.classifier_path), "--label-column", "label", "--task", "classification",
          "--baseline", f"file://{tmp_path}/narrow/"], "The baseline"),
    ]
    for args, expected in cases:
        code, _, err = run_cli(capsys, *common, *args)
        assert code == 2, err[-2000:]
        assert expected in err, err[-2000:]
        assert not (tmp_path / "out" / "metrics.json").exists()
        assert not (tmp_path / "out" / "scored" / "_SUCCESS").exists()


def test_a_missed_threshold_fails_after_writing_metrics(models: Models, tmp_path: Path, capsys):
    frame = labeled_frame(500, seed=41)
    write_frame(frame, tmp_path / "in" / "data.parquet", "parquet")
    code, _, err = run_cli(
        capsys, "--model", str(models.classifier_path), "--source", f"file://{tmp_path}/in/",
        "--output", f"file://{tmp_path}/out/", "--label-column", "label", "--task", "classification",
        "--thresholds", '{"roc_auc": 0.999, "log_loss": 5}',
    )
    assert code == 2
    assert "missed 1 threshold(s): roc_auc = " in err and "needs roc_auc >= 0.999" in err
    record = read_metrics(tmp_path / "out")
    assert record["passed"] is False and [t["passed"] for t in record["thresholds"]] == [False, True]


# Permutation importance: the replicas sample the labeled rows, the driver merges the samples, real replica processes
# score the shuffled copies; every importance equals sklearn.inspection.permutation_importance on the same sample.
@pytest.mark.parametrize(("kind", "replicas"), [("classifier", 1), ("classifier", 3), ("regressor", 3)])
def test_permutation_importance_equals_scikit_learn(models: Models, tmp_path: Path, capsys, kind: str,
                                                    replicas: int):
    frame = labeled_frame(2400, seed=31)
    for i, part in enumerate([frame.iloc[:700], frame.iloc[700:]]):  # shards of unequal sizes
        write_frame(part, tmp_path / "in" / f"part-{i}.parquet", "parquet")
    label, task = ("label", "classification") if kind == "classifier" else ("target", "regression")
    code, summary, err = run_cli(
        capsys, "--model", str(models.path(kind)), "--source", f"file://{tmp_path}/in/",
        "--output", f"file://{tmp_path}/out/", "--label-column", label, "--task", task,
        "--replicas", str(replicas), "--batch-size", "300", "--importance-sample", "400",
        "--importance-repeats", "3", "--importance-seed", "7",
    )
    assert code == 0, err[-3000:]
    record = json.loads((tmp_path / "out" / "metrics.json").read_text())
    found = record["importance"]
    sample = pd.read_parquet(tmp_path / "out" / "importance" / "sample.parquet")
    # a uniform sample of the labeled rows, without repeats, of the size asked
    assert len(sample) == found["sample_rows"] == 400 and list(sample.columns) == [*FEATURES, label]
    original = frame.set_index(FEATURES)
    assert sample.set_index(FEATURES).index.is_unique and sample.set_index(FEATURES).index.isin(original.index).all()
    assert (sample[label].to_numpy() == original.loc[list(sample[FEATURES].itertuples(index=False)), label]).all()
    metric = "roc_auc" if kind == "classifier" else "r2"
    # the AUC of the positive class's probability, which the job has (scikit-learn's "roc_auc" scorer takes the
    # decision function when there is one, whose ties differ where expit rounds two scores to one probability)
    scoring = (lambda model, x, y: roc_auc_score(y == "yes", model.predict_proba(x)[:, 1])) \
        if kind == "classifier" else "r2"
    expected = permutation_importance(models.estimator(kind), sample[FEATURES], sample[label], scoring=scoring,
                                      n_repeats=3, random_state=7)
    assert found["metric"] == metric and found["repeats"] == 3 and found["seed"] == 7
    by_name = {f["feature"]: f for f in found["features"]}
    for i, name in enumerate(FEATURES):
        assert by_name[name]["importances"] == pytest.approx(expected.importances[i].tolist(), abs=1e-9)
        assert by_name[name]["mean"] == pytest.approx(expected.importances_mean[i], abs=1e-9)
        assert by_name[name]["std"] == pytest.approx(expected.importances_std[i], abs=1e-9)
    means = [f["mean"] for f in found["features"]]
    top = FEATURES[int(np.argmax(expected.importances_mean))]
    assert means == sorted(means, reverse=True) and found["features"][0]["feature"] == top
    # the XCom summary's top features, the report's plot; the shuffled copies are not left behind
    assert summary["top_features"][0] == {"feature": top, "importance": means[0], "std": found["features"][0]["std"]}
    assert 'data-plot="permutation importance' in (tmp_path / "out" / "report.html").read_text()
    assert sorted(p.name for p in (tmp_path / "out" / "importance").iterdir()) == ["sample.parquet"]


def test_importance_switched_off_and_bad_values(models: Models, tmp_path: Path, capsys):
    frame = labeled_frame(600, seed=32)
    write_frame(frame, tmp_path / "in" / "part-0.parquet", "parquet")
    args = ["--model", str(models.classifier_path), "--source", f"file://{tmp_path}/in/", "--label-column", "label",
            "--task", "classification"]
    code, summary, err = run_cli(capsys, *args, "--output", f"file://{tmp_path}/off/", "--importance-sample", "0")
    assert code == 0, err[-3000:]
    assert "importance" not in json.loads((tmp_path / "off" / "metrics.json").read_text())
    assert summary["top_features"] == [] and not (tmp_path / "off" / "importance").exists()
    for flag, value, words in [("--importance-sample", "-5", "importance_sample must be a number of rows"),
                               ("--importance-repeats", "0", "importance_repeats must be a whole number")]:
        code = cli.main(["metrics", *args, "--output", f"file://{tmp_path}/bad/", flag, value])
        assert code != 0 and words in capsys.readouterr().err
        assert not (tmp_path / "bad").exists()


# baseline="training": the training data recorded on the model version's MLflow run (the tags the training job sets,
# set here with MlflowClient), in the session's real registry.
def _register_with_training_tags(model, name: str, tags: dict[str, str]) -> str:
    import mlflow

    mlflow.set_experiment("metrics-training-baseline")
    with mlflow.start_run() as run:
        info = mlflow.sklearn.log_model(model, name="model", registered_model_name=name,
                                        serialization_format="cloudpickle", pip_requirements=["scikit-learn"])
        for key, value in tags.items():
            mlflow.MlflowClient().set_tag(run.info.run_id, key, value)
    return f"models:/{name}/{info.registered_model_version}"


def test_drift_against_the_training_data_recorded_with_the_model(models: Models, tmp_path: Path, capsys):
    from airflow_batch_scoring.io.files import list_inputs
    from airflow_batch_scoring.metrics.training_baseline import input_digest

    frame, training = labeled_frame(1500, seed=41, shift=0.3), labeled_frame(1200, seed=42)
    write_frame(frame, tmp_path / "in" / "part.parquet", "parquet")
    write_frame(training, tmp_path / "train" / "part.parquet", "parquet")
    train_uri = f"file://{tmp_path}/train/"
    digest = input_digest(list_inputs(train_uri))
    uri = _register_with_training_tags(models.classifier, "metrics-training-baseline", {
        "batch_scoring.training.source": json.dumps({"uri": train_uri, "format": "parquet"}),
        "batch_scoring.training.digest": "sha256:" + "0" * 64,  # recorded before the data changed
        "batch_scoring.training.rows": "1200",
        "batch_scoring.training.label_column": "label",
    })
    code, summary, err = run_cli(
        capsys, "--model", uri, "--source", f"file://{tmp_path}/in/", "--output", f"file://{tmp_path}/out/",
        "--label-column", "label", "--task", "classification", "--baseline", "training", "--replicas", "2",
        "--batch-size", "500", "--thresholds", '{"max_psi": 5}',
    )
    assert code == 0, err[-3000:]
    assert "WARNING: the training data" in err and "changed since the model was trained" in err
    record = read_metrics(tmp_path / "out")
    base = record["baseline"]
    assert base["rows"] == 1200 and base["input"]["uri"] == train_uri and base["digest"] == digest
    assert base["training"]["digest"] == "sha256:" + "0" * 64 and base["training"]["digest_now"] == digest
    assert base["training"]["digest_matches"] is False and base["training"]["label_column"] == "label"
    columns = record["drift"]["columns"]
    assert "label" not in columns and set(FEATURES) <= set(columns)
    proba = models.classifier.predict_proba
    for column, current, reference in [("f0", frame["f0"], training["f0"]),
                                       ("probability_yes", proba(frame[FEATURES])[:, 1],
                                        proba(training[FEATURES])[:, 1])]:
        found = columns[column]
        exact = ks_2samp(current, reference).statistic
        assert found["ks"] - 1e-12 <= exact <= found["ks"] + found["ks_max_error"] + 1e-12
        edges = found["psi_edges"]
        shares = [np.maximum(np.bincount(np.searchsorted(edges, v, side="left"), minlength=len(edges) + 1) / len(v),
                             1e-4) for v in (np.asarray(current), np.asarray(reference))]
        assert found["psi"] == pytest.approx(float(np.sum((shares[0] - shares[1]) * np.log(shares[0] / shares[1]))),
                                             rel=1e-9)
    assert summary["metrics"]["max_psi"] == record["drift"]["max_psi"]


def test_training_baseline_errors(models: Models, tmp_path: Path, capsys):
    write_frame(labeled_frame(300, seed=43), tmp_path / "in" / "part.parquet", "parquet")
    untagged = _register_with_training_tags(models.classifier, "metrics-no-training-tags", {})
    common = ["--source", f"file://{tmp_path}/in/", "--output", f"file://{tmp_path}/out/", "--label-column",
              "label", "--task", "classification", "--baseline", "training"]
    for model, words in [(str(models.classifier_path), "needs a model from an MLflow registry or run"),
                         (untagged, "records no training data")]:
        code, _, err = run_cli(capsys, "--model", model, *common)
        assert code != 0 and words in err and "Give baseline= a source spec" in err, err[-2000:]
        assert not (tmp_path / "out").exists()
