"""Models and data for the tests: real scikit-learn estimators, a real MLflow registry, files in every format."""

from __future__ import annotations

import io
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import fsspec
import joblib
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq
from fsspec.implementations.local import LocalFileSystem

FEATURES = ["f0", "f1", "f2", "f3", "f4"]
SCHEMA = [{"name": name, "type": "Float64"} for name in FEATURES]


@dataclass
class Registered:
    """The same two estimators in the real MLflow registry (SQLite store)."""

    registry_name: str
    registry_version: str
    run_uri: str


@dataclass
class Models:
    """A classifier, a regressor and a linear model, as joblib files; in the MLflow registry on first use of a
    ``registry_*`` or ``run_uri`` attribute (the unit tests never touch the registry, so they never pay for it)."""

    classifier: Any
    regressor: Any
    linear: Any
    classifier_path: Path
    regressor_path: Path
    _registered: Registered | None = field(default=None, repr=False)

    def estimator(self, kind: str) -> Any:
        return self.classifier if kind == "classifier" else self.regressor

    def path(self, kind: str) -> Path:
        return self.classifier_path if kind == "classifier" else self.regressor_path

    @property
    def registry_name(self) -> str:
        return self._registry().registry_name

    @property
    def registry_version(self) -> str:
        return self._registry().registry_version

    @property
    def run_uri(self) -> str:
        return self._registry().run_uri

    def _registry(self) -> Registered:
        if self._registered is None:
            self._registered = register_models(self.classifier, self.regressor)
        return self._registered


def make_frame(rows: int, seed: int = 0) -> pd.DataFrame:
    """An id column and five float features with full-precision values (and awkward magnitudes)."""
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(rng.normal(size=(rows, len(FEATURES))) * [1, 10, 0.001, 1e6, 3], columns=FEATURES)
    frame.insert(0, "id", np.arange(rows, dtype=np.int64) + seed * 1_000_000)
    return frame


def train_models(folder: Path) -> Models:
    from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor
    from sklearn.linear_model import Ridge

    x, labels, target = _training_data()
    classifier = HistGradientBoostingClassifier(max_iter=20, random_state=0).fit(x, labels)
    # Tree ensembles predict each row independently of its neighbours, so outputs can be compared bit for bit.
    # (A linear model's BLAS kernels may differ in the last bit with a row's position in the batch: see
    # test_linear_model_within_one_ulp.)
    regressor = HistGradientBoostingRegressor(max_iter=30, random_state=0).fit(x, target)
    linear = Ridge().fit(x, target)
    classifier_path, regressor_path = folder / "classifier.joblib", folder / "regressor.joblib"
    joblib.dump(classifier, classifier_path)
    joblib.dump(regressor, regressor_path)
    joblib.dump(linear, folder / "linear.joblib")
    return Models(classifier, regressor, linear, classifier_path, regressor_path)


def _training_data() -> tuple[pd.DataFrame, np.ndarray, pd.Series]:
    train = make_frame(2000, seed=99)
    x = train[FEATURES]
    return x, np.where(x["f0"] + x["f1"] / 10 > 0, "yes", "no"), x["f0"] * 3.3 + x["f3"] / 1e6


def register_models(classifier: Any, regressor: Any) -> Registered:
    """Log the classifier (skops) as ``churn-classifier`` with ``@champion``, and the regressor (cloudpickle) in the
    same run. The requirements are given: MLflow's inference of them starts a process and takes seconds."""
    import mlflow
    from mlflow.models import infer_signature

    x, _, _ = _training_data()
    mlflow.set_experiment("batch-scoring-tests")
    with mlflow.start_run() as run:
        info = mlflow.sklearn.log_model(
            classifier,
            name="model",
            signature=infer_signature(x, classifier.predict(x)),
            registered_model_name="churn-classifier",
            serialization_format="skops",
            skops_trusted_types=["sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor"],
            pip_requirements=["scikit-learn", "skops"],
        )
        mlflow.sklearn.log_model(
            regressor,
            name="regressor",
            signature=infer_signature(x, regressor.predict(x)),
            serialization_format="cloudpickle",
            pip_requirements=["scikit-learn", "cloudpickle"],
        )
    client = mlflow.MlflowClient()
    version = str(info.registered_model_version)
    client.set_registered_model_alias("churn-classifier", "champion", version)
    return Registered("churn-classifier", version, f"runs:/{run.info.run_id}/regressor")


