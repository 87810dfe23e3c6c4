"""DAGs for tests/test_retries.py: each task may be retried three times, at once."""

from __future__ import annotations

from datetime import timedelta

import pendulum
from airflow.sdk import DAG

from airflow_batch_scoring.operators import BatchScoringOperator, ProcessArtifactOperator

RETRIES = {"retries": 3, "retry_delay": timedelta(seconds=0)}

with DAG(
    dag_id="batch_scoring_retry_test",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    render_template_as_native_obj=True,
    tags=["test"],
    params={"model": "", "source": {}, "sink": {}, "passthrough": ["id"]},
) as score_dag:
    BatchScoringOperator(
        task_id="score",
        model="{{ params.model }}",
        source="{{ params.source }}",
        sink="{{ params.sink }}",
        replicas=2,
        batch_size=100,
        passthrough_columns="{{ params.passthrough }}",
        **RETRIES,
    )

with DAG(
    dag_id="process_artifact_retry_test",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    render_template_as_native_obj=True,
    tags=["test"],
    params={"model": "", "target": ""},
) as process_dag:
    ProcessArtifactOperator(task_id="process", model="{{ params.model }}", target="{{ params.target }}", **RETRIES)
