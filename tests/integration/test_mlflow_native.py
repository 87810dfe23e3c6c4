"""MLflow models loaded without MLflow (``flavors/mlmodel.py``): replicas in which ``import mlflow`` fails score
scikit-learn (skops, cloudpickle, pickle), XGBoost and LightGBM model folders to exactly what MLflow's own pyfunc
predicts on the same rows; every other model still loads through MLflow; MLflow's switch against deserialising and a
broken model file are clear errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from airflow_batch_scoring.artifacts import process_model
from airflow_batch_scoring.errors import ModelError, ReplicaError
from airflow_batch_scoring.flavors.mlmodel import MLmodelFile, native_model
from tests.support.artifacts import score_spec
from tests.support.helpers import FEATURES, make_frame

HGB_TRUSTED = ["sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor"]


def _poison(folder: Path) -> Path:
    """Write into ``folder`` an ``mlflow`` package whose import fails; return ``folder``."""
    (folder / "mlflow").mkdir(parents=True, exist_ok=True)
    (folder / "mlflow" / "__init__.py").write_text('raise ImportError("this replica must not import mlflow")\n')
    return folder


@pytest.fixture
def replicas_without_mlflow(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Replicas find, first on their path, an ``mlflow`` package whose import fails: a replica that imports MLflow
    fails its shard, and the run with it."""
    poison = _poison(tmp_path / "poison")
    monkeypatch.setenv("PYTHONPATH", str(poison))
    return poison


@pytest.fixture(scope="module")
def labelled() -> pd.DataFrame:
    """Three classes from two features, and a numeric target for the regressors."""
    frame = make_frame(1500, seed=71)
    frame["label"] = np.digitize(frame["f0"] + frame["f1"] / 10, [-0.5, 0.5])
    frame["target"] = frame["f0"] * 2.5 - frame["f1"] / 4 + np.sin(frame["f4"])
    return frame


def _save(save_model: Callable[..., Any], model: Any, folder: Path, x: Any, **kwargs: Any) -> Path:
    from mlflow.models import infer_signature

    save_model(model, str(folder), signature=infer_signature(x, model.predict(x)), **kwargs)
    return folder


def _sklearn_skops(frame: pd.DataFrame, folder: Path) -> tuple[Path, bool]:
    import mlflow.sklearn
    from sklearn.linear_model import LogisticRegression

    model = LogisticRegression(max_iter=5000).fit(frame[FEATURES], frame["label"])
    return _save(mlflow.sklearn.save_model, model, folder, frame[FEATURES], serialization_format="skops"), True


def _sklearn_skops_trusted(frame: pd.DataFrame, folder: Path) -> tuple[Path, bool]:
    import mlflow.sklearn
    from sklearn.ensemble import HistGradientBoostingClassifier

    model = HistGradientBoostingClassifier(max_iter=20).fit(frame[FEATURES], frame["label"])
    saved = _save(mlflow.sklearn.save_model, model, folder, frame[FEATURES], skops_trusted_types=HGB_TRUSTED)
    return saved, True


def _sklearn_cloudpickle_numpy(frame: pd.DataFrame, folder: Path) -> tuple[Path, bool]:
    """Fitted on a matrix: the model knows no feature names, the signature names the columns."""
    import mlflow.sklearn
    from sklearn.ensemble import RandomForestClassifier

    model = RandomForestClassifier(n_estimators=10, max_depth=4, random_state=0, n_jobs=1)
    model.fit(frame[FEATURES].to_numpy(), frame["label"])
    from mlflow.models import infer_signature

    mlflow.sklearn.save_model(
        model, str(folder), serialization_format="cloudpickle",
        signature=infer_signature(frame[FEATURES], model.predict(frame[FEATURES].to_numpy())),
    )  # fmt: skip
    return folder, True


def _sklearn_pickle_regressor(frame: pd.DataFrame, folder: Path) -> tuple[Path, bool]:
    import mlflow.sklearn
    from sklearn.linear_model import Ridge

    model = Ridge(alpha=0.5).fit(frame[FEATURES], frame["target"])
    return _save(mlflow.sklearn.save_model, model, folder, frame[FEATURES], serialization_format="pickle"), False


