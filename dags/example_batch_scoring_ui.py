"""On demand from the UI: press Trigger, fill in the form, and score.

The trigger dialog shows a form built from this DAG's Params (``airflow_batch_scoring.params.scoring_params``):
model, source and sink (URI, connection, format, header), passthrough columns, replicas, batch size, resources per
replica and the schema check, each with a title, a description and validation. A conf that does not fit (a format
that is not csv/jsonl/parquet, 0 replicas, a URI of an unknown store, a malformed memory quantity...) is refused when
the run is triggered, before the run exists, from the UI as from the REST API.

The defaults score a demo file with the demo model: the first task lands both when the form still points at them.
Whoever triggers the run chooses the sink, so the task allows only sinks under the demo's ``ui/`` folder
(``allowed_sink_prefixes``, checked when the task runs): a sink elsewhere fails the task before anything is read.
"""

from __future__ import annotations

import pendulum
from airflow.sdk import DAG, task
from scoring_demo import MODEL_URI, OWNER, TAGS, TRACKING_URI, demo_uri

from airflow_batch_scoring.operators import BatchScoringOperator
from airflow_batch_scoring.params import scoring_params, scoring_templates

DEMO_SOURCE = demo_uri("ui", "input", "customers.csv")

with DAG(
    dag_id="example_batch_scoring_ui",
    description="Score any input with any model: press Trigger and fill in the form",
    doc_md=__doc__,
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    default_args={"owner": OWNER},
    tags=[*TAGS, "ui"],
    params=scoring_params(
        model=MODEL_URI,
        source_uri=DEMO_SOURCE,
        sink_uri=demo_uri("ui", "scores", folder=True),
        sink_format="csv",
        replicas=2,
    ),
) as dag:

    @task
    def prepare(params: dict | None = None) -> dict:
        """Land the demo model and input when the form points at them; record the resources asked for."""
        import scoring_demo

        from airflow_batch_scoring.params import resources_of

        if params["model"] == MODEL_URI:
            scoring_demo.ensure_demo_model()
        if params["source_uri"] == DEMO_SOURCE:
            scoring_demo.write_input(DEMO_SOURCE, key="ui", rows=10_000, header=True, only_if_missing=True)
        resources = resources_of(params)
        print(f"Resources per replica: {resources} (the local runtime runs {params['replicas']} replica(s) here)")
        return {"resources": resources, "replicas": params["replicas"]}

    prepare() >> BatchScoringOperator(
        task_id="score",
        mlflow_tracking_uri=TRACKING_URI,
        allowed_sink_prefixes=[demo_uri("ui", folder=True)],
        **scoring_templates(),
    )


if __name__ == "__main__":
    run = dag.test()
    print(f"Run {run.run_id} finished: {run.state}")
