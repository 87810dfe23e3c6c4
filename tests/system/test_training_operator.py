"""BatchTrainingOperator inside a real Airflow (``dag.test()``): a training task registers a real new version with
its alias through an ``mlflow`` connection (whose token reaches the training process on stdin only), its XCom names
the version, run, rows and digest; a callable that returns no model fails at once (no retry), registering nothing."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from tests.support import training
from tests.support.dag_runs import xcom_of
from tests.support.helpers import FEATURES, make_frame, write_frame
from tests.support.registry import TOKEN


@pytest.fixture(scope="module")
def training_dag(airflow_db):
    from tests.system.dags.training_test_dag import dag

    return dag


def conf(**values) -> dict:
    """A run's conf with every param (``dag.test()`` keeps an earlier run's values for the params left out)."""
    return {"training": "tests.support.training:logistic", "label_column": "label", "alias": "challenger",
            "data": "pandas", "training_kwargs": {}, **values}


def labeled(rows: int, seed: int):
    frame = make_frame(rows, seed=seed).drop(columns=["id"])
    frame["label"] = (frame["f0"] - frame["f4"] / 3 > 0).astype("int64")
    return frame


def test_training_task_registers_a_version_with_its_alias(training_dag, tmp_path: Path, mlflow_connection,
                                                          replicas_import_tests, capfd):
    import mlflow

    frame = labeled(800, seed=71)
    write_frame(frame, tmp_path / "in" / "part.parquet", "parquet")
    dag_run = training_dag.test(run_conf=conf(
        source={"uri": (tmp_path / "in").as_uri() + "/"}, register_as="trained-in-dag", alias="next",
        training_kwargs={"c": 0.5},
    ))
    assert dag_run.state == "success"
    summary = xcom_of(dag_run, "train")
    client = mlflow.MlflowClient()
    assert str(client.get_model_version_by_alias("trained-in-dag", "next").version) == summary["version"]
    assert summary["model_uri"] == f"models:/trained-in-dag/{summary['version']}" and summary["rows"] == len(frame)
    assert summary["run_id"] and summary["digest"].startswith("sha256:")
    own = training.logistic(pq.read_table(tmp_path / "in" / "part.parquet").to_pandas(), "label", c=0.5)
    np.testing.assert_array_equal(mlflow.pyfunc.load_model(summary["model_uri"]).predict(frame[FEATURES]),
                                  own.predict(frame[FEATURES]))
    assert TOKEN not in "".join(capfd.readouterr())


def test_a_callable_without_a_model_fails_without_retry_and_registers_nothing(
    training_dag, tmp_path: Path, mlflow_connection, replicas_import_tests, capfd
):
    import mlflow

    write_frame(labeled(100, seed=72), tmp_path / "in.parquet", "parquet")
    dag_run = training_dag.test(run_conf=conf(
        training="tests.support.training:returns_text", source={"uri": (tmp_path / "in.parquet").as_uri()},
        register_as="never-in-dag",
    ))
    assert dag_run.state == "failed"
    ti = dag_run.get_task_instance("train")
    assert (ti.state, ti.try_number) == ("failed", 1)
    text = "".join(capfd.readouterr())
    assert "returned a builtins.str, which has no predict method" in text and "not retried" in text
    assert mlflow.MlflowClient().search_model_versions("name='never-in-dag'") == []
