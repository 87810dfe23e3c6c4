"""What the example-DAG tests share: the demo helper module of dags/, the demo model, reading and checking outputs."""

from __future__ import annotations

import importlib.util
import sys
import tempfile
from pathlib import Path
from types import ModuleType

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[2]
DAGS = ROOT / "dags"
FEATURES = [f"x{i}" for i in range(8)]
#: DagBag's import, for this process and for code run in a subprocess (airflow.models.dagbag before Airflow 3.2)
DAGBAG_IMPORT = (
    "try:\n    from airflow.dag_processing.dagbag import DagBag\n"
    "except ImportError:\n    from airflow.models.dagbag import DagBag\n"
)


def dag_bag(folder: Path):
    """A DagBag of ``folder``, from the installed Airflow's module for it."""
    try:
        from airflow.dag_processing.dagbag import DagBag
    except ImportError:  # Airflow 3.1
        from airflow.models.dagbag import DagBag
    return DagBag(dag_folder=str(folder))


def load_demo_module(name: str = "scoring_demo_for_tests") -> ModuleType:
    """dags/scoring_demo.py as a module of its own name (its settings come from the environment at import)."""
    spec = importlib.util.spec_from_file_location(name, DAGS / "scoring_demo.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def demo_estimator(tracking_uri: str, version: str = "1"):
    """The scikit-learn estimator registered as demo-churn ``version``, loaded through explicit URIs only."""
    import mlflow
    import mlflow.artifacts
    import mlflow.sklearn

    client = mlflow.MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
    location = client.get_model_version_download_uri("demo-churn", version)
    folder = tempfile.mkdtemp(prefix="demo-model-")
    path = mlflow.artifacts.download_artifacts(artifact_uri=location, dst_path=folder, tracking_uri=tracking_uri)
    return mlflow.sklearn.load_model(path)


def read_output(folder: Path, fmt: str) -> pd.DataFrame:
    """Every part of a published output folder (which must carry _SUCCESS), as one frame."""
    assert (folder / "_SUCCESS").exists(), f"{folder} was not published"
    parts = sorted(folder.glob("part-*"))
    assert parts, f"no parts in {folder}"
    if fmt == "parquet":
        return pd.concat([pd.read_parquet(p) for p in parts], ignore_index=True)
    if fmt == "jsonl":
        return pd.concat([pd.read_json(p, lines=True, precise_float=True) for p in parts], ignore_index=True)
    return pd.concat([pd.read_csv(p, float_precision="round_trip") for p in parts], ignore_index=True)


def check_scores(frame: pd.DataFrame, output: pd.DataFrame, estimator, probabilities: bool = False) -> None:
    """Every input id exactly once, each prediction (and class probability) equal to the model's own."""
    out = output.assign(id=output["id"].astype("int64"))  # (a CSV or JSON lines source carries the id as text)
    out = out.sort_values("id").reset_index(drop=True)
    frame = frame.sort_values("id").reset_index(drop=True)
    assert out["id"].tolist() == frame["id"].tolist()
    expected = estimator.predict(frame[FEATURES])
    assert out["prediction"].astype(str).tolist() == expected.astype(str).tolist()
    if probabilities:
        proba = estimator.predict_proba(frame[FEATURES])
        for i, label in enumerate(estimator.classes_):
            np.testing.assert_array_equal(out[f"probability_{label}"].to_numpy(dtype=np.float64), proba[:, i])
