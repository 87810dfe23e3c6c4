"""A replica that dies mid-run fails the job with its reason, stops the others, and publishes nothing."""

from __future__ import annotations

import os
import signal
import threading
from pathlib import Path

import joblib
import pandas as pd
import pytest

from airflow_batch_scoring.artifacts import process_model
from airflow_batch_scoring.driver.local import LocalLauncher
from airflow_batch_scoring.driver.prepare import prepare_job
from airflow_batch_scoring.driver.run import execute_job
from airflow_batch_scoring.errors import InputError, ReplicaError
from airflow_batch_scoring.options import ScoringOptions
from airflow_batch_scoring.specs import parse_data_spec
from tests.support.helpers import SlowModel, assert_nothing_published, make_frame, source_spec, write_frame

pytestmark = pytest.mark.usefixtures("replicas_import_tests")  # replicas unpickle tests.support.helpers.SlowModel


def test_sigkilled_replica_fails_the_run_and_nothing_is_published(tmp_path: Path, monkeypatch):
    joblib.dump(SlowModel(), tmp_path / "slow.joblib")
    write_frame(make_frame(3000, seed=41), tmp_path / "in.csv", "csv")
    job, files = prepare_job(
        job_id="kill-test",
        model=process_model(str(tmp_path / "slow.joblib"), str(tmp_path)),
        source=parse_data_spec(source_spec("csv", (tmp_path / "in.csv").as_uri()), "source"),
        sink=parse_data_spec({"uri": (tmp_path / "out").as_uri()}, "sink"),
        options=ScoringOptions.parse(replicas=3, batch_size=10, passthrough_columns=["id"]),
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


def _slow_job(tmp_path: Path, attempt: str, frame_rows: int = 3000, bad_line: int | None = None):
    joblib.dump(SlowModel(), tmp_path / "slow.joblib")
    if not (tmp_path / "in.csv").exists():
        write_frame(make_frame(frame_rows, seed=42), tmp_path / "in.csv", "csv")
        if bad_line is not None:
            lines = (tmp_path / "in.csv").read_text().splitlines(keepends=True)
            fields = lines[bad_line].rstrip("\n").split(",")
            fields[2] = "three"
            lines[bad_line] = ",".join(fields) + "\n"
            (tmp_path / "in.csv").write_text("".join(lines))
    return prepare_job(
        job_id="grace-test",
        attempt=attempt,
        model=process_model(str(tmp_path / "slow.joblib"), str(tmp_path / f"model-{attempt}")),
        source=parse_data_spec(source_spec("csv", (tmp_path / "in.csv").as_uri()), "source"),
        sink=parse_data_spec({"uri": (tmp_path / "out").as_uri()}, "sink"),
        options=ScoringOptions.parse(replicas=3, batch_size=10, passthrough_columns=["id"]),
    )


def test_siblings_finish_their_shards_and_the_retry_reuses_them(tmp_path: Path, monkeypatch):
    """Replica 1 is killed at its first batch while the run will be retried (keep_on_failure): replicas 0 and 2 are
    let finish their shards (they report them), the run fails, and the retry scores only shard 1; every row once."""
    monkeypatch.setenv("BATCH_SCORING_REPLICA_GRACE_S", "120")
    job, files = _slow_job(tmp_path, "try1")
    lines: list[str] = []
    launcher = LocalLauncher(lines.append)

    def log(line: str) -> None:
        lines.append(line)
        if line.startswith("[replica 1]") and "rows scored" in line and not killed.is_set():
            killed.set()
            os.kill(launcher.process_of(1).pid, signal.SIGKILL)

    killed = threading.Event()
    launcher.log = log
    with pytest.raises(ReplicaError, match="Replica 1 was killed by signal 9; nothing was published"):
        execute_job(job, files, log=log, launcher=launcher, keep_on_failure=True)
    assert killed.is_set()
    assert any("Replica 1 failed; the run will be retried: letting replica(s) [0, 2] finish" in line
               for line in lines), lines
    assert any("The other replicas ended; finished shard(s): [0, 2]" in line for line in lines), lines
    staged = {p.name for p in (tmp_path / "out" / "_temporary" / "grace-test").iterdir()}
    assert {"_shard-00000.json", "_shard-00002.json"} <= staged and "_shard-00001.json" not in staged
    assert not (tmp_path / "out" / "_SUCCESS").exists()

    retry, files = _slow_job(tmp_path, "try2")
    retry_lines: list[str] = []
    summary = execute_job(retry, files, log=retry_lines.append)
    assert any("Resuming: shard(s) [0, 2] completed in an earlier attempt" in line for line in retry_lines)
    assert not any(line.startswith(("[replica 0]", "[replica 2]")) for line in retry_lines)  # only shard 1 again
    assert summary["resumed_shards"] == [0, 2] and summary["rows_in"] == summary["rows_out"] == 3000
    out = pd.concat(pd.read_csv(p, header=None, names=["id", "prediction"])
                    for p in sorted((tmp_path / "out").glob("part-*.csv")))
    frame = make_frame(3000, seed=42)
    assert sorted(out["id"]) == frame["id"].tolist()  # every row exactly once
    expected = dict(zip(frame["id"], frame["f0"] * 2, strict=True))
    assert all(expected[i] == p for i, p in zip(out["id"], out["prediction"], strict=True))


def test_no_grace_on_the_last_try_or_for_a_user_error(tmp_path: Path, monkeypatch):
    """The last try (no keep_on_failure) stops the others at once; so does a bad row in fail mode (a retry cannot
    change it) even while retries remain."""
    monkeypatch.setenv("BATCH_SCORING_REPLICA_GRACE_S", "120")
    job, files = _slow_job(tmp_path, "try1", bad_line=1005)  # in shard 1's first batch
    lines: list[str] = []
    with pytest.raises(InputError, match="line 1006"):
        execute_job(job, files, log=lines.append, launcher=LocalLauncher(lines.append), keep_on_failure=True)
    assert not any("letting replica" in line for line in lines)
    staged = tmp_path / "out" / "_temporary" / "grace-test"
    assert not staged.exists() or not list(staged.glob("_shard-*.json"))


def test_grace_period_setting_is_checked(monkeypatch):
    from airflow_batch_scoring.driver.local import DEFAULT_GRACE_S, grace_period_s
    from airflow_batch_scoring.errors import ConfigurationError

    assert grace_period_s({}) == DEFAULT_GRACE_S == 300
    assert grace_period_s({"BATCH_SCORING_REPLICA_GRACE_S": "0"}) == 0
    assert grace_period_s({"BATCH_SCORING_REPLICA_GRACE_S": "12.5"}) == 12.5
    for bad in ("-1", "soon", "nan"):
        with pytest.raises(ConfigurationError, match="BATCH_SCORING_REPLICA_GRACE_S=.* is not a number of seconds"):
            grace_period_s({"BATCH_SCORING_REPLICA_GRACE_S": bad})
