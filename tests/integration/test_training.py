"""Training jobs for real: ``batch-scoring train`` runs the training process (a real child process), which fits the
user's callable on CSV or Parquet (pandas or Arrow batches) or a SQL table, and registers a real new version in the
real MLflow registry (SQLite store), with the alias and the training data's tags; the registered model predicts what
the callable's own model predicts on the same rows. Bad input fails with exit code 2, registering nothing."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq
import pytest

from airflow_batch_scoring import cli
from airflow_batch_scoring.io.files import list_inputs
from airflow_batch_scoring.metrics.training_baseline import input_digest
from airflow_batch_scoring.training.job import TAG_DIGEST, TAG_LABEL, TAG_ROWS, TAG_SOURCE
from tests.support import training
from tests.support.helpers import FEATURES, make_frame, write_frame


def labeled(rows: int, seed: int) -> pd.DataFrame:
    frame = make_frame(rows, seed=seed).drop(columns=["id"])
    rng = np.random.default_rng(seed)
    frame["label"] = (frame["f0"] + frame["f1"] / 10 + rng.normal(scale=0.5, size=rows) > 0).astype("int64")
    return frame


def train(capsys, *args: str) -> tuple[int, dict, str]:
    code = cli.main(["train", *args])
    out = capsys.readouterr()
    return code, (json.loads(out.out) if code == 0 else {}), out.err


def versions_of(name: str) -> list[str]:
    import mlflow

    return [str(v.version) for v in mlflow.MlflowClient().search_model_versions(f"name='{name}'")]


def registered(summary: dict):
    import mlflow

    return mlflow.pyfunc.load_model(summary["model_uri"])


@pytest.mark.parametrize(("fmt", "data", "function"), [
    ("csv_header", "pandas", "logistic"), ("parquet", "arrow", "forest_from_batches"),
])
def test_train_registers_a_version_that_predicts_as_the_callables_model(
    tmp_path: Path, capsys, replicas_import_tests, fmt: str, data: str, function: str
):
    import mlflow

    frame = labeled(1200, seed=11)
    ext = "csv" if fmt.startswith("csv") else "parquet"
    path = tmp_path / "in" / f"part.{ext}"
    write_frame(frame, path, fmt)
    name = f"trained-{ext}"
    code, summary, err = train(
        capsys, "--training", f"tests.support.training:{function}", "--source", (tmp_path / "in").as_uri() + "/",
        "--label-column", "LABEL", "--register-as", name, "--data", data, "--experiment", "training-tests",
        *(["--source-format", "csv", "--header"] if ext == "csv" else []), "--batch-size", "500",
    )
    assert code == 0, err[-3000:]
    assert summary["model_uri"] == f"models:/{name}/{summary['version']}" and summary["rows"] == len(frame)
    assert summary["label_column"] == "label" and summary["flavor"] == "sklearn"
    assert versions_of(name) == [summary["version"]]
    client = mlflow.MlflowClient()
    assert str(client.get_model_version_by_alias(name, "challenger").version) == summary["version"]
    # the same callable, on the same rows as Arrow reads them, fits the same model
    table = pa_csv.read_csv(path) if ext == "csv" else pq.read_table(path)
    own = getattr(training, function)(table.to_pandas() if data == "pandas" else table.to_batches(), "label")
    x = frame[FEATURES]
    np.testing.assert_array_equal(registered(summary).predict(x), own.predict(x))
    # the run records the training data (the contract with metrics jobs' baseline="training")
    tags = client.get_run(summary["run_id"]).data.tags
    source = json.loads(tags[TAG_SOURCE])
    assert source["uri"] == (tmp_path / "in").as_uri() + "/" and source["format"] == ext
    # the digest a metrics job's baseline="training" compares with the input's now
    assert tags[TAG_DIGEST] == summary["digest"] == input_digest(list_inputs(source["uri"], {}))
    assert tags[TAG_ROWS] == str(len(frame)) and tags[TAG_LABEL] == "label"
    model_info = mlflow.models.get_model_info(summary["model_uri"])
    assert [c.name for c in model_info.signature.inputs.inputs] == FEATURES  # the label is not an input


def test_sql_source_and_a_pyfunc_model_digest_the_rows(lite, tmp_path: Path, replicas_import_tests):
    """A SQL table has no fingerprint: the digest is the rows'; a model that is not scikit-learn's is a pyfunc one."""
    import mlflow

    from airflow_batch_scoring.specs import parse_data_spec
    from airflow_batch_scoring.training.run import LocalTrainer, plan_training, run_training

    frame = labeled(300, seed=12)
    lite.load(frame, "labeled")
    secrets = {"sqlalchemy_url": lite.url}
    source = parse_data_spec({"uri": "sqlite:///" + lite.url.split(":///", 1)[1], "table": "labeled"}, "source")
    job = plan_training(job_id="sql", source=source, label_column="label", training="tests.support.training:mean_model",
                        register_as="trained-sql", alias="candidate", secrets=secrets)
    assert job.digest is None  # a table has no listing to fingerprint
    first = run_training(job, LocalTrainer(), {"source": secrets})
    assert first["flavor"] == "pyfunc" and first["rows"] == len(frame)
    assert first["digest"].startswith("sha256:") and len(first["digest"]) == 71  # the rows' own digest
    assert str(mlflow.MlflowClient().get_model_version_by_alias("trained-sql", "candidate").version) == first["version"]
    predicted = mlflow.pyfunc.load_model(first["model_uri"]).predict(frame[FEATURES])
    np.testing.assert_allclose(predicted, frame["label"].mean())
    assert json.loads(mlflow.MlflowClient().get_run(first["run_id"]).data.tags[TAG_SOURCE])["table"] == "labeled"
    # a retry of the same task (same job id) registers nothing new: the same version, its alias set again
    mlflow.MlflowClient().delete_registered_model_alias("trained-sql", "candidate")
    again = run_training(job, LocalTrainer(), {"source": secrets})
    assert again["reused"] is True and (again["version"], again["run_id"]) == (first["version"], first["run_id"])
    assert versions_of("trained-sql") == [first["version"]]
    assert str(mlflow.MlflowClient().get_model_version_by_alias("trained-sql", "candidate").version) == first["version"]


def test_a_retry_reuses_the_version_unless_the_input_changed(tmp_path: Path, replicas_import_tests):
    from airflow_batch_scoring.specs import parse_data_spec
    from airflow_batch_scoring.training.run import LocalTrainer, plan_training, run_training

    folder = tmp_path / "in"
    write_frame(labeled(400, seed=13), folder / "part-0.parquet", "parquet")
    source = parse_data_spec({"uri": folder.as_uri() + "/", "format": "parquet"}, "source")

    def attempt() -> dict:
        job = plan_training(job_id="dag.train.-1.run-1", source=source, label_column="label",
                            training="tests.support.training:logistic", register_as="trained-retry", secrets={})
        return run_training(job, LocalTrainer(), {"source": {}})

    first, retry = attempt(), attempt()
    assert first["reused"] is False and retry["reused"] is True and retry["version"] == first["version"]
    assert retry["rows"] == first["rows"] == 400 and retry["digest"] == first["digest"]
    write_frame(labeled(500, seed=14), folder / "part-1.parquet", "parquet")  # new data, the task cleared
    third = attempt()
    assert third["reused"] is False and versions_of("trained-retry") == sorted([first["version"], third["version"]],
                                                                            key=int, reverse=True)
    assert third["rows"] == 900


@pytest.mark.parametrize(("function", "label", "expected"), [
    ("tests.support.training:returns_none", "label", "returned None, not a fitted model"),
    ("tests.support.training:logistic", "churned", "the label_column column is missing"),
])
def test_bad_input_fails_clearly_and_registers_nothing(
    tmp_path: Path, capsys, replicas_import_tests, function: str, label: str, expected: str
):
    write_frame(labeled(50, seed=13), tmp_path / "in.parquet", "parquet")
    name = f"never-{hashlib.sha1(function.encode() + label.encode()).hexdigest()[:8]}"
    code, _, err = train(capsys, "--training", function, "--source", (tmp_path / "in.parquet").as_uri(),
                         "--label-column", label, "--register-as", name)
    assert code == 2 and expected in err, err[-2000:]
    assert versions_of(name) == []
