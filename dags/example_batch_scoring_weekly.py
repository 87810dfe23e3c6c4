"""Weekly (cron ``0 0 * * MON``): score the week's input into the week's output.

Each run covers one week, Monday 00:00 to the next Monday 00:00 UTC (its data interval), and runs when that week is
over. It reads every file of the week's input folder (``week=<Monday>``, seven daily CSV files) and writes that
week's Parquet output. ``CronDataIntervalTimetable`` gives the run its week as ``data_interval_start`` /
``data_interval_end`` (a bare cron string in Airflow 3 triggers at the time but gives no interval).

Runs as it is: the first task registers the demo model if needed and lands the week's files when they are missing.

    python dags/example_batch_scoring_weekly.py     # runs the last complete week once with dag.test()
"""

from __future__ import annotations

from datetime import timedelta

import pendulum
from airflow.sdk import DAG, task

try:
    from airflow.sdk import CronDataIntervalTimetable
except ImportError:  # Airflow 3.1 has the timetables in airflow.timetables.interval only
    from airflow.timetables.interval import CronDataIntervalTimetable
from scoring_demo import COLUMNS, MODEL_URI, OWNER, TAGS, TRACKING_URI, demo_uri

from airflow_batch_scoring.operators import BatchScoringOperator

WEEK = "week={{ data_interval_start | ds }}"

with DAG(
    dag_id="example_batch_scoring_weekly",
    description="Every Monday 00:00 UTC: score last week's customers",
    doc_md=__doc__,
    schedule=CronDataIntervalTimetable("0 0 * * MON", timezone="UTC"),
    start_date=pendulum.datetime(2026, 1, 5, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    default_args={"owner": OWNER, "retries": 2, "retry_delay": timedelta(minutes=10)},
    tags=[*TAGS, "weekly"],
) as dag:

    @task
    def land_demo_week(data_interval_start: pendulum.DateTime | None = None) -> str:
        """Register the demo model if needed and land the week's seven daily files (CSV, no header) if missing."""
        import scoring_demo

        scoring_demo.ensure_demo_model()
        monday = data_interval_start.date()
        for day in range(7):
            date = (monday + timedelta(days=day)).isoformat()
            uri = demo_uri("weekly", "input", f"week={monday.isoformat()}", f"day={date}.csv")
            scoring_demo.write_input(uri, key=f"weekly-{date}", rows=2_000, only_if_missing=True,
                                     first_id=int(date.replace("-", "")) * 100_000)
        return demo_uri("weekly", "input", f"week={monday.isoformat()}", folder=True)

    score = BatchScoringOperator(
        task_id="score_week",
        model=MODEL_URI,
        mlflow_tracking_uri=TRACKING_URI,
        source={"uri": demo_uri("weekly", "input", WEEK, folder=True), "format": "csv", "columns": COLUMNS},
        sink={"uri": demo_uri("weekly", "scores", WEEK, folder=True), "format": "parquet"},
        passthrough_columns=["id"],
        replicas=2,
    )
    land_demo_week() >> score


if __name__ == "__main__":
    run = dag.test()
    print(f"Run {run.run_id} finished: {run.state}")
