"""A DAG for the tests: the same metrics task on the ``local`` and the ``kubernetes`` runtime, every parameter from the
run's conf."""

from __future__ import annotations

import pendulum
from airflow.sdk import DAG

from airflow_batch_scoring.operators import BatchMetricsOperator

with DAG(
    dag_id="batch_metrics_kubernetes_test",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    render_template_as_native_obj=True,
    tags=["test"],
    params={"model": "", "source": {}, "output": {}, "baseline": None, "replicas": 1, "kubernetes": {}},
) as dag:
    for runtime in ("local", "kubernetes"):
        BatchMetricsOperator(
            task_id=f"metrics_{runtime}",
            runtime=runtime,
            model="{{ params.model }}",
            source="{{ params.source }}",
            output="{{ params.output[task.runtime] }}",
            label_column="label",
            task="classification",
            protected_attributes=["region"],
            baseline="{{ params.baseline }}",
            replicas="{{ params.replicas }}",
            batch_size=300,
            kubernetes="{{ params.kubernetes }}",
            poll_interval=0.2,
            importance_sample=0,  # the importance's own job is tested on local replicas
        )