def _xgboost_classifier(frame: pd.DataFrame, folder: Path) -> tuple[Path, bool]:
    import mlflow.xgboost
    import xgboost

    model = xgboost.XGBClassifier(n_estimators=15, max_depth=3, n_jobs=1, random_state=0)
    model.fit(frame[FEATURES], frame["label"])
    return _save(mlflow.xgboost.save_model, model, folder, frame[FEATURES]), True


def _lightgbm_classifier(frame: pd.DataFrame, folder: Path) -> tuple[Path, bool]:
    import lightgbm
    import mlflow.lightgbm

    model = lightgbm.LGBMClassifier(n_estimators=15, num_leaves=7, verbose=-1, n_jobs=1, random_state=0)
    model.fit(frame[FEATURES], frame["label"])
    return _save(mlflow.lightgbm.save_model, model, folder, frame[FEATURES]), True


def _lightgbm_booster(frame: pd.DataFrame, folder: Path) -> tuple[Path, bool]:
    import lightgbm
    import mlflow.lightgbm

    booster = lightgbm.train(
        {"objective": "regression", "num_leaves": 7, "verbose": -1, "num_threads": 1},
        lightgbm.Dataset(frame[FEATURES], label=frame["target"]), num_boost_round=15,
    )  # fmt: skip
    return _save(mlflow.lightgbm.save_model, booster, folder, frame[FEATURES]), False


MODELS = {
    "sklearn-skops": _sklearn_skops,
    "sklearn-skops-trusted-types": _sklearn_skops_trusted,
    "sklearn-cloudpickle-matrix": _sklearn_cloudpickle_numpy,
    "sklearn-pickle-regressor": _sklearn_pickle_regressor,
    "xgboost-classifier": _xgboost_classifier,
    "lightgbm-classifier": _lightgbm_classifier,
    "lightgbm-booster": _lightgbm_booster,
}


@pytest.mark.parametrize("kind", list(MODELS))
def test_replicas_score_the_model_without_importing_mlflow(
    kind: str, labelled: pd.DataFrame, tmp_path: Path, replicas_without_mlflow: Path
):
    """Processed from its folder and scored by two replicas that cannot import MLflow: predictions (and, for a
    classifier, class probabilities) equal MLflow's own pyfunc (and its raw model's ``predict_proba``) on the same
    rows."""
    import mlflow.pyfunc

    folder, classifier = MODELS[kind](labelled, tmp_path / "model")
    spec = process_model(str(folder), str(tmp_path / "t"), require_input_schema=True)
    assert [c["name"] for c in spec.input_schema] == FEATURES
    frame = make_frame(600, seed=72)
    out, summary = score_spec(spec, frame, tmp_path / "w", replicas=2, batch_size=97, predict_probabilities=classifier)
    assert summary["rows_out"] == len(frame)
    rows = frame.sort_values("id")[FEATURES].reset_index(drop=True)
    pyfunc = mlflow.pyfunc.load_model(str(folder))
    expected = np.asarray(pyfunc.predict(rows)).reshape(-1)
    if classifier:
        np.testing.assert_array_equal(out["prediction"].to_numpy(), expected)
        raw = pyfunc.get_raw_model()
        fitted_on_matrix = kind.startswith("sklearn") and getattr(raw, "feature_names_in_", None) is None
        proba = raw.predict_proba(rows.to_numpy() if fitted_on_matrix else rows)
        columns = [f"probability_{c}" for c in raw.classes_]
        np.testing.assert_allclose(out[columns].to_numpy(), proba, rtol=1e-12, atol=1e-15)
        assert len(set(expected)) == 3  # every class is predicted somewhere: a real comparison
    else:  # a dot product summed in another order (row-major input) may differ in its last bits: a few ulp of the
        # largest prediction (test_scoring.test_linear_model_within_one_ulp)
        ulp = np.finfo(np.float64).eps * np.abs(expected).max()
        np.testing.assert_allclose(out["prediction"].to_numpy(), expected, rtol=0, atol=8 * ulp)


