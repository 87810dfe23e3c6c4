"""Prestarted replicas: the local runtime starts the replicas before the model is resolved (they import the runtime
meanwhile), has them load the model while the driver lists, plans and checks the input; each then scores the shard it
is handed, and replicas not needed are stopped."""

from __future__ import annotations

import shutil
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

from airflow_batch_scoring.artifacts import process_model
from airflow_batch_scoring.driver.local import LocalLauncher
from airflow_batch_scoring.driver.prepare import prepare_job
from airflow_batch_scoring.driver.run import execute_job
from airflow_batch_scoring.errors import ModelError
from airflow_batch_scoring.options import ScoringOptions
from airflow_batch_scoring.runtime.cli import PRELOADED_LINE
from airflow_batch_scoring.specs import parse_data_spec
from tests.support.helpers import (
    FEATURES,
    Models,
    assert_nothing_published,
    make_frame,
    read_output,
    source_spec,
    write_frame,
)


class Recorder:
    """Collects the replicas' lines; ``loaded`` is set once ``count`` replicas said their model is loaded."""

    def __init__(self, count: int):
        self.lines: list[str] = []
        self.count = count
        self.loaded = threading.Event()

    def __call__(self, line: str) -> None:
        self.lines.append(line)
        if sum(PRELOADED_LINE in seen for seen in self.lines) >= self.count:
            self.loaded.set()


def build(tmp_path: Path, model_path: Path, replicas: int, rows: int = 3000, **kwargs):
    frame = make_frame(rows, seed=7)
    write_frame(frame, tmp_path / "in.csv", "csv")
    job, files = prepare_job(
        job_id="prestart",
        model=process_model(str(model_path), str(tmp_path / "model")),
        source=parse_data_spec(source_spec("csv", (tmp_path / "in.csv").as_uri()), "source"),
        sink=parse_data_spec({"uri": (tmp_path / "out").as_uri(), "format": "csv"}, "sink"),
        options=ScoringOptions.parse(replicas=replicas, batch_size=500, passthrough_columns=["id"], **kwargs),
    )
    return frame, job, files


def test_the_model_is_loaded_before_the_job_and_scores_it(tmp_path: Path, models: Models):
    model_file = tmp_path / "regressor.joblib"
    shutil.copy(models.regressor_path, model_file)
    frame, job, files = build(tmp_path, model_file, replicas=2)
    log = Recorder(count=2)
    launcher = LocalLauncher(log)
    launcher.prestart(job.model, job.replicas)
    assert log.loaded.wait(120), log.lines
    # The replicas hold the model (its digest checked when they loaded it): the file is no longer needed.
    model_file.unlink()
    summary = execute_job(job, files, log=log, launcher=launcher)
    assert summary["rows_out"] == len(frame)
    output = read_output(tmp_path / "out", "csv", ["id", "prediction"]).to_pandas().sort_values("id")
    np.testing.assert_array_equal(output["id"].to_numpy(), frame["id"].to_numpy())
    np.testing.assert_array_equal(output["prediction"].to_numpy(), models.regressor.predict(frame[FEATURES]))
    assert any(line.startswith("[replica starting] model loaded in") for line in log.lines)
    assert {line.split("]")[0] for line in log.lines if "rows scored" in line} == {"[replica 0", "[replica 1"}


def test_replicas_not_needed_are_stopped(tmp_path: Path, models: Models):
    """A resumed run scores only the shards left: the other prestarted replicas exit without scoring."""
    frame, job, files = build(tmp_path, models.regressor_path, replicas=3)
    (tmp_path / "job.json").write_text(job.to_json())
    log = Recorder(count=3)
    launcher = LocalLauncher(log)
    launcher.prestart(job.model, job.replicas)
    assert log.loaded.wait(120), log.lines
    waiting = list(launcher._waiting)
    launcher.run(str(tmp_path / "job.json"), job.replicas, shards=[1])
    assert all(replica.process.poll() is not None for replica in waiting)  # no process is left behind
    staged = sorted(p.name for p in (tmp_path / "out" / "_temporary" / "prestart").iterdir())
    assert [name for name in staged if name.startswith("part-")] == ["part-00001.try1.csv"]
    assert {line.split("]")[0] for line in log.lines if "rows scored" in line} == {"[replica 1"}


def test_other_options_load_the_model_again(tmp_path: Path, models: Models):
    """Prestarted for plain predictions, the job asks for probabilities: the replica loads the model with them."""
    frame, job, files = build(tmp_path, models.classifier_path, replicas=1, predict_probabilities=True)
    launcher = LocalLauncher(Recorder(count=1))
    launcher.prestart(job.model, 1, probabilities=False)
    execute_job(job, files, launcher=launcher)
    names = ["id", "prediction", *(f"probability_{label}" for label in models.classifier.classes_)]
    output = read_output(tmp_path / "out", "csv", names).to_pandas().sort_values("id")
    np.testing.assert_allclose(
        output[names[2:]].to_numpy(), models.classifier.predict_proba(frame[FEATURES]), rtol=0, atol=1e-15
    )