FORMATS = ["csv", "csv_header", "jsonl", "parquet"]


def write_frame(frame: pd.DataFrame, path: Path, fmt: str) -> None:
    """Write ``frame`` as ``fmt`` (``csv`` without header, ``csv_header``, ``jsonl`` or ``parquet``)."""
    table = pa.Table.from_pandas(frame, preserve_index=False)
    path.parent.mkdir(parents=True, exist_ok=True)
    if fmt in ("csv", "csv_header"):
        pa_csv.write_csv(table, path, write_options=pa_csv.WriteOptions(include_header=fmt == "csv_header"))
    elif fmt == "jsonl":
        with open(path, "w") as f:
            for record in frame.to_dict(orient="records"):
                f.write(json.dumps(record) + "\n")
    else:
        pq.write_table(table, path, row_group_size=max(1, len(frame) // 4))


def suffix(fmt: str) -> str:
    return {"csv": "csv", "csv_header": "csv", "jsonl": "jsonl", "parquet": "parquet"}[fmt]


def source_spec(fmt: str, uri: str, columns: list[str] | None = None) -> dict[str, Any]:
    spec: dict[str, Any] = {"uri": uri, "format": "csv" if fmt.startswith("csv") else fmt}
    if fmt == "csv_header":
        spec["header"] = True
    if fmt == "csv":
        spec["columns"] = columns or ["id", *FEATURES]
    return spec


def read_output(
    folder: Path | str,
    fmt: str,
    names: list[str] | None = None,
    header: bool = False,
    *,
    fs: fsspec.AbstractFileSystem | None = None,
    published: bool = False,
) -> pa.Table:
    """Read every part of an output folder into one table (exact float parsing).

    :param fmt: ``csv`` (columns named ``names`` unless ``header``), ``csv_header``, ``jsonl`` or ``parquet``.
    :param fs: the file system the folder is on (an object store's ``bucket/path``); the local one by default.
    :param published: also require ``_SUCCESS`` and at least one part.
    """
    fs = fs or LocalFileSystem()
    fs.invalidate_cache()
    entries = sorted(fs.ls(str(folder), detail=False))
    parts = [e for e in entries if e.rsplit("/", 1)[-1].startswith("part-")]
    if published:
        assert any(e.rsplit("/", 1)[-1] == "_SUCCESS" for e in entries), f"{folder} was not published"
        assert parts, f"no parts in {folder}"
    tables = []
    for part in parts:
        data = fs.cat_file(part)
        if fmt in ("csv", "csv_header"):
            options = pa_csv.ReadOptions(column_names=None if header or fmt == "csv_header" else names)
            tables.append(pa_csv.read_csv(io.BytesIO(data), read_options=options))
        elif fmt == "jsonl":
            tables.append(pa.Table.from_pylist([json.loads(line) for line in data.decode().splitlines()]))
        else:
            tables.append(pq.read_table(io.BytesIO(data)))
    return pa.concat_tables(tables, promote_options="default")


def assert_nothing_published(sink: Path) -> None:
    """A failed run leaves no part, manifest, _SUCCESS or staging folder in the sink."""
    if not sink.exists():
        return
    leftovers = sorted(p.name for p in sink.iterdir())
    assert leftovers == [], f"a failed run left {leftovers} in {sink}"


class SlowModel:
    """A regressor that takes its time (0.05 s a batch), so a test can act on a replica mid-run."""

    feature_names_in_ = np.array(FEATURES, dtype=object)

    def predict(self, x: pd.DataFrame) -> np.ndarray:
        import time

        time.sleep(0.05)
        return x["f0"].to_numpy() * 2
