"""A replica that dies mid-run fails the job with its reason, stops the others, and publishes nothing."""

from __future__ import annotations

import os
import signal
import threading
from pathlib import Path

import joblib
import pytest
from helpers import SlowModel, assert_nothing_published, make_frame, source_spec, write_frame

from airflow_batch_scoring.artifacts import process_model
from airflow_batch_scoring.errors import ReplicaError
from airflow_batch_scoring.job import DataSpec
from airflow_batch_scoring.runtime.driver import execute_job, prepare_job
from airflow_batch_scoring.runtime.local import LocalLauncher


def test_sigkilled_replica_fails_the_run_and_nothing_is_published(tmp_path: Path, monkeypatch):
    monkeypatch.setenv("PYTHONPATH", str(Path(__file__).parent))  # replicas unpickle helpers.SlowModel
    joblib.dump(SlowModel(), tmp_path / "slow.joblib")
    write_frame(make_frame(3000, seed=41), tmp_path / "in.csv", "csv")
    job, files = prepare_job(
        job_id="kill-test",
        model=process_model(str(tmp_path / "slow.joblib"), str(tmp_path)),
        source=DataSpec.parse(source_spec("csv", (tmp_path / "in.csv").as_uri()), "source"),
        sink=DataSpec.parse({"uri": (tmp_path / "out").as_uri()}, "sink"),
        replicas=3,
        batch_size=10,
        passthrough_columns=["id"],
    )
    started = threading.Event()

    def log(line: str) -> None:
        if line.startswith("[replica 1]") and "rows scored" in line:
            started.set()

    launcher = LocalLauncher(log)
    killer_done = threading.Event()

    def kill_replica_1() -> None:
        assert started.wait(120)
        victim = launcher.process_of(1)
        os.kill(victim.pid, signal.SIGKILL)
        killer_done.set()

    threading.Thread(target=kill_replica_1, daemon=True).start()
    with pytest.raises(ReplicaError, match="Replica 1 was killed by signal 9; nothing was published"):
        execute_job(job, files, log=log, launcher=launcher)
    assert killer_done.is_set()
    assert all(launcher.process_of(s).poll() is not None for s in range(3))  # the other replicas were stopped
    assert_nothing_published(tmp_path / "out")
