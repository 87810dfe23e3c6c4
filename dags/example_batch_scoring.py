"""Daily: score the day's customers with the champion churn model, on the embedded default runtime.

Runs as it is: the first task registers the demo model (``demo-churn``, alias ``champion``, in a local MLflow store)
if it is not there and lands the day's input; the second scores it with two local replicas into a folder per
logical date (``{{ ds }}``).

    python dags/example_batch_scoring.py      # runs the DAG once with dag.test()
"""

from __future__ import annotations

from datetime import timedelta

import pendulum
from airflow.sdk import DAG, task
from scoring_demo import COLUMNS, DEMO_DIR, MODEL_URI, OWNER, TAGS, TRACKING_URI, demo_uri

from airflow_batch_scoring.operators import BatchScoringOperator

with DAG(
    dag_id="example_batch_scoring",
    description="Score the day's customers with the champion churn model",
    doc_md=__doc__,
    schedule="@daily",
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    default_args={"owner": OWNER, "retries": 1, "retry_delay": timedelta(minutes=1)},
    tags=[*TAGS, "daily"],
) as dag:

    @task
    def prepare_demo(ds: str | None = None) -> str:
        """Register the demo model if needed and land the day's input (CSV without header: id, x0..x7)."""
        import scoring_demo

        scoring_demo.ensure_demo_model()
        uri = demo_uri("input", str(ds), "customers.csv")
        scoring_demo.write_input(uri, key=f"daily-{ds}", rows=50_000)
        return uri

    # [START howto_operator_batch_scoring]
    score = BatchScoringOperator(
        task_id="score_customers",
        model=MODEL_URI,
        mlflow_tracking_uri=TRACKING_URI,
        source={"uri": demo_uri("input", "{{ ds }}", folder=True), "format": "csv", "columns": COLUMNS},
        sink={"uri": demo_uri("scores", "{{ ds }}", folder=True), "format": "csv", "header": True},
        passthrough_columns=["id"],
        predict_probabilities=True,
        replicas=2,
        batch_size=20_000,
    )
    # [END howto_operator_batch_scoring]
    prepare_demo() >> score


if __name__ == "__main__":
    run = dag.test()
    print(f"Run {run.run_id} finished: {run.state}; output in {DEMO_DIR / 'scores'}")
