"""Data-aware: scoring runs when new input lands (an Asset), and its output is an Asset for the DAGs after it.

Three DAGs:

- ``example_batch_scoring_land`` stands in for the system that delivers the data: it writes a new batch of customers
  into the landing folder and updates the ``demo_customers_landing`` asset. Trigger it from the UI.
- ``example_batch_scoring_on_landing`` is scheduled on that asset: each update scores the landing folder into the
  scores folder, whose asset (``demo_customers_scores``) it updates with the run's summary (output URI, rows, model
  version) as the asset event's extra.
- ``example_batch_scoring_downstream`` is scheduled on the scores asset and reads the summary and the manifest.
"""

from __future__ import annotations

import pendulum
from airflow.sdk import DAG, Asset, task
from scoring_demo import MODEL_URI, OWNER, TAGS, TRACKING_URI, demo_uri

from airflow_batch_scoring.operators import BatchScoringOperator

LANDING = Asset(name="demo_customers_landing", uri=demo_uri("assets", "landing"))
SCORES = Asset(name="demo_customers_scores", uri=demo_uri("assets", "scores"))
COMMON = {
    "start_date": pendulum.datetime(2026, 1, 1, tz="UTC"),
    "catchup": False,
    "default_args": {"owner": OWNER},
    "doc_md": __doc__,
}

with DAG(dag_id="example_batch_scoring_land", description="Land a new batch of customers (demo)", schedule=None,
         tags=[*TAGS, "assets"], **COMMON):

    @task(outlets=[LANDING])
    def land_customers(run_id: str | None = None) -> str:
        """Register the demo model if needed and replace the landing folder's file with a new batch."""
        import scoring_demo

        scoring_demo.ensure_demo_model()
        uri = demo_uri("assets", "landing", "customers.parquet")
        scoring_demo.write_input(uri, key=f"landing-{run_id}", rows=5_000, fmt="parquet")
        return uri

    land_customers()

with DAG(dag_id="example_batch_scoring_on_landing", description="Score each new batch of customers when it lands",
         schedule=[LANDING], max_active_runs=1, tags=[*TAGS, "assets"], **COMMON):
    BatchScoringOperator(
        task_id="score_landed",
        model=MODEL_URI,
        mlflow_tracking_uri=TRACKING_URI,
        source={"uri": demo_uri("assets", "landing", folder=True), "format": "parquet"},
        sink={"uri": demo_uri("assets", "scores", folder=True), "format": "parquet"},
        passthrough_columns=["id"],
        predict_probabilities=True,
        replicas=2,
        outlets=[SCORES],
    )

with DAG(dag_id="example_batch_scoring_downstream", description="Use the scores when they are updated",
         schedule=[SCORES], tags=[*TAGS, "assets"], **COMMON):

    @task
    def use_scores(triggering_asset_events=None) -> dict:
        """Read the scoring summary from the asset event (or, run by hand, from the published manifest)."""
        import json

        events = triggering_asset_events[SCORES] if triggering_asset_events else []
        summary = dict(events[-1].extra) if events else {}
        manifest_path = demo_uri("assets", "scores", "_manifest.json").removeprefix("file://")
        with open(summary.get("manifest_uri", manifest_path).removeprefix("file://")) as f:
            manifest = json.load(f)
        print(f"{manifest['totals']['rows_out']} scores from {manifest['model']['resolved_uri']}: {summary}")
        return {"rows_out": manifest["totals"]["rows_out"], "event": summary}

    use_scores()
