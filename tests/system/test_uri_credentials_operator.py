"""URIs with credentials in them, refused by the operators in ``dag.test()``: the secret appears in no log, rendered
field or XCom."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.support.helpers import Models, make_frame, source_spec, write_frame

SECRET = "wJalrXUtnFEMI-K7MDENG-bPxRfiCY"


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
    from tests.system.dags.scoring_test_dag import dag

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
    from tests.system.dags.retry_test_dag import process_dag

    dag_run = process_dag.test(run_conf={"model": f"file://user:{SECRET}@{models.regressor_path}",
                                         "target": str(tmp_path / "processed")})
    ti = dag_run.get_task_instance("process")
    assert (ti.state, ti.try_number) == ("failed", 1)
    logs = capfd.readouterr()
    log = logs.out + logs.err + caplog.text
    assert "model holds credentials before '@'" in log and SECRET not in log
    assert SECRET not in _rendered(dag_run) and SECRET not in _xcoms(dag_run)
