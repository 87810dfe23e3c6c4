"""Weekly: train a challenger on the newest labeled data, compare it with the champion, promote it if it wins.

Runs as it is: the first task gives ``demo-churn-weekly`` a first champion (in the local MLflow store) if it has
none, and lands the week's labeled rows (training and held-out, Parquet). Then:

1. ``train_challenger`` (BatchTrainingOperator) fits ``scoring_demo.train_churn_model`` on the training rows and
   registers a new version with the alias ``challenger``;
2. ``metrics_champion`` and ``metrics_challenger`` (BatchMetricsOperator) score the same held-out rows with each
   model: ROC AUC, fairness by ``segment``, drift of the held-out rows against the training rows (for the
   challenger: ``baseline="training"``, the data its training run recorded);
3. ``challenger_wins`` (a short-circuit) reads both summaries: the challenger must beat the champion's ROC AUC by
   ``min_gain`` and stay within ``max_demographic_parity_difference`` and ``max_psi``, else the run stops there;
4. ``promote`` moves the ``champion`` alias to the challenger's version.

    python dags/example_batch_scoring_champion_challenger.py      # runs the DAG once with dag.test()
"""

from __future__ import annotations

from datetime import timedelta

import pendulum
from airflow.sdk import DAG, Param, task
from scoring_demo import DEMO_DIR, EXPERIMENT, OWNER, TAGS, TRACKING_URI, demo_uri

from airflow_batch_scoring.operators import BatchMetricsOperator, BatchTrainingOperator

MODEL = "demo-churn-weekly"
LABELED = demo_uri("labeled", "{{ ds }}", folder=True)
TRAINING_ROWS = LABELED + "train.parquet"
HELD_OUT = LABELED + "holdout.parquet"

with DAG(
    dag_id="example_batch_scoring_champion_challenger",
    description="Weekly: train a challenger, compare it with the champion on held-out data, promote it if it wins",
    doc_md=__doc__,
    schedule="0 3 * * MON",
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    default_args={"owner": OWNER, "retries": 1, "retry_delay": timedelta(minutes=1)},
    tags=[*TAGS, "weekly", "training"],
    params={
        "min_gain": Param(0.01, type="number", title="Minimum ROC AUC gain",
                          description="the challenger's ROC AUC must exceed the champion's by this much"),
        "max_demographic_parity_difference": Param(0.1, type="number", title="Fairness limit",
                                                   description="the challenger's largest selection-rate gap "
                                                   "between segments"),
        "max_psi": Param(0.2, type="number", title="Drift limit",
                         description="the largest PSI of a feature, held-out rows against the training rows"),
        "max_iter": Param(40, type="integer", minimum=1, title="Boosting rounds",
                          description="the challenger's training rounds (1 makes a weak challenger)"),
    },
    render_template_as_native_obj=True,
) as dag:

    @task
    def prepare_demo(ds: str | None = None) -> str:
        """Give the model a first champion if needed; land the week's labeled rows (training and held-out)."""
        import scoring_demo

        scoring_demo.ensure_champion(MODEL)
        scoring_demo.write_labeled(TRAINING_ROWS.replace("{{ ds }}", str(ds)), key=f"train-{ds}", rows=5_000)
        scoring_demo.write_labeled(HELD_OUT.replace("{{ ds }}", str(ds)), key=f"holdout-{ds}", rows=2_000)
        return str(ds)

    # [START howto_operator_batch_training]
    train = BatchTrainingOperator(
        task_id="train_challenger",
        training="scoring_demo:train_churn_model",
        training_kwargs={"max_iter": "{{ params.max_iter }}"},
        source={"uri": TRAINING_ROWS},
        label_column="churned",
        register_as=MODEL,
        alias="challenger",
        experiment=EXPERIMENT,
        mlflow_tracking_uri=TRACKING_URI,
    )
    # [END howto_operator_batch_training]

    def metrics(task_id: str, model: str, baseline: str | dict) -> BatchMetricsOperator:
        return BatchMetricsOperator(
            task_id=task_id,
            model=model,
            mlflow_tracking_uri=TRACKING_URI,
            source={"uri": HELD_OUT},
            output={"uri": demo_uri("metrics", "{{ ds }}", task_id, folder=True)},
            label_column="churned",
            task="classification",
            positive_label=1,
            protected_attributes=["segment"],
            baseline=baseline,
            log_to_mlflow=False,
        )

    champion = metrics("metrics_champion", f"models:/{MODEL}@champion", {"uri": TRAINING_ROWS})
    # the challenger's drift is against its own training data, as the training task recorded it on its MLflow run
    challenger = metrics("metrics_challenger", "{{ ti.xcom_pull(task_ids='train_challenger')['model_uri'] }}",
                         "training")

    @task.short_circuit
    def challenger_wins(params: dict | None = None, ti=None) -> bool:
        """Whether the challenger beats the champion's ROC AUC by ``min_gain`` within the fairness and drift limits."""
        params = params or {}
        old = ti.xcom_pull(task_ids="metrics_champion")["metrics"]
        new = ti.xcom_pull(task_ids="metrics_challenger")["metrics"]
        gain = new["roc_auc"] - old["roc_auc"]
        checks = {
            f"ROC AUC gain {gain:+.4f} >= {params['min_gain']}": gain >= float(params["min_gain"]),
            f"demographic parity difference {new['max_demographic_parity_difference']:.4f} <= "
            f"{params['max_demographic_parity_difference']}":
                new["max_demographic_parity_difference"] <= float(params["max_demographic_parity_difference"]),
            f"max PSI {new['max_psi']:.4f} <= {params['max_psi']}": new["max_psi"] <= float(params["max_psi"]),
        }
        for check, passed in checks.items():
            print(f"{'pass' if passed else 'FAIL'}: {check}")
        return all(checks.values())

    @task
    def promote(ti=None) -> str:
        """Move the ``champion`` alias to the challenger's version."""
        import mlflow

        trained = ti.xcom_pull(task_ids="train_challenger")
        client = mlflow.MlflowClient(tracking_uri=TRACKING_URI)
        client.set_registered_model_alias(MODEL, "champion", trained["version"])
        print(f"{MODEL}@champion -> version {trained['version']}")
        return trained["model_uri"]

    prepare_demo() >> train >> [champion, challenger] >> challenger_wins() >> promote()


if __name__ == "__main__":
    run = dag.test()
    print(f"Run {run.run_id} finished: {run.state}; metrics in {DEMO_DIR / 'metrics'}")
