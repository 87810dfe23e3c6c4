"""A DAG for tests/test_artifacts_mlflow.py: process ``models:/<model>@champion``, move the alias, then score.

The alias moves between processing and scoring, so the test can check that the pinned version is scored throughout.
"""

from __future__ import annotations

import pendulum
from airflow.sdk import DAG, task

from airflow_batch_scoring.operators import BatchScoringOperator, ProcessArtifactOperator

with DAG(
    dag_id="artifact_pinning_test",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    render_template_as_native_obj=True,
    tags=["test"],
    params={"model_name": "", "target": "", "source": {}, "sink": {}, "move_to": "2"},
) as dag:
    process = ProcessArtifactOperator(
        task_id="process", model="models:/{{ params.model_name }}@champion", target="{{ params.target }}"
    )

    @task(task_id="move_alias")
    def move_alias(params=None) -> None:
        import mlflow

        mlflow.MlflowClient().set_registered_model_alias(params["model_name"], "champion", params["move_to"])

    score = BatchScoringOperator(
        task_id="score",
        model=process.output,
        source="{{ params.source }}",
        sink="{{ params.sink }}",
        replicas=2,
        batch_size=100,
        passthrough_columns=["id"],
    )
    process >> move_alias() >> score
