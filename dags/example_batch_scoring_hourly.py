"""Hourly, in order: each hour's input is scored only after the previous hour's scoring succeeded.

Every 3600 s, each run has one hour as its data interval (``DeltaDataIntervalTimetable``: a bare timedelta in
Airflow 3 triggers at the time but gives no interval); the input and output paths are templated from it
(``{{ data_interval_start | ts_nodash }}``), so every run reads its own hour and writes its own folder.
``catchup=True`` runs every hour since ``start_date``, oldest first, one at a time (``max_active_runs=1``).

``depends_on_past=True`` with ``wait_for_downstream=True``: when an hour's scoring fails, the next hour does not
start. Fix the cause (e.g. replace the bad input file), then clear the failed task; the waiting run holds the only
active-run slot, so also set it back to *queued* (see the README, "Scheduled runs"), and the hours catch up in order.

Runs as it is: the first task registers the demo model if needed and lands the hour's input (JSON lines) when it is
missing, standing in for the upstream system that delivers it.

    python dags/example_batch_scoring_hourly.py     # runs the current hour once with dag.test()
"""

from __future__ import annotations

from datetime import timedelta

import pendulum
from airflow.sdk import DAG, task

try:
    from airflow.sdk import DeltaDataIntervalTimetable
except ImportError:  # Airflow 3.1 has the timetables in airflow.timetables.interval only
    from airflow.timetables.interval import DeltaDataIntervalTimetable
from scoring_demo import MODEL_URI, OWNER, TAGS, TRACKING_URI, demo_uri

from airflow_batch_scoring.operators import BatchScoringOperator

HOUR = "{{ data_interval_start | ts_nodash }}"
# A moving start keeps the demo's catch-up to a day or two of hours; a real DAG uses a fixed date.
START_DATE = pendulum.now("UTC").start_of("day").subtract(days=1)

with DAG(
    dag_id="example_batch_scoring_hourly",
    description="Every hour, in order: score the hour's events (waits while an earlier hour failed)",
    doc_md=__doc__,
    schedule=DeltaDataIntervalTimetable(timedelta(seconds=3600)),
    start_date=START_DATE,
    catchup=True,
    max_active_runs=1,
    default_args={"owner": OWNER, "depends_on_past": True, "wait_for_downstream": True, "retries": 0},
    tags=[*TAGS, "hourly"],
) as dag:

    @task
    def land_demo_hour(data_interval_start: pendulum.DateTime | None = None) -> str:
        """Register the demo model if needed and land the hour's input if it is missing (JSON lines)."""
        import scoring_demo

        scoring_demo.ensure_demo_model()
        hour = data_interval_start.strftime("%Y%m%dT%H%M%S")
        uri = demo_uri("hourly", "input", f"{hour}.jsonl")
        scoring_demo.write_input(uri, key=f"hourly-{hour}", rows=2_000, fmt="jsonl", only_if_missing=True)
        return uri

    score = BatchScoringOperator(
        task_id="score_hour",
        model=MODEL_URI,
        mlflow_tracking_uri=TRACKING_URI,
        source={"uri": demo_uri("hourly", "input", f"{HOUR}.jsonl"), "format": "jsonl"},
        sink={"uri": demo_uri("hourly", "scores", HOUR, folder=True), "format": "csv", "header": True},
        passthrough_columns=["id"],
        replicas=1,
    )
    land_demo_hour() >> score


if __name__ == "__main__":
    run = dag.test()
    print(f"Run {run.run_id} finished: {run.state}")
