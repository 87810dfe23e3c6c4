"""A DAG for the secret audit: every connection it uses holds a planted, recognizable secret."""

from __future__ import annotations

import pendulum
from airflow.sdk import DAG

from airflow_batch_scoring.operators import BatchScoringOperator, ProcessArtifactOperator

with DAG(
    dag_id="batch_scoring_secrets_test",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    render_template_as_native_obj=True,
    tags=["test"],
    params={"model": "", "target": "", "source": {}, "sink": {}},
) as dag:
    process = ProcessArtifactOperator(
        task_id="process", model="{{ params.model }}", target="{{ params.target }}", mlflow_conn_id="mlflow_planted"
    )
    BatchScoringOperator(
        task_id="score",
        model=process.output,
        source="{{ params.source }}",
        sink="{{ params.sink }}",
        replicas=2,
        batch_size=200,
        passthrough_columns=["id"],
    )
