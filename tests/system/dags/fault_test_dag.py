"""A DAG for the fault tests: one scoring task that Airflow retries at once when it fails."""

from __future__ import annotations

from datetime import timedelta

import pendulum
from airflow.sdk import DAG

from airflow_batch_scoring.operators import BatchScoringOperator

with DAG(
    dag_id="batch_scoring_fault_test",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    render_template_as_native_obj=True,
    tags=["test"],
    params={"model": "", "source": {}, "sink": {}},
) as dag:
    BatchScoringOperator(
        task_id="score",
        model="{{ params.model }}",
        source="{{ params.source }}",
        sink="{{ params.sink }}",
        replicas=3,
        batch_size=100,
        passthrough_columns=["id"],
        retries=1,
        retry_delay=timedelta(seconds=0),
    )
