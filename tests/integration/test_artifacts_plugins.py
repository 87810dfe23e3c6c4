"""Plug-in artifact processors found through the ``airflow_batch_scoring.artifact_processors`` entry point: a Python
callable, and a command run with SOURCE_PATH and TARGET_PATH set."""

from __future__ import annotations

from pathlib import Path

import pytest

from airflow_batch_scoring.artifacts import process_model
from airflow_batch_scoring.artifacts.plugins import plugin_names
from airflow_batch_scoring.errors import ModelError
from tests.support.artifacts import score_spec
from tests.support.helpers import FEATURES, Models, make_frame
from tests.support.plugins import install_plugin

PLUGIN = '''
import shutil


def unwrap(source_path, target_path, **options):
    """An 'acme' file is a joblib file with a header line; write the joblib file into TARGET_PATH."""
    with open(source_path, "rb") as source:
        assert source.readline() == b"ACME\\n"
        with open(f"{target_path}/model.joblib", "wb") as target:
            shutil.copyfileobj(source, target)
    return {"artifact_type": "sklearn/joblib", "metadata": {"unwrapped_by": "acme", **options}}


def broken(source_path, target_path, **options):
    raise RuntimeError("cannot read this model")


COPY_AS_ONNX = ["sh", "-c", 'cp "$SOURCE_PATH" "$TARGET_PATH/model.onnx"']
FAIL = ["sh", "-c", "echo conversion failed >&2; exit 3"]
'''


@pytest.fixture
def installed_plugin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Install a plug-in package the way pip would leave it: a module and a dist-info with entry_points.txt."""
    site = install_plugin(tmp_path / "site", "acme_processors", PLUGIN, """\
            [airflow_batch_scoring.artifact_processors]
            acme/joblib = acme_processors:unwrap
            acme/broken = acme_processors:broken
            acme/onnx-copy = acme_processors:COPY_AS_ONNX
            acme/fail = acme_processors:FAIL
            """)
    monkeypatch.syspath_prepend(str(site))


def test_callable_plugin_processes_and_scores(installed_plugin, models: Models, tmp_path: Path):
    assert {"acme/joblib", "acme/onnx-copy"} <= set(plugin_names())
    source = tmp_path / "model.acme"
    source.write_bytes(b"ACME\n" + models.regressor_path.read_bytes())
    spec = process_model(
        str(source), str(tmp_path / "t"), artifact_type="ACME/joblib", options={"team": "risk"}
    )
    assert spec.artifact_type == "acme/joblib" and spec.flavor == "sklearn"
    assert spec.source_metadata["processed_as"] == "sklearn/joblib"
    assert spec.source_metadata["unwrapped_by"] == "acme" and spec.source_metadata["team"] == "risk"
    assert Path(spec.path) == tmp_path / "t" / "processed" / "model.joblib"
    frame = make_frame(250, seed=61)
    out, _ = score_spec(spec, frame, tmp_path / "w", replicas=1)
    assert out["prediction"].tolist() == models.regressor.predict(frame[FEATURES]).tolist()


def test_command_plugin_gets_source_and_target_paths(installed_plugin, tmp_path: Path):
    pytest.importorskip("skl2onnx")
    import numpy as np
    from skl2onnx import to_onnx
    from sklearn.tree import DecisionTreeRegressor

    x = make_frame(100)[FEATURES].to_numpy(np.float32)
    model = to_onnx(DecisionTreeRegressor(max_depth=3).fit(x, x[:, 0]), x[:1])
    source = tmp_path / "exported.bin"
    source.write_bytes(model.SerializeToString())
    spec = process_model(
        str(source), str(tmp_path / "t"), artifact_type="acme/onnx-copy",
        input_schema=[{"name": f, "type": "Float32"} for f in FEATURES],
    )
    assert spec.flavor == "onnx" and spec.artifact_type == "acme/onnx-copy"
    assert Path(spec.path).read_bytes() == source.read_bytes()
    assert spec.input_schema == [{"name": f, "type": "Float32"} for f in FEATURES]


def test_failing_plugins_are_clear_errors(installed_plugin, tmp_path: Path):
    source = tmp_path / "m.bin"
    source.write_bytes(b"x")
    with pytest.raises(ModelError, match="'acme/broken' failed on .*RuntimeError: cannot read this model"):
        process_model(str(source), str(tmp_path / "t"), artifact_type="acme/broken")
    with pytest.raises(ModelError, match="failed with exit code 3: conversion failed"):
        process_model(str(source), str(tmp_path / "t"), artifact_type="acme/fail")
    with pytest.raises(ModelError, match="Unknown artifact type 'acme/nothing'.*acme/joblib"):
        process_model(str(source), str(tmp_path / "t"), artifact_type="acme/nothing")
