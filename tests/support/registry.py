"""Two registered versions of one MLflow model (``@champion`` on version 1), for the artifact tests of both levels.
The ``versions`` fixture is registered by tests/conftest.py (once a session: the registry numbers versions)."""

from __future__ import annotations

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
