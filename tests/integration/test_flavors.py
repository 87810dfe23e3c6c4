"""The model flavour registry: importing it imports no model library, and a flavour another package adds through the
``airflow_batch_scoring.flavors`` entry point is detected, processed (digest pinned) and loaded by real replicas."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from airflow_batch_scoring import flavors
from airflow_batch_scoring.artifacts import process_model
from airflow_batch_scoring.artifacts.digest import sha256_of
from airflow_batch_scoring.errors import ModelError
from airflow_batch_scoring.job import ModelSpec
from tests.support.artifacts import score_spec
from tests.support.helpers import FEATURES, make_frame
from tests.support.plugins import install_plugin

PLUGIN = '''
import json

import numpy as np
import pyarrow as pa

from airflow_batch_scoring.errors import ModelError
from airflow_batch_scoring.flavors.base import PREDICTION, Flavor, Predictor, output_table
from airflow_batch_scoring.flavors.processing import require_local, stage
from airflow_batch_scoring.job import ModelSpec
from airflow_batch_scoring.schema import ModelSchema


class LinearPredictor(Predictor):
    def __init__(self, weights, **kwargs):
        super().__init__(**kwargs)
        self.weights = weights

    def predict(self, features):
        total = sum(features.column(name).to_numpy() * weight for name, weight in self.weights.items())
        return output_table([PREDICTION], [pa.array(np.asarray(total, dtype=np.float64))], self.output_schema)


class AcmeFlavor(Flavor):
    """An 'acme' model: a JSON file of one weight per feature; the prediction is the weighted sum."""

    name = "acme"
    artifact_type = "acme/linear"
    aliases = ("acme",)
    description = "an Acme linear model (.acme)"

    def detect(self, path):
        return path.endswith(".acme")

    def process(self, request):
        path = stage(require_local(request.uri, self.artifact_type, "file (.acme)"), request.target_dir, request.copy)
        with open(path) as file:
            weights = json.load(file)["weights"]
        return ModelSpec(uri=request.uri, path=path, flavor=self.name, artifact_type=self.artifact_type,
                         input_schema=[{"name": name, "type": "Float64"} for name in weights])

    def load(self, spec, *, probabilities, output_schema):
        if probabilities:
            raise ModelError("An acme model has no classes.")
        with open(spec.path) as file:
            weights = json.load(file)["weights"]
        return LinearPredictor(weights, input_schema=ModelSchema.parse(spec.input_schema), output_schema=output_schema)


NOT_A_FLAVOR = 42
'''


@pytest.fixture
def acme_flavor(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Install a flavour package the way pip would leave it (a module and a dist-info with entry_points.txt), for this
    process and for the replicas it starts."""
    site = install_plugin(tmp_path / "site", "acme_flavor", PLUGIN, """\
            [airflow_batch_scoring.flavors]
            acme = acme_flavor:AcmeFlavor
            broken = acme_flavor:NOT_A_FLAVOR
            """)
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.setenv("PYTHONPATH", str(site))  # the replicas are other processes
    return site


def test_importing_the_registry_imports_no_model_library():
    """``import airflow_batch_scoring.flavors`` (what every replica and driver does) loads no MLflow, onnxruntime,
    H2O or XGBoost, and each entry into the flavours and the artifact pipeline imports on its own."""
    check = (
        "import importlib, sys\n"
        "importlib.import_module(sys.argv[1])\n"
        "heavy = {'mlflow', 'onnxruntime', 'h2o', 'xgboost', 'lightgbm', 'airflow'}\n"
        "print(sorted({m.split('.')[0] for m in sys.modules} & heavy))\n"
    )
    for module in ("airflow_batch_scoring.flavors", "airflow_batch_scoring.runtime.verified",
                   "airflow_batch_scoring.artifacts.digest", "airflow_batch_scoring.artifacts"):
        done = subprocess.run([sys.executable, "-c", check, module], capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr[-3000:]
        assert done.stdout.strip() == "[]", module


def test_a_plugin_flavour_is_detected_processed_and_scored_by_replicas(acme_flavor, tmp_path: Path):
    weights = {"f0": 1.5, "f1": -0.25, "f2": 100.0, "f3": 1e-6, "f4": 2.0}
    model = tmp_path / "model.acme"
    model.write_text(json.dumps({"weights": weights}))
    assert {"acme", "broken"} <= set(flavors.plugin_names())
    spec = process_model(str(model), str(tmp_path / "target"), copy=True)  # artifact_type="auto"
    assert (spec.flavor, spec.artifact_type) == ("acme", "acme/linear")
    assert spec.digest == sha256_of(spec.path) and Path(spec.path).parent == tmp_path / "target"
    assert process_model(str(model), str(tmp_path / "t2"), artifact_type="ACME").artifact_type == "acme/linear"
    frame = make_frame(300, seed=17)
    out, _ = score_spec(spec, frame, tmp_path / "w", replicas=2)
    expected = sum(frame[name].to_numpy() * weight for name, weight in weights.items())
    np.testing.assert_array_equal(out["prediction"].to_numpy(), expected)


def test_a_plugin_flavour_artifact_changed_after_processing_is_refused(acme_flavor, tmp_path: Path):
    model = tmp_path / "model.acme"
    model.write_text(json.dumps({"weights": {name: 1.0 for name in FEATURES}}))
    spec = process_model(str(model), str(tmp_path / "target"), copy=True)
    Path(spec.path).write_text(json.dumps({"weights": {name: 2.0 for name in FEATURES}}))
    from airflow_batch_scoring.runtime.verified import load_verified

    with pytest.raises(ModelError, match="NOT loaded"):
        load_verified(spec, probabilities=False, output_schema=None)


def test_a_broken_or_unknown_flavour_is_a_clear_error(acme_flavor, tmp_path: Path):
    with pytest.raises(ModelError, match=r"flavour 'broken' .* is a int; it must be a subclass"):
        flavors.flavor_named("broken")
    path = tmp_path / "model.bin"
    path.write_bytes(b"x")
    with pytest.raises(ModelError, match=r"Unknown model flavor 'nope': use one of 'mlflow', 'sklearn', 'onnx', "
                                         r"'mojo'.*'airflow_batch_scoring.flavors' entry point"):
        flavors.load_predictor(ModelSpec(uri=str(path), path=str(path), flavor="nope"), probabilities=False,
                               output_schema=None)
