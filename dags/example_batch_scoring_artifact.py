"""Process the model once, then score exactly that artifact: ProcessArtifactOperator before BatchScoringOperator.

Runs as it is: the first task registers the demo model (``demo-churn``, alias ``champion``) if it is not there and
lands the input; ``process_model`` resolves the alias to a fixed version, fetches the artifact into a folder of this
run, checks it and describes it (type, flavour, digest, schema); ``score`` scores that artifact on two local replicas
after checking its digest again. On Celery or Kubernetes executors, give ``target`` as an object-store URI (with
``target_conn_id``) so that the scoring task's worker can fetch it.

    python dags/example_batch_scoring_artifact.py      # runs the DAG once with dag.test()
"""

from __future__ import annotations

import pendulum
from airflow.sdk import DAG, task
from scoring_demo import COLUMNS, DEMO_DIR, MODEL_URI, OWNER, TAGS, TRACKING_URI, demo_uri

from airflow_batch_scoring.operators import BatchScoringOperator, ProcessArtifactOperator

INPUT = demo_uri("artifact", "input", "customers.csv")

with DAG(
    dag_id="example_batch_scoring_artifact",
    description="Process the champion model once, then score with exactly that artifact",
    doc_md=__doc__,
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    default_args={"owner": OWNER},
    tags=[*TAGS, "artifact"],
) as dag:

    @task
    def prepare_demo() -> str:
        """Register the demo model if needed and land the input (CSV without header: id, x0..x7)."""
        import scoring_demo

        scoring_demo.ensure_demo_model()
        scoring_demo.write_input(INPUT, key="artifact", rows=10_000, only_if_missing=True)
        return INPUT

    # [START howto_operator_process_artifact]
    process = ProcessArtifactOperator(
        task_id="process_model",
        model=MODEL_URI,  # models:/demo-churn@champion, resolved to a fixed version now
        artifact_type="auto",
        target=demo_uri("artifact", "models", "{{ ds_nodash }}"),  # an object-store URI on a distributed executor
        mlflow_tracking_uri=TRACKING_URI,
    )
    score = BatchScoringOperator(
        task_id="score",
        model=process.output,  # exactly the processed artifact: its digest is checked again first
        source={"uri": INPUT, "format": "csv", "columns": COLUMNS},
        sink={"uri": demo_uri("artifact", "scores", "{{ ds_nodash }}", folder=True), "format": "parquet"},
        passthrough_columns=["id"],
        predict_probabilities=True,
        replicas=2,
    )
    # [END howto_operator_process_artifact]
    prepare_demo() >> process >> score


if __name__ == "__main__":
    run = dag.test()
    print(f"Run {run.run_id} finished: {run.state}; output in {DEMO_DIR / 'artifact' / 'scores'}")
