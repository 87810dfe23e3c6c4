"""A DAG for tests/test_stages.py: score ``models:/<name>`` at the stage given in the run's conf."""

from __future__ import annotations

import pendulum
from airflow.sdk import DAG

from airflow_batch_scoring.operators import BatchScoringOperator

with DAG(
    dag_id="batch_scoring_stage_test",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    render_template_as_native_obj=True,
    tags=["test"],
    params={"model": "", "stage": "", "source": {}, "sink": {}},
) as dag:
    BatchScoringOperator(
        task_id="score",
        model="{{ params.model }}",
        stage="{{ params.stage }}",
        source="{{ params.source }}",
        sink="{{ params.sink }}",
        batch_size=250,
        passthrough_columns=["id"],
    )
