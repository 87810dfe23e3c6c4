"""Two registered versions of one MLflow model (``@champion`` on version 1), for the artifact tests of both levels.
An MLflow connection to the session's registry. tests/conftest.py registers the fixtures ``versions`` (once a
session: the registry numbers versions) and ``mlflow_connection``."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Any

import pytest

from tests.support.helpers import FEATURES, make_frame

MODEL = "pinning-model"


@dataclass
class Versions:
    first: Any
    second: Any
    run_uri: str


@pytest.fixture(scope="session")
def versions() -> Versions:
    """Two registered versions of one model, with ``@champion`` on version 1."""
    import mlflow
    from mlflow.models import infer_signature
    from sklearn.ensemble import HistGradientBoostingRegressor

    train = make_frame(1500, seed=42)
    x, y = train[FEATURES], train["f0"] * 2 - train["f1"] / 7
    first = HistGradientBoostingRegressor(max_iter=5, random_state=0).fit(x, y)
    second = HistGradientBoostingRegressor(max_iter=40, random_state=0).fit(x, y)
    mlflow.set_experiment("artifact-tests")
    client = mlflow.MlflowClient()
    with mlflow.start_run() as run:
        for estimator in (first, second):
            mlflow.sklearn.log_model(
                estimator,
                name="model",
                signature=infer_signature(x, estimator.predict(x)),
                registered_model_name=MODEL,
                serialization_format="cloudpickle",
                pip_requirements=["scikit-learn"],  # skips MLflow's slow requirement inference
            )
    assert sorted(int(v.version) for v in client.search_model_versions(f"name='{MODEL}'")) == [1, 2]
    client.set_registered_model_alias(MODEL, "champion", "1")
    return Versions(first, second, f"runs:/{run.info.run_id}/model")


#: the token of the ``mlflow_connection`` fixture (a test checks it appears nowhere)
TOKEN = "mlflow-test-token-7f3a9c"


@pytest.fixture
def mlflow_connection(monkeypatch: pytest.MonkeyPatch) -> str:
    """An MLflow connection, as an AIRFLOW_CONN_* variable, pointing at the session's SQLite registry."""
    extra = {"tracking_uri": os.environ["MLFLOW_TRACKING_URI"], "token": TOKEN}
    monkeypatch.setenv("AIRFLOW_CONN_MLFLOW_TEST", json.dumps({"conn_type": "mlflow", "extra": extra}))
    monkeypatch.delenv("MLFLOW_TRACKING_TOKEN", raising=False)
    return "mlflow_test"
