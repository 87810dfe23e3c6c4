"""A DAG for tests/test_stores.py: process a model into an object-store target, then score it from there.

The scoring task finds nothing of the processing task on its worker's disk: it fetches the artifact from the store.
"""

from __future__ import annotations

import pendulum
from airflow.sdk import DAG

from airflow_batch_scoring.operators import BatchScoringOperator, ProcessArtifactOperator

with DAG(
    dag_id="store_artifact_test",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    render_template_as_native_obj=True,
    tags=["test"],
    params={"model": "", "target": "", "conn_id": "", "source": {}, "sink": {}},
) as dag:
    process = ProcessArtifactOperator(
        task_id="process", model="{{ params.model }}", target="{{ params.target }}",
        target_conn_id="{{ params.conn_id }}",
    )
    BatchScoringOperator(
        task_id="score", model=process.output, source="{{ params.source }}", sink="{{ params.sink }}", replicas=2,
        batch_size=100, passthrough_columns=["id"],
    )
