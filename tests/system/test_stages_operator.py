"""Model stages through the operator in ``dag.test()``: one parameter picks the stage's model and runtime."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="module")
def staged_model(models) -> str:
    """``stage-churn``: version 1 is the classifier (alias ``prod``), version 2 the regressor (alias ``dev``)."""
    import mlflow
    from mlflow.models import infer_signature

    from tests.support.helpers import FEATURES, make_frame

    x = make_frame(50, seed=5)[FEATURES]
    client = mlflow.MlflowClient()
    for estimator in (models.classifier, models.regressor):
        with mlflow.start_run():
            mlflow.sklearn.log_model(estimator, name="model", signature=infer_signature(x, estimator.predict(x)),
                                     registered_model_name="stage-churn", serialization_format="cloudpickle")
    versions = sorted(int(v.version) for v in client.search_model_versions("name='stage-churn'"))
    client.set_registered_model_alias("stage-churn", "prod", str(versions[-2]))
    client.set_registered_model_alias("stage-churn", "dev", str(versions[-1]))
    return "stage-churn"


@pytest.mark.parametrize(("stage", "kind", "replicas"), [("PROD", "classifier", 2), ("dev", "regressor", 1)])
def test_one_parameter_scores_the_stage_model_on_the_stage_runtime(
    airflow_db, models, staged_model, stage, kind, replicas, tmp_path, monkeypatch
):
    from tests.support.dag_runs import xcom_of
    from tests.support.helpers import make_frame, read_output, source_spec, write_frame
    from tests.support.scoring import check_predictions

    monkeypatch.setenv("AIRFLOW__BATCH_SCORING__STAGES", '{"PROD": {"alias": "prod", "replicas": 2}, "DEV": {}}')
    from tests.system.dags.stage_test_dag import dag

    frame = make_frame(1500, seed=31)
    write_frame(frame, tmp_path / "in.csv", "csv")
    dag_run = dag.test(run_conf={
        "model": f"models:/{staged_model}", "stage": stage,
        "source": source_spec("csv", (tmp_path / "in.csv").as_uri()), "sink": {"uri": (tmp_path / "out").as_uri()},
    })
    assert dag_run.state == "success"
    summary = xcom_of(dag_run)
    assert summary["model_uri"].startswith(f"models:/{staged_model}/") and summary["replicas"] == replicas
    output = read_output(tmp_path / "out", "csv", ["id", "prediction"])
    check_predictions(frame, output, models.estimator(kind))
