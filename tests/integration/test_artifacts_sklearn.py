"""scikit-learn joblib/pickle artifacts: the digest is checked before anything unpickles the file."""

from __future__ import annotations

import hashlib
import pathlib
from pathlib import Path

import joblib
import numpy as np
import pytest

from airflow_batch_scoring.artifacts import process_model
from airflow_batch_scoring.errors import ConfigurationError, ModelError, ReplicaError
from tests.support.artifacts import score_spec
from tests.support.helpers import FEATURES, Models, make_frame


class Tampered:
    """Unpickling this creates a marker file: proof that a file was loaded (code ran) when it must not have been."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (pathlib.Path.touch, (pathlib.Path(self.marker),))


def sha256sum(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_tampered_pickle_is_refused_before_it_is_loaded(models: Models, tmp_path: Path):
    good = tmp_path / "model.joblib"
    good.write_bytes(models.regressor_path.read_bytes())
    digest = sha256sum(good)
    marker = tmp_path / "code-ran"
    joblib.dump(Tampered(marker), good)  # the file changes after its digest was published

    refused = rf"has digest sha256:[0-9a-f]{{64}}, but sha256:{digest} was expected.*NOT loaded"
    with pytest.raises(ModelError, match=refused):
        process_model(str(good), str(tmp_path / "target"), expected_sha256=digest, copy=True)
    assert not marker.exists()
    assert not (tmp_path / "target").exists()

    joblib.load(good)  # the test is meaningful: loading the tampered file does run its code
    assert marker.exists()


def test_pickle_changed_after_processing_is_refused_by_every_replica(models: Models, tmp_path: Path):
    spec = process_model(
        str(models.regressor_path),
        str(tmp_path / "target"),
        expected_sha256=f"SHA256:{sha256sum(models.regressor_path).upper()}",
        copy=True,
    )
    assert spec.artifact_type == "sklearn/joblib" and spec.digest == f"sha256:{sha256sum(models.regressor_path)}"
    assert Path(spec.path).parent == tmp_path / "target"
    marker = tmp_path / "code-ran"
    joblib.dump(Tampered(marker), spec.path)
    with pytest.raises((ModelError, ReplicaError), match="NOT loaded"):
        score_spec(spec, make_frame(50), tmp_path / "w", replicas=2)
    assert not marker.exists()
    assert not (tmp_path / "w" / "out").exists() or not list((tmp_path / "w" / "out").glob("part-*"))


def test_processed_pickle_scores_like_the_estimator(models: Models, tmp_path: Path):
    spec = process_model(
        str(models.classifier_path), str(tmp_path / "t"), artifact_type="SKLEARN/JOBLIB", copy=True,
        expected_sha256=sha256sum(models.classifier_path),
    )
    frame = make_frame(400, seed=3)
    out, summary = score_spec(spec, frame, tmp_path / "w", replicas=1, predict_probabilities=True)
    assert out["prediction"].tolist() == models.classifier.predict(frame[FEATURES]).tolist()
    proba = models.classifier.predict_proba(frame[FEATURES])
    for index, label in enumerate(models.classifier.classes_):
        np.testing.assert_array_equal(out[f"probability_{label}"].to_numpy(), proba[:, index])
    assert summary["model_digest"] == spec.digest


def test_bad_digest_and_unknown_type_are_clear_errors(models: Models, tmp_path: Path):
    with pytest.raises(ConfigurationError, match="expected_sha256 must be 64 hexadecimal digits"):
        process_model(str(models.regressor_path), str(tmp_path), expected_sha256="abc")
    with pytest.raises(ModelError, match=r"Unknown artifact type 'tensorflow/saved'.*auto, python/mlflow, "
                       r"sklearn/joblib, onnx, h2o3/mojo"):
        process_model(str(models.regressor_path), str(tmp_path), artifact_type="tensorflow/saved")
    strange = tmp_path / "model.bin"
    strange.write_bytes(b"\x00" * 10)
    with pytest.raises(ModelError, match="Cannot tell the artifact type.*Set artifact_type"):
        process_model(str(strange), str(tmp_path))
    with pytest.raises(ModelError, match="does not exist"):
        process_model(str(tmp_path / "missing.pkl"), str(tmp_path))
    with pytest.raises(ModelError, match="is a folder"):
        process_model(str(tmp_path), str(tmp_path / "t"), artifact_type="sklearn/joblib")