def test_models_the_provider_does_not_load_itself_still_load_through_mlflow(
    labelled: pd.DataFrame, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    """A custom PythonModel, and a scikit-learn model saved with code_paths, are left to MLflow: the replicas that
    cannot import it fail (so the test above would catch a replica importing MLflow), the others score as before."""
    import mlflow.pyfunc
    import mlflow.sklearn
    from sklearn.linear_model import Ridge

    from tests.support.pyfunc_models import Scores

    custom = tmp_path / "custom"
    mlflow.pyfunc.save_model(str(custom), python_model=Scores(), input_example=labelled[FEATURES].head(3))
    with_code = tmp_path / "with_code"
    helper = tmp_path / "helper_module.py"
    helper.write_text("VALUE = 1\n")
    model = Ridge().fit(labelled[FEATURES], labelled["target"])
    _save(mlflow.sklearn.save_model, model, with_code, labelled[FEATURES], code_paths=[str(helper)])
    for folder in (custom, with_code):
        assert native_model(MLmodelFile.read(str(folder))) is None, folder
    spec = process_model(str(with_code), str(tmp_path / "t"), require_input_schema=True)
    frame = make_frame(300, seed=73)
    monkeypatch.setenv("PYTHONPATH", str(_poison(tmp_path / "poison")))
    with pytest.raises(ReplicaError, match="this replica must not import mlflow"):
        score_spec(spec, frame, tmp_path / "poisoned", replicas=1)
    monkeypatch.delenv("PYTHONPATH")
    out, _ = score_spec(spec, frame, tmp_path / "w", replicas=1)
    expected = model.predict(frame.sort_values("id")[FEATURES])
    ulp = np.finfo(np.float64).eps * np.abs(expected).max()
    np.testing.assert_allclose(out["prediction"].to_numpy(), expected, rtol=0, atol=8 * ulp)


def test_mlflows_switch_against_deserialising_is_obeyed(
    labelled: pd.DataFrame, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    """``MLFLOW_ALLOW_PICKLE_DESERIALIZATION=false``: the provider does not load the model itself, and MLflow refuses
    it with its own explanation."""
    folder, _ = _sklearn_skops(labelled, tmp_path / "model")
    spec = process_model(str(folder), str(tmp_path / "t"), require_input_schema=True)
    monkeypatch.setenv("MLFLOW_ALLOW_PICKLE_DESERIALIZATION", "false")
    assert native_model(MLmodelFile.read(str(folder))) is None
    with pytest.raises(ModelError, match="MLFLOW_ALLOW_PICKLE_DESERIALIZATION"):
        score_spec(spec, make_frame(50, seed=74), tmp_path / "w", replicas=1)


def test_a_broken_model_file_or_mlmodel_is_a_clear_error(labelled: pd.DataFrame, tmp_path: Path):
    """A truncated model file names the file and the deserialiser; an MLmodel without flavors says what it is."""
    folder, _ = _sklearn_pickle_regressor(labelled, tmp_path / "model")
    pickled = folder / "model.pkl"
    pickled.write_bytes(pickled.read_bytes()[:40])
    with pytest.raises(ModelError, match=r"model\.pkl.*\(pickle; "):
        native_model(MLmodelFile.read(str(folder)))
    (folder / "MLmodel").write_text("artifact_path: model\n")
    with pytest.raises(ModelError, match="names no flavors"):
        MLmodelFile.read(str(folder))
    (folder / "MLmodel").write_text("flavors: [unclosed\n")
    with pytest.raises(ModelError, match="not a readable MLflow model folder"):
        MLmodelFile.read(str(folder))
    assert os.path.exists(folder / "MLmodel")


def test_processing_a_model_folder_does_not_import_mlflow(labelled: pd.DataFrame, tmp_path: Path):
    """The driver reads a folder's schemas and metadata from its MLmodel file: in a fresh interpreter, processing it
    leaves ``mlflow`` unimported and records the signature's columns."""
    folder, _ = _sklearn_skops(labelled, tmp_path / "model")
    code = (
        "import json, sys\n"
        "from airflow_batch_scoring.artifacts import process_model\n"
        f"spec = process_model({str(folder)!r}, {str(tmp_path / 't')!r}, require_input_schema=True)\n"
        "print(json.dumps({'mlflow': 'mlflow' in sys.modules, 'inputs': spec.input_schema, 'digest': spec.digest}))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120)
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["mlflow"] is False
    assert [column["name"] for column in result["inputs"]] == FEATURES and result["digest"]
