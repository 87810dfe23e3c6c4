"""Credentials written into a store or file URI (``s3://KEY:SECRET@bucket/``, ``file://u:SECRET@/path``) are
refused wherever a URI enters (source, sink, model, the ProcessArtifactOperator target, the command line, the
operators, the trigger form), and never echoed: not in the error, the task log, XCom or the rendered fields."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import Models, make_frame, source_spec, write_frame

from airflow_batch_scoring.artifacts import process_model
from airflow_batch_scoring.errors import ConfigurationError
from airflow_batch_scoring.io.files import filesystem, user_info
from airflow_batch_scoring.job import DataSpec

SECRET = "wJalrXUtnFEMI-K7MDENG-bPxRfiCY"
BIN = Path(sys.executable).parent
TESTS = Path(__file__).parent
URIS = [f"s3://AKIDEXAMPLE:{SECRET}@bucket/in/", f"file://user:{SECRET}@/data/in.csv",
        f"gs://user:{SECRET}@bucket/in/", f"abfs://user:{SECRET}@container/in/",
        f"s3a://AKIDEXAMPLE:{SECRET.replace('-', '%2D')}@bucket/in/"]


@pytest.mark.parametrize("uri", URIS)
def test_every_entry_refuses_a_uri_with_credentials_without_echoing_them(uri: str, tmp_path: Path):
    calls = [
        lambda: DataSpec.parse({"uri": uri, "format": "csv"}, "source"),
        lambda: DataSpec.parse({"uri": uri}, "sink"),  # (no format to infer: refused before that message)
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
    assert DataSpec.parse({"uri": "s3://bucket/day@1/in.csv"}, "source").uri == "s3://bucket/day@1/in.csv"


def test_the_command_line_refuses_them_without_echoing(models: Models, tmp_path: Path):
    for args in (["score", "--model", str(models.regressor_path), "--source", URIS[0], "--sink",
                  (tmp_path / "out").as_uri()],
                 ["score", "--model", URIS[1], "--source", (tmp_path / "in.csv").as_uri(), "--sink",
                  (tmp_path / "out").as_uri()],
                 ["manifest", f"file://user:{SECRET}@{tmp_path}/out"]):
        result = subprocess.run([str(BIN / "batch-scoring"), *args], capture_output=True, text=True)
        assert result.returncode != 0 and "holds credentials before '@'" in result.stderr + result.stdout
        assert SECRET not in result.stdout + result.stderr


def _rendered(dag_run) -> str:
    from airflow.models.renderedtifields import RenderedTaskInstanceFields
    from airflow.utils.session import create_session

    with create_session() as session:
        rows = session.query(RenderedTaskInstanceFields).filter_by(dag_id=dag_run.dag_id,
                                                                    run_id=dag_run.run_id).all()
        return json.dumps([row.rendered_fields for row in rows], default=str)


def _xcoms(dag_run) -> str:
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    with create_session() as session:
        rows = session.query(XComModel).filter_by(dag_id=dag_run.dag_id, run_id=dag_run.run_id).all()
        return json.dumps([row.value for row in rows], default=str)


@pytest.mark.parametrize("where", ["source", "sink", "model"])
def test_the_operator_refuses_them_and_they_appear_nowhere(where: str, airflow_db, models: Models, tmp_path: Path,
                                                           capfd, caplog):
    sys.path.insert(0, str(TESTS / "dags"))
    from scoring_test_dag import dag

    write_frame(make_frame(50, seed=95), tmp_path / "in.csv", "csv")
    conf = {"model": str(models.regressor_path), "source": source_spec("csv", (tmp_path / "in.csv").as_uri()),
            "sink": {"uri": (tmp_path / "out").as_uri()}}
    secret_uri = f"file://user:{SECRET}@{tmp_path}"
    if where == "source":
        conf["source"]["uri"] = f"{secret_uri}/in.csv"
    elif where == "sink":
        conf["sink"]["uri"] = f"{secret_uri}/out"
    else:
        conf["model"] = f"{secret_uri}/{models.regressor_path.name}"
    dag_run = dag.test(run_conf=conf)
    ti = dag_run.get_task_instance("score")
    assert ti.state == "failed" and ti.try_number == 1  # a user error: not retried
    logs = capfd.readouterr()
    log = logs.out + logs.err + caplog.text
    assert "holds credentials before '@'" in log
    assert SECRET not in log
    assert SECRET not in _rendered(dag_run) and SECRET not in _xcoms(dag_run)
    assert not (tmp_path / "out").exists()


def test_process_artifact_refuses_them_and_they_appear_nowhere(airflow_db, models: Models, tmp_path: Path, capfd,
                                                               caplog):
    sys.path.insert(0, str(TESTS / "dags"))
    from retry_test_dag import process_dag

    dag_run = process_dag.test(run_conf={"model": f"file://user:{SECRET}@{models.regressor_path}",
                                         "target": str(tmp_path / "processed")})
    ti = dag_run.get_task_instance("process")
    assert (ti.state, ti.try_number) == ("failed", 1)
    logs = capfd.readouterr()
    log = logs.out + logs.err + caplog.text
    assert "model holds credentials before '@'" in log and SECRET not in log
    assert SECRET not in _rendered(dag_run) and SECRET not in _xcoms(dag_run)
