"""What the example DAGs share: the demo folder, the demo model in a local MLflow store, and demo input files.

Not a DAG (listed in ``.airflowignore``). Only the standard library is imported at module level; numpy, pandas,
scikit-learn and MLflow are imported inside the functions, which run in tasks, so the DAG files parse fast.

- ``BATCH_SCORING_DEMO_DIR`` (default ``/tmp/airflow-batch-scoring-demo``) holds everything the examples write.
- The model registry is ``MLFLOW_TRACKING_URI`` when set, else a SQLite store in the demo folder (its artifacts in
  ``<demo>/mlartifacts``). :func:`ensure_demo_model` registers ``demo-churn`` with the alias ``champion`` once.
"""

from __future__ import annotations

import fcntl
import json
import os
import tempfile
import warnings
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

DEMO_DIR = Path(os.environ.get("BATCH_SCORING_DEMO_DIR", "/tmp/airflow-batch-scoring-demo")).absolute()
DEFAULT_TRACKING_URI = f"sqlite:///{DEMO_DIR / 'mlflow.db'}"
TRACKING_URI = os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_TRACKING_URI
MODEL_NAME = "demo-churn"
MODEL_URI = f"models:/{MODEL_NAME}@champion"
EXPERIMENT = "airflow-batch-scoring-demo"
FEATURES = [f"x{i}" for i in range(8)]
COLUMNS = ["id", *FEATURES]
OWNER = "ml-platform"
TAGS = ["batch-scoring", "example"]
_TRUSTED = ["sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor"]


def demo_uri(*parts: str, folder: bool = False) -> str:
    """A ``file://`` URI under the demo folder; ``parts`` may hold Jinja templates (left as they are)."""
    uri = "file://" + "/".join([str(DEMO_DIR), *parts])
    return uri + "/" if folder else uri


