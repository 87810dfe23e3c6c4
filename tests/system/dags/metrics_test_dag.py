"""A DAG for the tests: a metrics task whose every parameter comes from the run's conf, with retries (that a missed
threshold or bad input must not use)."""

from __future__ import annotations

from datetime import timedelta

import pendulum
from airflow.sdk import DAG

from airflow_batch_scoring.operators import BatchMetricsOperator

with DAG(
    dag_id="batch_metrics_test",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    render_template_as_native_obj=True,
    tags=["test"],
    params={"model": "", "source": {}, "output": {}, "label_column": "label", "task": "", "protected": [],
            "baseline": None, "thresholds": {}, "replicas": 1, "importance_sample": 0},
) as dag:
    BatchMetricsOperator(
        task_id="metrics",
        model="{{ params.model }}",
        source="{{ params.source }}",
        output="{{ params.output }}",
        label_column="{{ params.label_column }}",
        task="{{ params.task }}",
        protected_attributes="{{ params.protected }}",
        baseline="{{ params.baseline }}",
        thresholds="{{ params.thresholds }}",
        replicas="{{ params.replicas }}",
        importance_sample="{{ params.importance_sample }}",
        importance_repeats=2,
        batch_size=400,
        retries=2,
        retry_delay=timedelta(seconds=0),
    )
