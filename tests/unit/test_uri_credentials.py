"""Credentials written into a store or file URI (``s3://KEY:SECRET@bucket/``, ``file://u:SECRET@/path``) are
refused wherever a URI enters (source, sink, model, the ProcessArtifactOperator target, the command line, the
operators, the trigger form), and never echoed: not in the error, the task log, XCom or the rendered fields."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from airflow_batch_scoring.artifacts import process_model
from airflow_batch_scoring.errors import ConfigurationError
from airflow_batch_scoring.io.files import filesystem, user_info
from airflow_batch_scoring.specs import parse_data_spec
from tests.support.helpers import Models

SECRET = "wJalrXUtnFEMI-K7MDENG-bPxRfiCY"
BIN = Path(sys.executable).parent
TESTS = Path(__file__).parent
URIS = [f"s3://AKIDEXAMPLE:{SECRET}@bucket/in/", f"file://user:{SECRET}@/data/in.csv",
        f"gs://user:{SECRET}@bucket/in/", f"abfs://user:{SECRET}@container/in/",
        f"s3a://AKIDEXAMPLE:{SECRET.replace('-', '%2D')}@bucket/in/"]


@pytest.mark.parametrize("uri", URIS)
def test_every_entry_refuses_a_uri_with_credentials_without_echoing_them(uri: str, tmp_path: Path):
    calls = [
        lambda: parse_data_spec({"uri": uri, "format": "csv"}, "source"),
        lambda: parse_data_spec({"uri": uri}, "sink"),  # (no format to infer: refused before that message)
        lambda: filesystem(uri),
        lambda: process_model(uri, str(tmp_path / "model")),
    ]
    for call in calls:
        with pytest.raises(ConfigurationError) as err:
            call()
        text = str(err.value)
        assert "holds credentials before '@'" in text and "conn_id" in text
        assert SECRET not in text and SECRET.replace("-", "%2D") not in text and "AKIDEXAMPLE" not in text


def test_what_is_not_user_info_is_accepted():
    for uri in ("s3://bucket/day@1/in.csv", "abfs://container@account.dfs.core.windows.net/in/",
                "wasbs://container@account.blob.core.windows.net/in/", "models:/churn@champion", "/data/a@b.csv",
                "file:///data/a@b.csv"):
        assert user_info(uri) is None, uri
    assert parse_data_spec({"uri": "s3://bucket/day@1/in.csv"}, "source").uri == "s3://bucket/day@1/in.csv"


def test_the_command_line_refuses_them_without_echoing(models: Models, tmp_path: Path):
    for args in (["score", "--model", str(models.regressor_path), "--source", URIS[0], "--sink",
                  (tmp_path / "out").as_uri()],
                 ["score", "--model", URIS[1], "--source", (tmp_path / "in.csv").as_uri(), "--sink",
                  (tmp_path / "out").as_uri()],
                 ["manifest", f"file://user:{SECRET}@{tmp_path}/out"]):
        result = subprocess.run([str(BIN / "batch-scoring"), *args], capture_output=True, text=True)
        assert result.returncode != 0 and "holds credentials before '@'" in result.stderr + result.stdout
        assert SECRET not in result.stdout + result.stderr
