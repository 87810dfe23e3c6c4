"""Retries are for what a retry can change: an error only the user can fix (a setting, the schema, bad input in
``fail`` mode, a bad-row threshold, the model) fails the task at once, with its message, even with ``retries=3``;
a lost replica (or a store outage) is still retried. Real ``dag.test()`` runs against the test metadata DB."""

from __future__ import annotations

from pathlib import Path

import joblib
import pytest

from tests.support.fault_models import MARK, KillTimes, check_exactly_once
from tests.support.helpers import Models, assert_nothing_published, make_frame, read_output, source_spec, write_frame

pytestmark = pytest.mark.usefixtures("replicas_import_tests")  # replicas unpickle tests.support.fault_models.*


@pytest.fixture(scope="module")
def dags(airflow_db):
    from tests.system.dags.retry_test_dag import process_dag, score_dag

    return score_dag, process_dag


def _only_try(dag_run, task_id: str):
    ti = dag_run.get_task_instance(task_id)
    return ti.state, ti.try_number


def test_a_misspelt_column_is_tried_once(dags, models: Models, tmp_path: Path, capfd):
    score_dag, _ = dags
    write_frame(make_frame(300, seed=91), tmp_path / "in.csv", "csv")
    sink = tmp_path / "out"
    dag_run = score_dag.test(run_conf={
        "model": str(models.regressor_path),
        "source": source_spec("csv", (tmp_path / "in.csv").as_uri()),
        "sink": {"uri": sink.as_uri()},
        "passthrough": ["idd"],
    })
    assert dag_run.state == "failed"
    assert _only_try(dag_run, "score") == ("failed", 1)  # not 4 tries
    logs = capfd.readouterr()
    text = logs.out + logs.err
    assert "AirflowFailException" in text and "'idd'" in text and "not retried" in text
    assert_nothing_published(sink)


def test_a_bad_value_found_inside_a_replica_is_tried_once(dags, models: Models, tmp_path: Path, capfd):
    score_dag, _ = dags
    lines = [f"{i},1,2,3,4,5\n" for i in range(30000)]
    lines[29000] = "29000,1,2,three,4,5\n"  # past the preflight's sample: only a replica reads it
    (tmp_path / "in.csv").write_text("".join(lines))
    sink = tmp_path / "out"
    dag_run = score_dag.test(run_conf={
        "model": str(models.regressor_path),
        "source": source_spec("csv", (tmp_path / "in.csv").as_uri()),
        "sink": {"uri": sink.as_uri()},
        "passthrough": ["id"],  # (dag.test keeps an earlier run's conf in the DAG's params)
    })
    assert _only_try(dag_run, "score") == ("failed", 1)
    logs = capfd.readouterr()
    text = logs.out + logs.err
    assert "[replica 1]" in text  # the replicas ran: the error came from one of them
    assert f"{(tmp_path / 'in.csv').as_uri()}, line 29001, column 'f2'" in text and "not retried" in text
    assert_nothing_published(sink)
    assert not (sink / "_temporary").exists()  # no retry will come: nothing is kept for one


def test_a_killed_replica_is_still_retried(dags, tmp_path: Path):
    score_dag, _ = dags
    frame = make_frame(1200, seed=92)
    frame.loc[frame.index[900], "f4"] = MARK  # in shard 1
    write_frame(frame, tmp_path / "in.csv", "csv")
    (tmp_path / "kills").mkdir()
    joblib.dump(KillTimes(tmp_path / "kills", 2), tmp_path / "kill-twice.joblib")
    sink = tmp_path / "out"
    dag_run = score_dag.test(run_conf={
        "model": str(tmp_path / "kill-twice.joblib"),
        "source": source_spec("csv", (tmp_path / "in.csv").as_uri()),
        "sink": {"uri": sink.as_uri()},
        "passthrough": ["id"],  # (dag.test keeps an earlier run's conf in the DAG's params)
    })
    assert len(list((tmp_path / "kills").iterdir())) == 2  # two tries lost a replica to SIGKILL ...
    assert _only_try(dag_run, "score") == ("success", 3)  # ... and the third finished the run
    check_exactly_once(frame, read_output(sink, "csv", ["id", "prediction"]))


def test_process_artifact_does_not_retry_a_missing_model(dags, tmp_path: Path, capfd):
    _, process_dag = dags
    dag_run = process_dag.test(run_conf={"model": str(tmp_path / "no-such-model.joblib"),
                                         "target": str(tmp_path / "processed")})
    assert _only_try(dag_run, "process") == ("failed", 1)
    logs = capfd.readouterr()
    text = logs.out + logs.err
    assert "ModelError" in text and "no-such-model.joblib" in text and "not retried" in text
