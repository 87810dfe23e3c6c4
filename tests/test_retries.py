"""Retries are for what a retry can change: an error only the user can fix (a setting, the schema, bad input in
``fail`` mode, a bad-row threshold, the model) fails the task at once, with its message, even with ``retries=3``;
a lost replica (or a store outage) is still retried. Real ``dag.test()`` runs against the test metadata DB."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import joblib
import pytest
from fault_models import MARK, KillTimes
from helpers import Models, assert_nothing_published, make_frame, read_output, source_spec, write_frame
from test_faults import check_exactly_once

from airflow_batch_scoring.errors import InputError, ModelError, ReplicaError, StorageError, is_retryable
from airflow_batch_scoring.runtime.protocol import error_from_marker

TESTS = Path(__file__).parent


@pytest.fixture(scope="module")
def dags(airflow_db):
    sys.path.insert(0, str(TESTS / "dags"))
    from retry_test_dag import process_dag, score_dag

    return score_dag, process_dag


@pytest.fixture(autouse=True)
def replicas_import_test_models(monkeypatch):
    monkeypatch.setenv("PYTHONPATH", str(TESTS))  # replicas unpickle fault_models.*


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


def test_what_a_replica_reports_keeps_whether_a_retry_can_help():
    outage = {"type": "StorageError", "message": "a store could not be reached", "retryable": True}
    assert is_retryable(error_from_marker(json.dumps(outage)))
    killed = {"type": "ReplicaError", "message": "MemoryError"}
    assert is_retryable(error_from_marker(json.dumps(killed)))
    bad = {"type": "InputError", "message": "line 3, column 'f2': ...", "retryable": False}
    assert isinstance(error_from_marker(json.dumps(bad)), InputError)
    assert not is_retryable(error_from_marker(json.dumps(bad)))
    # a model that could not be downloaded because the store is down is retried, whatever class reported it
    try:
        try:
            raise ConnectionError("connection refused")
        except ConnectionError as cause:
            raise ModelError("Cannot download the model") from cause
    except ModelError as err:
        assert is_retryable(err)
    assert not is_retryable(ModelError("no such model")) and is_retryable(StorageError("down"))
    assert is_retryable(ReplicaError("killed")) and is_retryable(RuntimeError("unexpected"))


def test_an_input_that_is_not_there_yet_stays_retryable(tmp_path: Path):
    """A file that lands after the task started is something a retry can change (retry_delay waits for it)."""
    from airflow_batch_scoring.io.files import list_inputs

    for uri in ((tmp_path / "later.csv").as_uri(), (tmp_path / "*.csv").as_uri()):
        with pytest.raises(InputError) as err:
            list_inputs(uri)
        assert is_retryable(err.value), uri
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="holds no files") as err:
        list_inputs((tmp_path / "empty").as_uri())
    assert is_retryable(err.value)
