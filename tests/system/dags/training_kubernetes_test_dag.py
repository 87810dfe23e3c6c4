"""A DAG for the tests: a training task on the ``kubernetes`` runtime, every parameter from the run's conf, with
retries (that bad input must not use)."""

from __future__ import annotations

from datetime import timedelta

import pendulum
from airflow.sdk import DAG

from airflow_batch_scoring.operators import BatchTrainingOperator

with DAG(
    dag_id="batch_training_kubernetes_test",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    render_template_as_native_obj=True,
    tags=["test"],
    params={"training": "tests.support.training:logistic", "source": {}, "register_as": "trained",
            "training_kwargs": {}, "kubernetes": {}},
) as dag:
    BatchTrainingOperator(
        task_id="train",
        runtime="kubernetes",
        training="{{ params.training }}",
        source="{{ params.source }}",
        label_column="label",
        register_as="{{ params.register_as }}",
        alias="challenger",
        training_kwargs="{{ params.training_kwargs }}",
        experiment="training-operator-tests",
        mlflow_conn_id="mlflow_test",
        kubernetes="{{ params.kubernetes }}",
        poll_interval=0.2,
        retries=2,
        retry_delay=timedelta(seconds=0),
    )
