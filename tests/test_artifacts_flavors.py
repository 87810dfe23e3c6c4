"""Third-party flavours through MLflow pyfunc (LightGBM, statsmodels; scikit-learn in test_scoring.py): outputs
equal the framework's own predict on the same rows."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from fixtures.artifact_support import score_spec
from helpers import FEATURES, make_frame

from airflow_batch_scoring.artifacts import process_model


@pytest.fixture(scope="module")
def train():
    frame = make_frame(1200, seed=51)
    frame["target"] = frame["f0"] * 2.5 - frame["f1"] / 4 + np.sin(frame["f4"])
    return frame


def test_lightgbm_through_pyfunc(train, tmp_path: Path):
    lightgbm = pytest.importorskip("lightgbm")
    import mlflow.lightgbm
    from mlflow.models import infer_signature

    model = lightgbm.LGBMRegressor(n_estimators=25, num_leaves=15, verbose=-1, n_jobs=1, random_state=0)
    model.fit(train[FEATURES], train["target"])
    folder = tmp_path / "lgbm"
    mlflow.lightgbm.save_model(
        model, str(folder), signature=infer_signature(train[FEATURES], model.predict(train[FEATURES])),
        pip_requirements=["lightgbm"],
    )
    spec = process_model(str(folder), str(tmp_path / "t"), require_input_schema=True)
    assert spec.artifact_type == "python/mlflow" and [c["name"] for c in spec.input_schema] == FEATURES
    frame = make_frame(900, seed=52)
    out, _ = score_spec(spec, frame, tmp_path / "w", replicas=1, batch_size=111)
    np.testing.assert_array_equal(out["prediction"].to_numpy(), model.predict(frame[FEATURES]))


def test_statsmodels_through_pyfunc(train, tmp_path: Path):
    pytest.importorskip("statsmodels")
    import mlflow.statsmodels
    import statsmodels.formula.api as smf
    from mlflow.models import infer_signature

    results = smf.ols("target ~ f0 + f1 + f2 + f3 + f4", data=train).fit()
    folder = tmp_path / "ols"
    mlflow.statsmodels.save_model(
        results, str(folder), signature=infer_signature(train[FEATURES], results.predict(train[FEATURES])),
        pip_requirements=["statsmodels"],
    )
    spec = process_model(folder.as_uri(), str(tmp_path / "t"), require_input_schema=True)
    frame = make_frame(600, seed=53)
    out, _ = score_spec(spec, frame, tmp_path / "w", replicas=1, batch_size=64)
    expected = results.predict(frame[FEATURES]).to_numpy()
    # A linear model's dot product may round differently by a row's position in its batch (BLAS), as in
    # test_scoring.test_linear_model_within_one_ulp: equal within 4 ulp.
    np.testing.assert_allclose(out["prediction"].to_numpy(), expected, rtol=4 * np.finfo(np.float64).eps, atol=0)
