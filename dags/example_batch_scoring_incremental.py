"""Hourly, incremental: score only the events appended to a Delta table since the last run, into a Delta table
partitioned by day.

Each run reads the source table at its latest version and scores the data files that the commits since the last
scoring run appended (``incremental=True``); the predictions are appended to the ``scores`` table (one commit per
run, partitioned by ``event_day``). The watermark (the last version scored) lives in the scores table's
``_batch_scoring/incremental/`` folder and moves only when a run commits: a failed run leaves it where it was, and
the next run scores what it missed. A run with nothing new succeeds with ``rows_in: 0`` and commits nothing.
``max_active_runs=1`` and ``depends_on_past=True`` keep the runs one at a time, in order. Lineage names both tables
(the source's and the sink's URIs).

Runs as it is: the first task registers the demo model if needed and appends the hour's events (one commit per
hour, once), standing in for the upstream system that writes them.

    python dags/example_batch_scoring_incremental.py     # runs the current hour once with dag.test()
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

#: rows the demo appends per hour.
ROWS = 500
EVENTS = demo_uri("incremental", "events")
SCORES = demo_uri("incremental", "scores")

with DAG(
    dag_id="example_batch_scoring_incremental",
    description="Every hour: score the events appended to a Delta table since the last run, into a Delta table",
    doc_md=__doc__,
    schedule=DeltaDataIntervalTimetable(timedelta(seconds=3600)),
    start_date=pendulum.now("UTC").start_of("day").subtract(days=1),  # a real DAG uses a fixed date
    catchup=False,
    max_active_runs=1,
    default_args={"owner": OWNER, "depends_on_past": True, "retries": 0},
    tags=[*TAGS, "hourly", "incremental", "delta"],
) as dag:

    @task
    def append_demo_events(data_interval_start: pendulum.DateTime | None = None) -> int:
        """Register the demo model if needed and append the hour's events to the Delta table (once per hour)."""
        import scoring_demo

        scoring_demo.ensure_demo_model()
        return scoring_demo.append_events(EVENTS, data_interval_start, ROWS)

    score = BatchScoringOperator(
        task_id="score_new_events",
        model=MODEL_URI,
        mlflow_tracking_uri=TRACKING_URI,
        source={"format": "delta", "uri": EVENTS},
        sink={"format": "delta", "uri": SCORES, "mode": "append", "partition_by": ["event_day"]},
        passthrough_columns=["id", "event_day"],
        incremental=True,  # the watermark: in the scores table's _batch_scoring/incremental/
    )
    append_demo_events() >> score


if __name__ == "__main__":
    run = dag.test()
    print(f"Run {run.run_id} finished: {run.state}")
