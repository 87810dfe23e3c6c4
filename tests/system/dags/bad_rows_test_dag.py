"""A DAG for the bad-row tests: the on_bad_rows policy and its limits come from the run's conf."""

from __future__ import annotations

import pendulum
from airflow.sdk import DAG

from airflow_batch_scoring.operators import BatchScoringOperator

with DAG(
    dag_id="batch_scoring_bad_rows_test",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    render_template_as_native_obj=True,
    tags=["test"],
    params={"model": "", "source": {}, "sink": {}, "replicas": 1, "on_bad_rows": "fail", "max_bad_rows": None,
            "max_bad_fraction": None},
) as dag:
    BatchScoringOperator(
        task_id="score",
        model="{{ params.model }}",
        source="{{ params.source }}",
        sink="{{ params.sink }}",
        replicas="{{ params.replicas }}",
        batch_size=100,
        passthrough_columns=["id"],
        part_size=4096,
        on_bad_rows="{{ params.on_bad_rows }}",
        max_bad_rows="{{ params.max_bad_rows }}",
        max_bad_fraction="{{ params.max_bad_fraction }}",
    )