@contextmanager
def _locked(name: str) -> Iterator[None]:
    DEMO_DIR.mkdir(parents=True, exist_ok=True)
    with open(DEMO_DIR / name, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def features(key: str, rows: int, first_id: int = 0):
    """A deterministic frame of ``rows`` rows (``id`` from ``first_id``, ``x0``..``x7``) for ``key`` (e.g. a date)."""
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(zlib.crc32(key.encode()))
    frame = pd.DataFrame(rng.normal(size=(rows, len(FEATURES))), columns=FEATURES)
    frame.insert(0, "id", np.arange(first_id, first_id + rows, dtype=np.int64))
    return frame


def ensure_demo_model(tracking_uri: str = TRACKING_URI) -> str:
    """Register the demo classifier as ``demo-churn`` (alias ``champion``) unless it is there; return its version.

    The experiment keeps its artifacts under the demo folder (never ``./mlruns`` of the working directory). Safe to
    call from tasks running at once: a file lock makes one of them create the model.
    """
    marker = DEMO_DIR / ".demo-model.json"
    local_store = tracking_uri == DEFAULT_TRACKING_URI
    artifacts = DEMO_DIR / "mlartifacts"

    def recorded_version() -> str | None:
        """The version this demo registered in its own store, if the store is intact."""
        if not (marker.exists() and (DEMO_DIR / "mlflow.db").exists()):
            return None
        recorded = json.loads(marker.read_text())
        return recorded["version"] if recorded.get("artifacts") == str(artifacts) and artifacts.is_dir() else None

    if local_store and (version := recorded_version()):
        return version
    with _locked(".demo-model.lock"):
        if local_store:
            if version := recorded_version():  # (another task registered it meanwhile)
                return version
            # A store without this demo's marker (made by an older version, which kept its artifacts in ./mlruns,
            # or left by an interrupted run) is started afresh: it holds nothing but the demo model.
            (DEMO_DIR / "mlflow.db").unlink(missing_ok=True)
            marker.unlink(missing_ok=True)
        import mlflow

        client = mlflow.MlflowClient(tracking_uri=tracking_uri)
        try:
            version = client.get_model_version_by_alias(MODEL_NAME, "champion").version
        except mlflow.exceptions.MlflowException:
            version = _register_demo_model(client)
        if local_store:
            marker.write_text(json.dumps({"version": str(version), "artifacts": str(artifacts)}))
        return str(version)


def ensure_champion(name: str, tracking_uri: str = TRACKING_URI) -> str:
    """Give ``name`` a first ``champion`` (the demo classifier) unless it has one; return the champion's version.

    The champion/challenger example's model: the first champion learnt the old relation, the labeled data it is
    challenged on follows a new one (see :func:`write_labeled`).
    """
    demo_version = ensure_demo_model(tracking_uri)  # (the demo store, its experiment and the demo model)
    with _locked(".champion.lock"):
        import mlflow

        client = mlflow.MlflowClient(tracking_uri=tracking_uri)
        try:
            return str(client.get_model_version_by_alias(name, "champion").version)
        except mlflow.exceptions.MlflowException:
            pass
        demo = client.get_model_version(MODEL_NAME, demo_version)  # the same artifact, registered under `name`
        try:
            client.create_registered_model(name)
        except mlflow.exceptions.MlflowException:
            pass  # registered before, without the alias
        created = client.create_model_version(name, demo.source, run_id=demo.run_id)
        client.set_registered_model_alias(name, "champion", created.version)
        return str(created.version)


def append_events(uri: str, hour, rows: int) -> int:
    """Append ``hour``'s events (``id``, ``x0``..``x7``, ``event_day``) to the Delta table at ``uri``, once per hour
    (a marker beside the table remembers the hours appended); return the rows appended (0 when appended before)."""
    key = hour.strftime("%Y%m%dT%H%M%S")
    marker = Path(uri.removeprefix("file://")).parent / "appended" / key
    with _locked(".events.lock"):
        if marker.exists():
            return 0
        import pyarrow as pa
        from deltalake import write_deltalake

        frame = features(f"events-{key}", rows, first_id=int(hour.timestamp()) // 3600 * rows)
        frame["event_day"] = hour.strftime("%Y-%m-%d")
        write_deltalake(uri.removeprefix("file://"), pa.Table.from_pandas(frame, preserve_index=False), mode="append")
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.touch()
        return rows


def write_labeled(uri: str, key: str, rows: int) -> bool:
    """Land labeled rows (``id``, ``x0``..``x7``, ``segment``, ``churned``) as Parquet at ``uri`` unless they exist.

    The label follows a relation that moved since the demo model was trained (``x3`` now matters too), with noise;
    ``segment`` (``a`` or ``b``) is independent of it, for the fairness metrics.
    """
    import numpy as np

    path = Path(uri.removeprefix("file://"))
    if path.exists():
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    frame = features(key, rows)
    rng = np.random.default_rng(zlib.crc32(f"label-{key}".encode()))
    x = frame[FEATURES]
    score = x["x0"] + 0.5 * x["x1"] - x["x2"] + 1.2 * x["x3"] + rng.normal(scale=0.3, size=rows)
    frame["segment"] = rng.choice(["a", "b"], size=rows)
    frame["churned"] = (score > 0).astype("int64")
    partial = path.with_name(f".{path.name}.partial")
    frame.to_parquet(partial, index=False)
    os.replace(partial, path)
    return True


def train_churn_model(frame, label_column: str, max_iter: int = 40):
    """The example's training callable: a gradient-boosted classifier on ``x0``..``x7`` (``max_iter`` rounds)."""
    from sklearn.ensemble import HistGradientBoostingClassifier

    model = HistGradientBoostingClassifier(max_iter=int(max_iter), random_state=0)
    return model.fit(frame[FEATURES], frame[label_column])


def _register_demo_model(client) -> str:
    import mlflow
    from mlflow.models import infer_signature
    from sklearn.ensemble import HistGradientBoostingClassifier

    train = features("training", 20_000)
    x = train[FEATURES]
    y = (x["x0"] + 0.5 * x["x1"] - x["x2"] > 0).astype(int)
    model = HistGradientBoostingClassifier(max_iter=50, random_state=0).fit(x, y)
    experiment = client.get_experiment_by_name(EXPERIMENT)
    experiment_id = experiment.experiment_id if experiment else client.create_experiment(
        EXPERIMENT, artifact_location=(DEMO_DIR / "mlartifacts").as_uri()
    )
    run = client.create_run(experiment_id, run_name="demo-churn-training")
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "model")
        with warnings.catch_warnings():
            # skops looks up scipy functions in every loaded module; Airflow's deprecated modules warn on each.
            warnings.simplefilter("ignore")
            mlflow.sklearn.save_model(model, path, signature=infer_signature(x, model.predict(x)),
                                      serialization_format="skops", skops_trusted_types=_TRUSTED)
        client.log_artifacts(run.info.run_id, path, "model")
    client.set_terminated(run.info.run_id)
    try:
        client.create_registered_model(MODEL_NAME)
    except mlflow.exceptions.MlflowException:
        pass  # registered before, without the alias
    created = client.create_model_version(MODEL_NAME, f"{run.info.artifact_uri}/model", run_id=run.info.run_id)
    client.set_registered_model_alias(MODEL_NAME, "champion", created.version)
    return str(created.version)


def write_input(uri: str, key: str, rows: int, fmt: str = "csv", header: bool = False,
                only_if_missing: bool = False, first_id: int = 0) -> bool:
    """Land a demo input file at ``uri`` (``file://``), written whole then renamed so no reader sees half of it.

    :return: whether a file was written (``False`` when ``only_if_missing`` and it exists).
    """
    path = Path(uri.removeprefix("file://"))
    if only_if_missing and path.exists():
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    frame = features(key, rows, first_id)
    partial = path.with_name(f".{path.name}.partial")
    if fmt == "csv":
        frame.to_csv(partial, header=header, index=False, float_format="%.17g")
    elif fmt == "jsonl":
        with open(partial, "w") as f:
            for row in frame.to_dict(orient="records"):
                f.write(json.dumps(row) + "\n")
    else:
        frame.to_parquet(partial, index=False)
    os.replace(partial, path)
    return True
