"""Third-party flavours through MLflow pyfunc (LightGBM, statsmodels; scikit-learn in test_scoring.py): outputs
equal the framework's own predict on the same rows."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from airflow_batch_scoring.artifacts import process_model
from tests.support.artifacts import score_spec
from tests.support.helpers import FEATURES, make_frame


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


# --- predict_probabilities=True through MLflow flavours (the registry, real replicas) ---------------------------


@pytest.fixture(scope="module")
def labelled():
    """Three classes (0, 1, 2) from two features, so a classifier has something to learn."""
    frame = make_frame(1500, seed=61)
    frame["label"] = np.digitize(frame["f0"] + frame["f1"] / 10, [-0.5, 0.5])
    return frame


def _register(log_model: Any, model: Any, name: str, x: Any, output: Any, **kwargs: Any) -> str:
    """Log ``model`` with ``log_model`` into a run, register it as ``name``; return ``models:/name/version``."""
    import mlflow
    from mlflow.models import infer_signature

    mlflow.set_experiment("probability-tests")
    with mlflow.start_run():
        info = log_model(
            model, name="model", signature=infer_signature(x, output), registered_model_name=name, **kwargs
        )
    return f"models:/{name}/{info.registered_model_version}"


def _probabilities(out: Any, classes: list[Any]) -> np.ndarray:
    assert [c for c in out.columns if c.startswith("probability_")] == [f"probability_{c}" for c in classes]
    return out[[f"probability_{c}" for c in classes]].to_numpy()


@pytest.mark.parametrize("library", ["xgboost", "lightgbm", "catboost"])
def test_native_classifier_probabilities_through_the_registry(library, labelled, tmp_path: Path):
    """A classifier logged with mlflow.xgboost / mlflow.lightgbm / mlflow.catboost and registered: scored by its
    registry version with predict_probabilities=True, each row's probabilities equal the native model's own
    predict_proba on the same rows, and its prediction the native predict."""
    pytest.importorskip(library)
    x, y = labelled[FEATURES], labelled["label"]
    if library == "xgboost":
        import mlflow.xgboost
        import xgboost

        model = xgboost.XGBClassifier(n_estimators=15, max_depth=3, n_jobs=1, random_state=0).fit(x, y)
        log_model = mlflow.xgboost.log_model
    elif library == "lightgbm":
        import lightgbm
        import mlflow.lightgbm

        model = lightgbm.LGBMClassifier(n_estimators=15, num_leaves=7, verbose=-1, n_jobs=1, random_state=0).fit(x, y)
        log_model = mlflow.lightgbm.log_model
    else:
        import catboost
        import mlflow.catboost

        model = catboost.CatBoostClassifier(iterations=15, depth=3, verbose=False, thread_count=1, random_seed=0,
                                           allow_writing_files=False)
        model.fit(x, y)
        log_model = mlflow.catboost.log_model
    uri = _register(log_model, model, f"{library}-classifier", x, model.predict(x), pip_requirements=[library])
    spec = process_model(uri, str(tmp_path / "t"), require_input_schema=True)
    frame = make_frame(700, seed=62)
    out, _ = score_spec(spec, frame, tmp_path / "w", replicas=2, batch_size=97, predict_probabilities=True)
    rows = frame.sort_values("id")[FEATURES]
    expected = model.predict_proba(rows)
    np.testing.assert_array_equal(_probabilities(out, list(model.classes_)), expected)
    np.testing.assert_array_equal(out["prediction"].to_numpy(), np.asarray(model.predict(rows)).reshape(-1))
    assert len(set(np.argmax(expected, axis=1))) == 3  # every class is predicted somewhere: a real comparison


def test_pyfunc_whose_output_is_class_probabilities(labelled, tmp_path: Path, replicas_import_tests):
    """A custom pyfunc model returning one probability column per class: its columns are the probabilities and the
    prediction is the most probable class."""
    import mlflow.pyfunc
    from sklearn.ensemble import HistGradientBoostingClassifier

    from tests.support.pyfunc_models import ClassProbabilities

    x = labelled[FEATURES]
    labels = np.array(["low", "mid", "high"])[labelled["label"]]
    classifier = HistGradientBoostingClassifier(max_iter=10, random_state=0).fit(x, labels)
    python_model = ClassProbabilities(classifier)

    def log_model(model: Any, **kwargs: Any) -> Any:
        return mlflow.pyfunc.log_model(python_model=model, **kwargs)

    uri = _register(log_model, python_model, "pyfunc-probabilities", x, python_model.predict(None, x),
                    pip_requirements=["scikit-learn"])
    spec = process_model(uri, str(tmp_path / "t"))
    frame = make_frame(500, seed=63)
    out, _ = score_spec(spec, frame, tmp_path / "w", replicas=2, predict_probabilities=True)
    rows = frame.sort_values("id")[FEATURES]
    classes = [str(c) for c in classifier.classes_]
    np.testing.assert_array_equal(_probabilities(out, classes), classifier.predict_proba(rows))
    np.testing.assert_array_equal(out["prediction"].to_numpy(), classifier.predict(rows))


def test_xgboost_booster_with_softprob_output(labelled, tmp_path: Path):
    """An XGBoost Booster (the native training API: no predict_proba) trained with multi:softprob returns one
    probability per class: those are the probability columns, numbered by class."""
    xgboost = pytest.importorskip("xgboost")
    import mlflow.xgboost

    x = labelled[FEATURES]
    booster = xgboost.train(
        {"objective": "multi:softprob", "num_class": 3, "max_depth": 3, "nthread": 1, "seed": 0},
        xgboost.DMatrix(x, label=labelled["label"]), num_boost_round=10,
    )
    uri = _register(mlflow.xgboost.log_model, booster, "xgboost-booster-softprob", x,
                    booster.predict(xgboost.DMatrix(x)), pip_requirements=["xgboost"])
    spec = process_model(uri, str(tmp_path / "t"))
    frame = make_frame(400, seed=64)
    out, _ = score_spec(spec, frame, tmp_path / "w", replicas=1, predict_probabilities=True)
    expected = booster.predict(xgboost.DMatrix(frame.sort_values("id")[FEATURES]))
    np.testing.assert_array_equal(_probabilities(out, [0, 1, 2]), expected)
    np.testing.assert_array_equal(out["prediction"].to_numpy(), np.argmax(expected, axis=1))


def test_models_without_probabilities_say_their_flavour_and_what_to_do(labelled, tmp_path: Path,
                                                                        replicas_import_tests):
    """A binary:logistic Booster (one value per row), a scikit-learn regressor and a pyfunc whose two outputs are
    not probabilities: the error names the flavour and says what to log instead; nothing is published."""
    xgboost = pytest.importorskip("xgboost")
    import mlflow.pyfunc
    import mlflow.sklearn
    import mlflow.xgboost
    from sklearn.linear_model import Ridge

    from airflow_batch_scoring.errors import ModelError
    from tests.support.pyfunc_models import Scores

    x = labelled[FEATURES]
    booster = xgboost.train({"objective": "binary:logistic", "max_depth": 2, "nthread": 1},
                            xgboost.DMatrix(x, label=labelled["label"] > 0), num_boost_round=5)
    ridge = Ridge().fit(x, labelled["f0"])

    def log_pyfunc(model: Any, **kwargs: Any) -> Any:
        return mlflow.pyfunc.log_model(python_model=model, **kwargs)

    cases = [
        (_register(mlflow.xgboost.log_model, booster, "xgboost-booster-binary", x,
                   booster.predict(xgboost.DMatrix(x)), pip_requirements=["xgboost"]),
         r"flavor xgboost \(xgboost.core.Booster\)\) has no predict_proba, and its signature says it returns 1 value"),
        (_register(mlflow.sklearn.log_model, ridge, "sklearn-regressor", x, ridge.predict(x),
                   pip_requirements=["scikit-learn"], serialization_format="cloudpickle"),
         r"flavor sklearn \(sklearn.linear_model._ridge.Ridge\)\) has no predict_proba"),
        (_register(log_pyfunc, Scores(), "pyfunc-scores", x, Scores().predict(None, x), pip_requirements=["pandas"]),
         r"flavor python_function \(a custom PythonModel\)\) has no predict_proba, and its 2 output columns are not "
         r"per-class probabilities"),
    ]
    for index, (uri, message) in enumerate(cases):
        spec = process_model(uri, str(tmp_path / f"t{index}"))
        with pytest.raises(ModelError, match=message) as failure:
            score_spec(spec, make_frame(50, seed=65), tmp_path / f"w{index}", replicas=1, predict_probabilities=True)
        assert "XGBClassifier with mlflow.xgboost" in str(failure.value) and "switch predict_probabilities off" in str(
            failure.value)
        assert not list((tmp_path / f"w{index}" / "out").glob("part-*"))
