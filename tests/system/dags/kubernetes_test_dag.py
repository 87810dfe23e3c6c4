"""A DAG for the Kubernetes runtime's tests: the same task on ``runtime`` from the run's conf (``local`` or
``kubernetes``), every parameter rendered as a native object."""

from __future__ import annotations

from datetime import timedelta

import pendulum
from airflow.sdk import DAG

from airflow_batch_scoring.operators import BatchScoringOperator

with DAG(
    dag_id="batch_scoring_kubernetes_test",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    render_template_as_native_obj=True,
    tags=["test"],
    params={"model": "", "source": {}, "sink": {}, "replicas": 1, "passthrough": [], "kubernetes": {},
            "deferrable": False, "poll_interval": 10.0},
) as dag:
    for runtime in ("local", "kubernetes"):
        BatchScoringOperator(
            task_id=f"score_{runtime}",
            runtime=runtime,
            model="{{ params.model }}",
            source="{{ params.source }}",
            sink="{{ params.sink[task.runtime] }}",
            replicas="{{ params.replicas }}",
            batch_size=400,
            passthrough_columns="{{ params.passthrough }}",
            kubernetes="{{ params.kubernetes }}",
            deferrable="{{ params.deferrable }}",
            poll_interval="{{ params.poll_interval }}",
            retries=3,  # for what a retry can change: a user error fails at once (tests/test_kubernetes_run.py)
            retry_delay=timedelta(seconds=0),
        )
