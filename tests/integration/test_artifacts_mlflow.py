"""MLflow artifacts against the real registry (SQLite store): alias pinning through ProcessArtifactOperator ->
BatchScoringOperator in ``dag.test()``, recorded source metadata, schemas from tags and metadata, clear errors."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from airflow_batch_scoring.artifacts import process_model
from airflow_batch_scoring.errors import InputError, ModelError, SchemaError
from tests.support.artifacts import score_spec
from tests.support.helpers import FEATURES, make_frame
from tests.support.registry import MODEL, Versions


def test_process_resolves_alias_and_records_source(versions: Versions, tmp_path: Path):
    import mlflow

    client = mlflow.MlflowClient()
    client.set_registered_model_alias(MODEL, "challenger", "2")
    before = {k: os.environ.get(k) for k in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")}
    spec = process_model(
        f"models:/{MODEL}@challenger", str(tmp_path / "a"), os.environ["MLFLOW_TRACKING_URI"],
        registry_uri=os.environ["MLFLOW_TRACKING_URI"], copy=True,
    )
    assert {k: os.environ.get(k) for k in before} == before  # explicit URIs leave the environment alone
    assert (spec.version, spec.source_model_version, spec.source_model_name) == ("2", "2", MODEL)
    assert spec.source_metadata["alias"] == "challenger" and "challenger" in spec.source_metadata["aliases"]
    frame = make_frame(300, seed=6)
    out, summary = score_spec(spec, frame, tmp_path / "w", replicas=1)
    np.testing.assert_array_equal(out["prediction"].to_numpy(), versions.second.predict(frame[FEATURES]))
    assert summary["model_uri"] == f"models:/{MODEL}/2"


def test_run_uri_and_model_folder(versions: Versions, tmp_path: Path):
    by_run = process_model(versions.run_uri, str(tmp_path / "run"))
    assert by_run.artifact_type == "python/mlflow" and by_run.source_metadata["run_id"] in versions.run_uri
    folder = process_model(by_run.path, str(tmp_path / "folder"), copy=True)
    assert folder.path.startswith(str(tmp_path / "folder")) and folder.digest == by_run.digest
    assert folder.input_schema == by_run.input_schema == [{"name": n, "type": "Float64"} for n in FEATURES]


def test_schema_from_registry_tags_wins_over_signature(versions: Versions, tmp_path: Path):
    import mlflow

    schema = [{"name": name, "type": "FLOAT64" if name != "f0" else "float32"} for name in FEATURES]
    client = mlflow.MlflowClient()
    client.set_model_version_tag(MODEL, "1", "input_schema", json.dumps(schema))
    client.set_model_version_tag(MODEL, "1", "output_schema", '[{"name": "score", "type": "FLOAT32"}]')
    try:
        spec = process_model(f"models:/{MODEL}/1", str(tmp_path / "a"))
    finally:
        client.delete_model_version_tag(MODEL, "1", "input_schema")
        client.delete_model_version_tag(MODEL, "1", "output_schema")
    assert spec.input_schema == [{"name": n, "type": "Float64" if n != "f0" else "Float32"} for n in FEATURES]
    assert spec.output_schema == [{"name": "score", "type": "Float32"}]
    frame = make_frame(150, seed=8)
    out, _ = score_spec(spec, frame, tmp_path / "w", replicas=1)
    rows = frame[FEATURES].astype({"f0": np.float32}).astype(np.float64)  # what the model saw: f0 as Float32
    expected = versions.first.predict(rows).astype(np.float32)
    np.testing.assert_array_equal(out["score"].to_numpy(), expected)


def test_malformed_schema_tag_is_a_clear_error(versions: Versions, tmp_path: Path):
    import mlflow

    client = mlflow.MlflowClient()
    client.set_model_version_tag(MODEL, "2", "input_schema", '[{"name": "f0", "type": "decimal"}]')
    try:
        with pytest.raises(SchemaError, match="input_schema in the registry version's tags.*Unknown column type"):
            process_model(f"models:/{MODEL}/2", str(tmp_path / "a"))
    finally:
        client.delete_model_version_tag(MODEL, "2", "input_schema")


def test_missing_models_are_clear_errors(versions: Versions, tmp_path: Path):
    with pytest.raises(ModelError, match="Cannot find 'models:/pinning-model/9'.*Check the name and the version"):
        process_model(f"models:/{MODEL}/9", str(tmp_path))
    with pytest.raises(ModelError, match="no alias 'nope' on model 'no-such-model'"):
        process_model("models:/no-such-model@nope", str(tmp_path))
    with pytest.raises(ModelError, match="does not exist"):
        process_model(str(tmp_path / "nothing-here"), str(tmp_path), artifact_type="python/mlflow")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelError, match="no MLmodel file"):
        process_model(str(tmp_path / "empty"), str(tmp_path), artifact_type="mlflow")


def test_schema_types_that_do_not_match_the_data(versions: Versions, tmp_path: Path):
    """The processed schema says Int32 for f1; a fractional value there stops the run with row and column."""
    spec = process_model(
        f"models:/{MODEL}/1",
        str(tmp_path / "a"),
        input_schema=[{"name": n, "type": "Int32" if n == "f1" else "Float64"} for n in FEATURES],
    )
    with pytest.raises(InputError, match="column 'f1'.*Int32"):
        score_spec(spec, make_frame(50, seed=9), tmp_path / "w", replicas=1)
    assert not list((tmp_path / "w" / "out").glob("part-*")) if (tmp_path / "w" / "out").exists() else True


def test_processed_mapping_is_checked(versions: Versions, tmp_path: Path):
    spec = process_model(f"models:/{MODEL}/1", str(tmp_path / "a"))
    again = process_model(spec.to_dict(), str(tmp_path / "unused"))
    assert again == spec
    with pytest.raises(ModelError, match="lacks"):
        process_model({"uri": "x"}, str(tmp_path))
    (Path(spec.path) / "MLmodel").write_text((Path(spec.path) / "MLmodel").read_text() + "\n# changed\n")
    with pytest.raises(ModelError, match="was NOT loaded"):
        process_model(spec.to_dict(), str(tmp_path / "unused"))


def test_one_version_has_one_digest_however_it_is_reached(versions: Versions, tmp_path: Path):
    """``models:/name/1`` through the environment's tracking URI (MLflow's models:/ download, which adds a
    ``registered_model_meta`` note) and through an explicit URI (the version's files) give the same digest; a model
    folder with a changed model file does not."""
    from airflow_batch_scoring.artifacts.digest import sha256_of

    from_env = process_model(f"models:/{MODEL}/1", str(tmp_path / "env"))
    explicit = process_model(f"models:/{MODEL}/1", str(tmp_path / "explicit"), os.environ["MLFLOW_TRACKING_URI"])
    files = {p.name for p in Path(from_env.path).iterdir()} ^ {p.name for p in Path(explicit.path).iterdir()}
    assert files == {"registered_model_meta"}  # the two downloads differ by MLflow's note about the download
    assert from_env.digest == explicit.digest
    folder = process_model(explicit.path, str(tmp_path / "folder"), copy=True)
    assert folder.digest == explicit.digest

    model_file = next(Path(folder.path).glob("model.*"))
    model_file.write_bytes(model_file.read_bytes() + b"\0")
    assert sha256_of(folder.path) != explicit.digest
    # the note itself is excluded at the folder's top only: a file of that name inside the model is content
    (Path(explicit.path) / "sub").mkdir()
    before = sha256_of(explicit.path)
    (Path(explicit.path) / "sub" / "registered_model_meta").write_text("x")
    assert sha256_of(explicit.path) != before
