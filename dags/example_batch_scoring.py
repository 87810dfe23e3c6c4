"""Example: score a registered MLflow model over a day's CSV input, on the embedded default runtime.

Runs as it is: the first task makes a demo model (registered in a local MLflow store as ``demo-churn`` with the alias
``champion``) and the day's input; the second scores it with two local replicas into a folder per logical date.

    python dags/example_batch_scoring.py      # runs the DAG once with dag.test()
"""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path

import pendulum
from airflow.sdk import DAG, task

from airflow_batch_scoring.operators import BatchScoringOperator

DEMO_DIR = Path(os.environ.get("BATCH_SCORING_DEMO_DIR", "/tmp/airflow-batch-scoring-demo"))
TRACKING_URI = os.environ.get("MLFLOW_TRACKING_URI", f"sqlite:///{DEMO_DIR / 'mlflow.db'}")
FEATURES = [f"x{i}" for i in range(8)]

with DAG(
    dag_id="example_batch_scoring",
    description="Score the day's customers with the champion churn model",
    doc_md=__doc__,
    schedule="@daily",
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    default_args={"owner": "ml-platform", "retries": 1, "retry_delay": timedelta(minutes=1)},
    tags=["batch-scoring", "example"],
) as dag:

    @task
    def prepare_demo(ds: str | None = None) -> str:
        """Make the day's input (CSV without header: id, x0..x7) and register a demo model if there is none."""
        import mlflow
        import numpy as np
        import pandas as pd
        from mlflow.models import infer_signature
        from sklearn.ensemble import HistGradientBoostingClassifier

        rng = np.random.default_rng(abs(hash(ds)) % 2**32)
        frame = pd.DataFrame(rng.normal(size=(50_000, len(FEATURES))), columns=FEATURES)
        frame.insert(0, "id", np.arange(len(frame)))
        folder = DEMO_DIR / "input" / str(ds)
        folder.mkdir(parents=True, exist_ok=True)
        frame.to_csv(folder / "customers.csv", header=False, index=False, float_format="%.17g")

        client = mlflow.MlflowClient(tracking_uri=TRACKING_URI)
        try:
            client.get_model_version_by_alias("demo-churn", "champion")
        except mlflow.exceptions.MlflowException:
            mlflow.set_tracking_uri(TRACKING_URI)
            mlflow.set_experiment("airflow-batch-scoring-demo")
            x = frame[FEATURES]
            y = (x["x0"] + 0.5 * x["x1"] - x["x2"] > 0).astype(int)
            model = HistGradientBoostingClassifier(max_iter=50).fit(x, y)
            with mlflow.start_run():
                info = mlflow.sklearn.log_model(
                    model,
                    name="model",
                    signature=infer_signature(x, model.predict(x)),
                    registered_model_name="demo-churn",
                    skops_trusted_types=["sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor"],
                )
            client.set_registered_model_alias("demo-churn", "champion", str(info.registered_model_version))
        return folder.as_uri()

    prepared = prepare_demo()

    score = BatchScoringOperator(
        task_id="score_customers",
        model="models:/demo-churn@champion",
        mlflow_tracking_uri=TRACKING_URI,
        source={"uri": f"file://{DEMO_DIR}/input/{{{{ ds }}}}/", "format": "csv", "columns": ["id", *FEATURES]},
        sink={"uri": f"file://{DEMO_DIR}/scores/{{{{ ds }}}}/", "format": "csv", "header": True},
        passthrough_columns=["id"],
        predict_probabilities=True,
        replicas=2,
        batch_size=20_000,
    )
    prepared >> score


if __name__ == "__main__":
    run = dag.test()
    print(f"Run {run.run_id} finished: {run.state}; output in {DEMO_DIR / 'scores'}")
