"""A DAG for the tests: every parameter comes from the run's conf, rendered as native objects."""

from __future__ import annotations

import pendulum
from airflow.sdk import DAG

from airflow_batch_scoring.operators import BatchScoringOperator

with DAG(
    dag_id="batch_scoring_test",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    render_template_as_native_obj=True,
    tags=["test"],
    params={"model": "", "source": {}, "sink": {}, "replicas": 1, "passthrough": [], "probabilities": False,
            "part_size": 16 * 1024 * 1024},
) as dag:
    BatchScoringOperator(
        task_id="score",
        model="{{ params.model }}",
        source="{{ params.source }}",
        sink="{{ params.sink }}",
        replicas="{{ params.replicas }}",
        batch_size=500,
        passthrough_columns="{{ params.passthrough }}",
        part_size="{{ params.part_size }}",
    )
