"""Quickstart (docs/quickstart.rst): score the iris model you registered, from data/iris.csv into scores/<date>/.

Needs the quickstart's own model and input (its train.py makes both), so the repository's ``.airflowignore`` keeps it
out of the example DAG folder; ``tests/system/test_docs_code.py`` runs it as the quickstart says.
"""

from __future__ import annotations

# [START quickstart_dag]
from pathlib import Path

import pendulum
from airflow.sdk import DAG

from airflow_batch_scoring.operators import BatchScoringOperator

HOME = Path(__file__).resolve().parent.parent  # the folder that holds dags/, data/ and scores/

with DAG("score_iris", schedule="@daily", start_date=pendulum.datetime(2026, 1, 1, tz="UTC"), catchup=False) as dag:
    BatchScoringOperator(
        task_id="score",
        model="models:/iris@champion",  # the alias is resolved to a fixed version once per run
        source={"uri": f"file://{HOME}/data/iris.csv"},
        sink={"uri": f"file://{HOME}/scores/" + "{{ ds }}/", "format": "csv"},
        passthrough_columns=["id"],
        predict_probabilities=True,
        replicas=2,
    )

if __name__ == "__main__":
    dag.test()
# [END quickstart_dag]