def test_a_model_that_fails_to_load_fails_the_job_with_its_error(tmp_path: Path):
    broken = tmp_path / "broken.joblib"
    broken.write_bytes(b"this is not a pickle")
    _, job, files = build(tmp_path, broken, replicas=2, input_schema=[{"name": f, "type": "Float64"} for f in FEATURES])
    launcher = LocalLauncher(Recorder(count=2))
    launcher.prestart(job.model, job.replicas)
    with pytest.raises(ModelError, match="Cannot load the scikit-learn model .* with joblib"):
        execute_job(job, files, launcher=launcher)
    assert_nothing_published(tmp_path / "out")


def test_discard_stops_replicas_that_never_got_a_shard(tmp_path: Path, models: Models):
    _, job, _ = build(tmp_path, models.regressor_path, replicas=2)
    launcher = LocalLauncher(Recorder(count=2))
    launcher.prestart(job.model, job.replicas)
    waiting = list(launcher._waiting)
    assert len(waiting) == 2
    launcher.discard()
    assert all(replica.process.poll() is not None for replica in waiting)


def _prestarted_pids() -> set[int]:
    """The waiting replicas started by this virtual environment's Python (another checkout's test run on the same
    machine has replicas of its own)."""
    import psutil

    pids = set()
    for process in psutil.process_iter(["cmdline"]):
        cmdline = process.info["cmdline"] or []
        if cmdline and Path(cmdline[0]).parent == Path(sys.executable).parent and "run-shard" in cmdline \
                and "--await-job" in cmdline:
            pids.add(process.pid)
    return pids


def test_a_job_that_fails_before_launching_leaves_no_replica_behind(tmp_path: Path, models: Models):
    """``batch-scoring score`` prestarts its replicas, then finds the input missing: the error names the path, and the
    waiting replicas are stopped with the command."""
    before = _prestarted_pids()
    result = subprocess.run(
        [str(Path(sys.executable).parent / "batch-scoring"), "score", "--model", str(models.regressor_path),
         "--source", (tmp_path / "missing.csv").as_uri(), "--sink", (tmp_path / "out").as_uri(),
         "--columns", "id,f0,f1,f2,f3,f4", "--replicas", "2"],
        capture_output=True, text=True, timeout=120,
    )
    assert result.returncode != 0
    assert "missing.csv" in result.stderr and "does not exist" in result.stderr
    assert _prestarted_pids() - before == set()
    assert_nothing_published(tmp_path / "out")


def test_replicas_started_before_the_model_is_known_load_it_and_score(tmp_path: Path, models: Models):
    """``start_early`` starts the processes; ``prestart`` hands those same processes the model; they score."""
    frame, job, files = build(tmp_path, models.regressor_path, replicas=2)
    log = Recorder(count=2)
    launcher = LocalLauncher(log)
    launcher.start_early(2)
    early = [replica.process.pid for replica in launcher._waiting]
    assert len(early) == 2 and not log.loaded.is_set()
    launcher.prestart(job.model, job.replicas)
    assert [replica.process.pid for replica in launcher._waiting] == early  # no new process
    assert log.loaded.wait(120), log.lines
    summary = execute_job(job, files, log=log, launcher=launcher)
    assert summary["rows_out"] == len(frame)
    output = read_output(tmp_path / "out", "csv", ["id", "prediction"]).to_pandas().sort_values("id")
    np.testing.assert_array_equal(output["prediction"].to_numpy(), models.regressor.predict(frame[FEATURES]))


def test_replicas_started_early_for_another_count_are_replaced(tmp_path: Path, models: Models):
    """Started early for 2, the job needs 3: the 2 are stopped, 3 are started with the model, the job is scored."""
    frame, job, files = build(tmp_path, models.regressor_path, replicas=3)
    launcher = LocalLauncher(Recorder(count=3))
    launcher.start_early(2)
    early = list(launcher._waiting)
    launcher.prestart(job.model, job.replicas)
    assert all(replica.process.poll() is not None for replica in early)
    assert len(launcher._waiting) == 3
    assert not {r.process.pid for r in early} & {r.process.pid for r in launcher._waiting}
    assert execute_job(job, files, launcher=launcher)["rows_out"] == len(frame)


def test_replicas_started_early_exit_quietly_when_the_model_never_comes(tmp_path: Path):
    """The model cannot be resolved: ``batch-scoring score`` says why, and its early replicas are gone, without an
    error of their own."""
    lines: list[str] = []
    launcher = LocalLauncher(lines.append)
    launcher.start_early(2)
    waiting = list(launcher._waiting)
    for replica in waiting:  # what the replica does when the driver gives up before naming the model
        assert replica.process.stdin is not None
        replica.process.stdin.close()
    assert [replica.process.wait(timeout=120) for replica in waiting] == [0, 0]
    assert not any(replica.error for replica in waiting), lines
    launcher.discard()
    before = _prestarted_pids()
    result = subprocess.run(
        [str(Path(sys.executable).parent / "batch-scoring"), "score", "--model", str(tmp_path / "missing.joblib"),
         "--source", (tmp_path / "in.csv").as_uri(), "--sink", (tmp_path / "out").as_uri(),
         "--columns", "id,f0,f1,f2,f3,f4", "--replicas", "2"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode != 0 and "missing.joblib" in result.stderr and "does not exist" in result.stderr
    assert _prestarted_pids() - before == set()
    assert_nothing_published(tmp_path / "out")
