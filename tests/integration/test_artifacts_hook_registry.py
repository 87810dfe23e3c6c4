"""ProcessArtifactOperator reads the real MLflow registry through an MLflow connection, and never shows its token."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import pytest
from airflow.providers.common.compat.sdk import AirflowFailException

from airflow_batch_scoring.errors import ConfigurationError
from tests.support.helpers import Models
from tests.support.registry import TOKEN


def test_process_operator_uses_the_connection(mlflow_connection: str, models: Models, tmp_path: Path, caplog):
    from airflow_batch_scoring.operators import ProcessArtifactOperator

    operator = ProcessArtifactOperator(
        task_id="process",
        model=f"models:/{models.registry_name}@champion",
        target=str(tmp_path / "processed"),
        mlflow_conn_id=mlflow_connection,
    )
    with caplog.at_level(logging.INFO):
        result = operator.execute({})
    assert result["source_model_version"] == models.registry_version
    assert result["source_model_name"] == models.registry_name
    assert json.loads((tmp_path / "processed" / "_artifact.json").read_text()) == result
    assert TOKEN not in json.dumps(result) and TOKEN not in caplog.text
    assert "MLFLOW_TRACKING_TOKEN" not in os.environ
    # a retry replaces its own output; a folder with other content is refused
    assert operator.execute({})["digest"] == result["digest"]
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "keep.txt").write_text("mine")
    operator.target = str(tmp_path / "other")
    with pytest.raises(AirflowFailException, match="not empty and was not written by ProcessArtifactOperator") as err:
        operator.execute({})  # a user error: failed without retries
    assert isinstance(err.value.__cause__, ConfigurationError)
    assert (tmp_path / "other" / "keep.txt").exists()
