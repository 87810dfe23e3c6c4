"""Replicas load exactly the artifact the driver processed, for every flavour: an MLflow folder whose model.pkl was
swapped after processing is refused before anything of it is unpickled, and what is hashed is what is loaded (a
private copy written from the very bytes that were hashed)."""

from __future__ import annotations

import hashlib
import os
import pathlib
import pickle
import stat
from pathlib import Path

import numpy as np
import pytest

from airflow_batch_scoring.artifacts import process_model
from airflow_batch_scoring.artifacts.digest import sha256_of, verified_copy
from airflow_batch_scoring.errors import ModelError, ReplicaError
from airflow_batch_scoring.runtime import verified
from airflow_batch_scoring.runtime.verified import load_verified
from tests.support.artifacts import score_spec
from tests.support.helpers import FEATURES, Models, make_frame


class Tampered:
    """Unpickling this creates a marker file: proof that a file was loaded (code ran) when it must not have been."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (pathlib.Path.touch, (pathlib.Path(self.marker),))


@pytest.fixture
def mlflow_folder(models: Models, tmp_path: Path):
    import mlflow.sklearn

    folder = tmp_path / "mlflow-model"
    mlflow.sklearn.save_model(models.regressor, str(folder), serialization_format="pickle")
    return process_model(str(folder), str(tmp_path / "target"), copy=True)


def test_a_swapped_mlflow_model_file_is_refused_by_every_replica(mlflow_folder, tmp_path: Path):
    spec = mlflow_folder
    assert spec.flavor == "mlflow" and (Path(spec.path) / "model.pkl").exists()
    marker = tmp_path / "code-ran"
    (Path(spec.path) / "model.pkl").write_bytes(pickle.dumps(Tampered(marker)))  # after the driver processed it
    with pytest.raises((ModelError, ReplicaError), match="NOT loaded"):
        score_spec(spec, make_frame(60), tmp_path / "w", replicas=2)
    assert not marker.exists()
    with pytest.raises(ModelError, match=rf"has digest sha256:[0-9a-f]{{64}}, but {spec.digest} was expected"):
        load_verified(spec, probabilities=False, output_schema=None)  # what each replica does first
    assert not marker.exists()
    pickle.loads((Path(spec.path) / "model.pkl").read_bytes())  # the test is meaningful: loading it runs its code
    assert marker.exists()


def test_the_replica_loads_a_private_copy_of_the_bytes_it_hashed(mlflow_folder, models: Models, tmp_path: Path):
    spec = mlflow_folder
    verified.discard_verified_copies()
    predictor = load_verified(spec, probabilities=False, output_schema=None)
    [copy] = [Path(folder) for folder in verified._FOLDERS]
    assert stat.S_IMODE(copy.stat().st_mode) == 0o700  # only the replica's user can open it
    loaded = copy / Path(spec.path).name
    assert sha256_of(str(loaded)) == spec.digest
    assert all(stat.S_IMODE(p.stat().st_mode) == 0o600 for p in loaded.rglob("*") if p.is_file())
    # the original changes after the check: what was loaded is the checked copy
    (Path(spec.path) / "model.pkl").write_bytes(b"swapped")
    frame = make_frame(40, seed=5)
    import pyarrow as pa

    result = predictor.predict(pa.Table.from_pandas(frame[FEATURES]))
    np.testing.assert_array_equal(result.column("prediction").to_numpy(), models.regressor.predict(frame[FEATURES]))
    verified.discard_verified_copies()
    assert not copy.exists()


def test_verified_copy_hashes_exactly_what_it_writes(tmp_path: Path):
    original = tmp_path / "model.onnx"
    original.write_bytes(os.urandom(3 << 20))  # several read chunks
    digest = "sha256:" + hashlib.sha256(original.read_bytes()).hexdigest()
    copy = Path(verified_copy(str(original), digest, str(tmp_path / "private")))
    assert copy.read_bytes() == original.read_bytes() and copy.parent == tmp_path / "private"
    original.write_bytes(b"changed")
    with pytest.raises(ModelError, match="NOT loaded"):
        verified_copy(str(original), digest, str(tmp_path / "other"))
    assert list((tmp_path / "other").iterdir()) == []  # a refused copy is removed
