"""A DAG for the tests: a training task whose every parameter comes from the run's conf, with retries (that bad
input must not use)."""

from __future__ import annotations

from datetime import timedelta

import pendulum
from airflow.sdk import DAG

from airflow_batch_scoring.operators import BatchTrainingOperator

with DAG(
    dag_id="batch_training_test",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    render_template_as_native_obj=True,
    tags=["test"],
    params={"training": "tests.support.training:logistic", "source": {}, "label_column": "label",
            "register_as": "trained", "alias": "challenger", "data": "pandas", "training_kwargs": {},
            "mlflow_conn_id": None},
) as dag:
    BatchTrainingOperator(
        task_id="train",
        training="{{ params.training }}",
        source="{{ params.source }}",
        label_column="{{ params.label_column }}",
        register_as="{{ params.register_as }}",
        alias="{{ params.alias }}",
        data="{{ params.data }}",
        training_kwargs="{{ params.training_kwargs }}",
        experiment="training-operator-tests",
        mlflow_conn_id="mlflow_test",
        retries=2,
        retry_delay=timedelta(seconds=0),
    )
