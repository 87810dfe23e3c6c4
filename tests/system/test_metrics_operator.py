"""BatchMetricsOperator inside a real Airflow (``dag.test()``): a registry model's metrics (its task told by its
signature) equal scikit-learn's on the same rows, land in metrics.json, XCom and the model version's MLflow run (its
drift against the training data recorded on that run, its permutation importance on a sample); a
missed threshold fails the task at once (no retry) after writing metrics.json; bad input fails at once, publishing
nothing."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from sklearn import metrics as skm

from tests.support.dag_runs import xcom_of
from tests.support.helpers import FEATURES, Models, make_frame, write_frame


@pytest.fixture(scope="module")
def metrics_dag(airflow_db):
    from tests.system.dags.metrics_test_dag import dag

    return dag


def conf(**values) -> dict:
    """A run's conf with every param (``dag.test()`` keeps an earlier run's values for the params left out)."""
    return {"label_column": "label", "task": "", "protected": [], "baseline": None, "thresholds": {}, "replicas": 1,
            "importance_sample": 0, **values}


def labeled(rows: int, seed: int):
    frame = make_frame(rows, seed=seed)
    rng = np.random.default_rng(seed)
    frame["label"] = np.where(frame["f0"] + frame["f1"] / 10 + rng.normal(scale=0.5, size=rows) > 0, "yes", "no")
    frame["region"] = rng.choice(["north", "south"], size=rows)
    return frame


def test_registry_model_metrics_in_dag_test(metrics_dag, models: Models, tmp_path: Path):
    import mlflow

    from airflow_batch_scoring.io.files import list_inputs
    from airflow_batch_scoring.metrics.training_baseline import input_digest

    frame, baseline = labeled(1500, seed=61), labeled(1000, seed=62)
    write_frame(frame, tmp_path / "in" / "part.parquet", "parquet")
    write_frame(baseline, tmp_path / "train" / "part.parquet", "parquet")
    out = tmp_path / "out"
    # baseline="training": the tags the training job records on the version's run, set here
    client, train_uri = mlflow.MlflowClient(), (tmp_path / "train").as_uri() + "/"
    run_of_version = client.get_model_version_by_alias(models.registry_name, "champion").run_id
    digest = input_digest(list_inputs(train_uri))
    for key, value in {"source": json.dumps({"uri": train_uri}), "digest": digest, "rows": "1000",
                       "label_column": "label"}.items():
        client.set_tag(run_of_version, f"batch_scoring.training.{key}", value)
    dag_run = metrics_dag.test(run_conf=conf(**{
        "model": f"models:/{models.registry_name}@champion",
        "source": {"uri": (tmp_path / "in").as_uri() + "/"},
        "output": {"uri": out.as_uri() + "/"},
        "protected": ["region"],
        "baseline": "training",
        "thresholds": {"accuracy": 0.6, "max_psi": 0.5, "max_demographic_parity_difference": 0.5},
        "replicas": 2,
        "importance_sample": 300,
    }))
    assert dag_run.state == "success"
    summary = xcom_of(dag_run, "metrics")
    record = json.loads((out / "metrics.json").read_text())
    x, y = frame[FEATURES], frame["label"].to_numpy()
    pred = models.classifier.predict(x)
    assert record["task"] == "classification"  # from the MLflow signature
    assert record["model"]["resolved_uri"] == f"models:/{models.registry_name}/{models.registry_version}"
    assert record["classification"]["accuracy"] == pytest.approx(skm.accuracy_score(y, pred), abs=1e-12)
    assert record["classification"]["f1_macro"] == pytest.approx(skm.f1_score(y, pred, average="macro"), abs=1e-12)
    assert summary["metrics"]["accuracy"] == record["classification"]["accuracy"]
    assert summary["passed"] is True and all(t["passed"] for t in summary["thresholds"])
    assert set(record["drift"]["columns"]) >= {*FEATURES, "prediction", "probability_yes"}
    assert "label" not in record["drift"]["columns"] and record["baseline"]["input"]["uri"] == train_uri
    assert record["baseline"]["training"] == {"run_id": run_of_version, "digest": digest, "rows": 1000,
                                              "label_column": "label", "digest_now": digest, "digest_matches": True}
    # the permutation importance: the sample merged over both replicas, in metrics.json and the XCom
    importance = record["importance"]
    assert importance["metric"] == "roc_auc" and importance["sample_rows"] == 300 and importance["repeats"] == 2
    assert {f["feature"] for f in importance["features"]} == set(FEATURES)
    assert summary["top_features"] == [{"feature": f["feature"], "importance": f["mean"], "std": f["std"]}
                                       for f in importance["features"][:5]]
    # the metrics are on the model version's run
    run_id = summary["mlflow_run_id"]
    logged = mlflow.MlflowClient().get_run(run_id).data.metrics
    assert logged["batch_metrics.accuracy"] == pytest.approx(record["classification"]["accuracy"])
    assert logged["batch_metrics.max_psi"] == pytest.approx(record["drift"]["max_psi"])


def test_missed_threshold_fails_without_retry(metrics_dag, models: Models, tmp_path: Path, capfd):
    write_frame(labeled(600, seed=63), tmp_path / "in.parquet", "parquet")
    out = tmp_path / "out"
    dag_run = metrics_dag.test(run_conf=conf(**{
        "model": str(models.classifier_path), "task": "classification",
        "source": {"uri": (tmp_path / "in.parquet").as_uri()}, "output": {"uri": out.as_uri()},
        "thresholds": {"f1_macro": 0.999},
    }))
    assert dag_run.state == "failed"
    ti = dag_run.get_task_instance("metrics")
    assert (ti.state, ti.try_number) == ("failed", 1)
    text = "".join(capfd.readouterr())
    assert "missed 1 threshold(s): f1_macro = " in text and "not retried" in text
    assert json.loads((out / "metrics.json").read_text())["passed"] is False


def test_missing_label_column_fails_without_retry_and_publishes_nothing(metrics_dag, models: Models,
                                                                        tmp_path: Path, capfd):
    write_frame(labeled(300, seed=64), tmp_path / "in.parquet", "parquet")
    out = tmp_path / "out"
    dag_run = metrics_dag.test(run_conf=conf(**{
        "model": str(models.classifier_path), "task": "classification", "label_column": "churned",
        "source": {"uri": (tmp_path / "in.parquet").as_uri()}, "output": {"uri": out.as_uri()},
    }))
    assert dag_run.state == "failed"
    ti = dag_run.get_task_instance("metrics")
    assert (ti.state, ti.try_number) == ("failed", 1)
    text = "".join(capfd.readouterr())
    assert "the label_column column is missing" in text and "not retried" in text
    assert not (out / "metrics.json").exists() and not (out / "scored" / "_SUCCESS").exists()


ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
PLOTS = {"confusion matrix", "calibration", "selection rate by region", "PSI per column",
         "permutation importance (roc_auc drop)"}


@pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (.ci/run installs it)")
def test_the_report_renders_in_chromium_with_every_plot(metrics_dag, models: Models, tmp_path: Path):
    from playwright.sync_api import sync_playwright

    write_frame(labeled(1200, seed=65), tmp_path / "in" / "part.parquet", "parquet")
    write_frame(labeled(800, seed=66), tmp_path / "train" / "part.parquet", "parquet")
    out = tmp_path / "out"
    dag_run = metrics_dag.test(run_conf=conf(**{
        "model": str(models.classifier_path), "task": "classification",
        "source": {"uri": (tmp_path / "in").as_uri() + "/"}, "output": {"uri": out.as_uri() + "/"},
        "protected": ["region"], "baseline": {"uri": (tmp_path / "train").as_uri() + "/"},
        "thresholds": {"roc_auc": 0.6}, "importance_sample": 200,
    }))
    assert dag_run.state == "success"
    summary = xcom_of(dag_run, "metrics")
    assert summary["report_uri"] == out.as_uri() + "/report.html"
    assert xcom_of(dag_run, "metrics", "batch_metrics_report") == out.as_uri() + "/report.html"  # the extra link
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-dev-shm-usage"])
        try:
            page = browser.new_page(viewport={"width": 1200, "height": 900})
            page.goto(summary["report_uri"])
            plots = page.locator("[data-plot]")
            names = {plots.nth(i).get_attribute("data-plot") for i in range(plots.count())}
            assert PLOTS <= names and any(n.startswith("ROC curve (AUC") for n in names) and \
                any(n.startswith("precision-recall curve") for n in names), names
            for i in range(plots.count()):
                box = plots.nth(i).bounding_box()
                assert box is not None and box["width"] > 50 and box["height"] > 50, plots.nth(i).get_attribute(
                    "data-plot")
            assert page.locator("polyline").count() >= 3  # ROC, PR, calibration
            assert "Every threshold met" in page.inner_text("body")
            page.screenshot(path=str(ARTIFACTS / "metrics-report.png"), full_page=True)
        finally:
            browser.close()
