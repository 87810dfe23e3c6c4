"""Alias pinning through ProcessArtifactOperator -> BatchScoringOperator in ``dag.test()``: the whole run scores the
version the alias named when it started."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tests.support.dag_runs import xcom_of
from tests.support.helpers import FEATURES, make_frame
from tests.support.registry import MODEL, Versions


@pytest.fixture(scope="module")
def pinning_dag(airflow_db):
    from tests.system.dags.artifact_pinning_test_dag import dag

    return dag


def test_alias_is_pinned_for_the_whole_run(pinning_dag, versions: Versions, tmp_path: Path):
    """The alias moves to version 2 after processing, before scoring: every replica still scores version 1."""
    import mlflow

    frame = make_frame(777, seed=5)
    frame.to_parquet(tmp_path / "in.parquet", index=False, row_group_size=200)
    mlflow.MlflowClient().set_registered_model_alias(MODEL, "champion", "1")
    dag_run = pinning_dag.test(
        run_conf={
            "model_name": MODEL,
            "target": str(tmp_path / "processed"),
            "source": {"uri": (tmp_path / "in.parquet").as_uri()},
            "sink": {"uri": (tmp_path / "out").as_uri()},
        }
    )
    assert dag_run.state == "success"
    assert str(mlflow.MlflowClient().get_model_version_by_alias(MODEL, "champion").version) == "2"  # it moved

    processed = xcom_of(dag_run, "process")
    assert processed["artifact_type"] == "python/mlflow"
    assert processed["source_model_name"] == MODEL and processed["source_model_version"] == "1"
    assert processed["resolved_uri"] == f"models:/{MODEL}/1"
    assert processed["source_metadata"]["alias"] == "champion"
    assert processed["source_metadata"]["run_id"]
    assert processed["digest"].startswith("sha256:") and len(processed["digest"]) == 71
    assert [c["name"] for c in processed["input_schema"]] == FEATURES
    assert Path(processed["path"]).is_relative_to(tmp_path / "processed")

    summary = xcom_of(dag_run, "score")
    assert summary["model_version"] == "1" and summary["model_digest"] == processed["digest"]
    assert summary["rows_in"] == summary["rows_out"] == 777
    import pyarrow.parquet as pq

    out = pq.read_table(tmp_path / "out").to_pandas().sort_values("id")
    manifest = json.loads((tmp_path / "out" / "_manifest.json").read_text())
    assert manifest["model"]["version"] == "1" and len(manifest["shards"]) == 2
    assert all(s["rows_in"] > 0 for s in manifest["shards"])
    rows = frame.sort_values("id")[FEATURES]
    np.testing.assert_array_equal(out["prediction"].to_numpy(), versions.first.predict(rows))
    assert not np.array_equal(out["prediction"].to_numpy(), versions.second.predict(rows))
