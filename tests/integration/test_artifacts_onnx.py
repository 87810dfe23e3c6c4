"""ONNX artifacts scored with onnxruntime: outputs equal onnxruntime's own run on the same rows."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from airflow_batch_scoring.artifacts import process_model
from airflow_batch_scoring.errors import ModelError, SchemaError
from tests.support.artifacts import score_spec
from tests.support.helpers import FEATURES, make_frame

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")


@pytest.fixture(scope="module")
def onnx_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A regressor with one input per column, and a classifier with one matrix input (skl2onnx conversions)."""
    from onnx import TensorProto, helper
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import FloatTensorType
    from sklearn.ensemble import GradientBoostingClassifier, RandomForestRegressor

    folder = tmp_path_factory.mktemp("onnx")
    train = make_frame(600, seed=31)
    x = train[FEATURES].to_numpy(np.float32)
    regressor = RandomForestRegressor(n_estimators=6, max_depth=5, random_state=0).fit(x, x[:, 0] * 3 - x[:, 1])
    model = convert_sklearn(regressor, initial_types=[("matrix", FloatTensorType([None, len(FEATURES)]))])
    graph = model.graph  # one [N, 1] input per column, concatenated in front of the trees
    del graph.input[:]
    graph.input.extend([helper.make_tensor_value_info(f, TensorProto.FLOAT, [None, 1]) for f in FEATURES])
    graph.node.insert(0, helper.make_node("Concat", FEATURES, ["matrix"], axis=1))
    onnx.save(model, folder / "regressor.onnx")

    labels = np.where(x[:, 0] + x[:, 1] / 10 > 0, "yes", "no")
    classifier = GradientBoostingClassifier(n_estimators=15, max_depth=3, random_state=0).fit(x, labels)
    matrix = convert_sklearn(classifier, initial_types=[("input", FloatTensorType([None, len(FEATURES)]))])
    onnx.save(matrix, folder / "classifier.onnx")
    schema = [{"name": f, "type": "Float32"} for f in FEATURES]
    onnx.helper.set_model_props(matrix, {"input_schema": json.dumps(schema)})
    onnx.save(matrix, folder / "classifier_with_schema.onnx")
    return {"regressor": folder / "regressor.onnx", "classifier": folder / "classifier.onnx",
            "classifier_with_schema": folder / "classifier_with_schema.onnx"}


def _session(path: Path):
    """onnxruntime's own session, single-threaded as the replicas run it (then a row's result is batch-independent)."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def test_column_inputs_give_the_schema_and_predictions(onnx_models, tmp_path: Path):
    spec = process_model(str(onnx_models["regressor"]), str(tmp_path / "t"), copy=True, require_input_schema=True)
    assert spec.artifact_type == "onnx" and spec.flavor == "onnx"
    assert spec.input_schema == [{"name": f, "type": "Float32"} for f in FEATURES]
    assert [i["name"] for i in spec.source_metadata["inputs"]] == FEATURES
    frame = make_frame(1000, seed=32)
    out, _ = score_spec(spec, frame, tmp_path / "w", replicas=2, batch_size=97)
    feed = {f: frame[f].to_numpy(np.float32).reshape(-1, 1) for f in FEATURES}
    expected = _session(onnx_models["regressor"]).run(None, feed)[0][:, 0]
    assert out["prediction"].dtype == np.float32
    np.testing.assert_array_equal(out["prediction"].to_numpy(), expected)


def test_matrix_input_with_schema_from_metadata_and_probabilities(onnx_models, tmp_path: Path):
    spec = process_model(str(onnx_models["classifier_with_schema"]), str(tmp_path / "t"), require_input_schema=True)
    assert spec.input_schema == [{"name": f, "type": "Float32"} for f in FEATURES]
    frame = make_frame(700, seed=33)
    out, _ = score_spec(spec, frame, tmp_path / "w", replicas=1, batch_size=128, predict_probabilities=True)
    labels, proba = _session(onnx_models["classifier"]).run(None, {"input": frame[FEATURES].to_numpy(np.float32)})
    assert out["prediction"].tolist() == labels.tolist()
    for label in ("no", "yes"):
        np.testing.assert_array_equal(out[f"probability_{label}"].to_numpy(), [row[label] for row in proba])


def test_matrix_input_without_schema_is_refused_with_a_way_out(onnx_models, tmp_path: Path):
    with pytest.raises(ModelError, match=r"input schema of the model .* is unknown.*Give input_schema=.*schema_check"):
        process_model(str(onnx_models["classifier"]), str(tmp_path / "t"), require_input_schema=True)
    schema = [{"name": f, "type": "float64"} for f in FEATURES]  # the data's type; fed to the graph as float32
    spec = process_model(str(onnx_models["classifier"]), str(tmp_path / "t"), input_schema=schema)
    frame = make_frame(300, seed=34)
    out, _ = score_spec(spec, frame, tmp_path / "w", replicas=1)
    labels = _session(onnx_models["classifier"]).run(["output_label"], {"input": frame[FEATURES].to_numpy(np.float32)})
    assert out["prediction"].tolist() == labels[0].tolist()


def test_schema_that_does_not_fit_the_graph_is_a_clear_error(onnx_models, tmp_path: Path):
    wrong_width = [{"name": f, "type": "Float32"} for f in FEATURES[:3]]
    spec = process_model(str(onnx_models["classifier"]), str(tmp_path / "t"), input_schema=wrong_width)
    with pytest.raises(SchemaError, match="takes 5 columns .* but the input schema has 3"):
        score_spec(spec, make_frame(20), tmp_path / "w1", replicas=1)
    wrong_type = [{"name": f, "type": "String" if f == "f2" else "Float32"} for f in FEATURES]
    spec = process_model(str(onnx_models["regressor"]), str(tmp_path / "t"), input_schema=wrong_type)
    with pytest.raises(SchemaError, match="column 'f2' type String, but the ONNX model wants tensor\\(float\\)"):
        score_spec(spec, make_frame(20), tmp_path / "w2", replicas=1)


def test_file_that_is_not_onnx(tmp_path: Path):
    bad = tmp_path / "model.onnx"
    bad.write_bytes(b"not a protobuf")
    with pytest.raises(ModelError, match="onnxruntime cannot load"):
        process_model(str(bad), str(tmp_path / "t"))
