"""Never lose, never duplicate: killed replicas, retries that resume, superseded attempts, inputs that change under
a run, parallel runs, a storage server that goes away, preflight. Each test ends either with every input row exactly
once in the final output or with a clear failure and nothing published, and asserts on the actual rows."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import fsspec
import joblib
import pytest

from airflow_batch_scoring.artifacts import process_model
from airflow_batch_scoring.driver.local import LocalLauncher
from airflow_batch_scoring.driver.prepare import prepare_job
from airflow_batch_scoring.driver.run import execute_job
from airflow_batch_scoring.errors import InputError, ReplicaError, StorageError
from airflow_batch_scoring.options import ScoringOptions
from airflow_batch_scoring.sinks import file_staging
from airflow_batch_scoring.sinks.files import FileSink
from airflow_batch_scoring.sources.files import fingerprint
from airflow_batch_scoring.specs import parse_data_spec
from tests.support.fault_models import SlowWhereMarked, check_exactly_once, marked_frame
from tests.support.helpers import SCHEMA, assert_nothing_published, make_frame, read_output, source_spec, write_frame
from tests.support.launchers import KillWhenOthersFinish
from tests.support.servers import S3_KEY, S3_SECRET, start_seaweedfs

pytestmark = pytest.mark.usefixtures("replicas_import_tests")  # replicas unpickle tests.support.fault_models.*


def build(tmp_path: Path, model: object, *, job_id: str, attempt: str, source: str, sink: Path, replicas: int = 3,
          batch_size: int = 50, storage_options=None, sink_uri: str | None = None, input_schema=None):
    path = tmp_path / f"{type(model).__name__}.joblib"
    if not path.exists():
        joblib.dump(model, path)
    return prepare_job(
        job_id=job_id,
        attempt=attempt,
        model=process_model(str(path), str(tmp_path / f"model-{attempt}")),
        source=parse_data_spec(source_spec("csv", source), "source"),
        sink=parse_data_spec({"uri": sink_uri or sink.as_uri()}, "sink"),
        storage_options=storage_options,
        options=ScoringOptions.parse(
            replicas=replicas,
            batch_size=batch_size,
            passthrough_columns=["id"],
            input_schema=input_schema,
        ),
    )


def test_sigkilled_replica_then_retry_redoes_only_that_shard(tmp_path: Path):
    frame = marked_frame(3000, seed=61, marked=range(1000, 2000))  # shard 1's rows are slow
    write_frame(frame, tmp_path / "in.csv", "csv")
    sink = tmp_path / "out"
    job, files = build(tmp_path, SlowWhereMarked(), job_id="run-1", attempt="try1",
                       source=(tmp_path / "in.csv").as_uri(), sink=sink)
    killer = KillWhenOthersFinish(victim=1, replicas=3)
    with pytest.raises(ReplicaError, match="Replica 1 was killed by signal 9"):
        execute_job(job, files, log=killer._log, launcher=killer, keep_on_failure=True)
    assert killer.done.is_set()
    staged = sorted(p.name for p in (sink / "_temporary" / "run-1").iterdir())
    # shards 0 and 2 finished (part + report); shard 1 left no report
    assert "_shard-00000.json" in staged and "_shard-00002.json" in staged and "_shard-00001.json" not in staged
    assert not (sink / "_SUCCESS").exists() and not [p for p in sink.iterdir() if p.name.startswith("part-")]

    retry, files = build(tmp_path, SlowWhereMarked(), job_id="run-1", attempt="try2",
                         source=(tmp_path / "in.csv").as_uri(), sink=sink)
    lines: list[str] = []
    summary = execute_job(retry, files, log=lines.append)
    assert any("Resuming: shard(s) [0, 2] completed in an earlier attempt" in line for line in lines), lines
    assert not any(line.startswith(("[replica 0]", "[replica 2]")) for line in lines)  # only shard 1 ran again
    assert summary["resumed_shards"] == [0, 2] and summary["rows_out"] == 3000
    assert sorted(p.name for p in sink.iterdir()) == [
        "_SUCCESS", "_manifest.json", "part-00000.csv", "part-00001.csv", "part-00002.csv"]
    check_exactly_once(frame, read_output(sink, "csv", ["id", "prediction"]))


def test_changed_input_between_attempts_starts_clean(tmp_path: Path):
    frame = marked_frame(3000, seed=63, marked=range(1000, 2000))
    write_frame(frame, tmp_path / "in.csv", "csv")
    sink = tmp_path / "out"
    job, files = build(tmp_path, SlowWhereMarked(), job_id="run-2", attempt="try1",
                       source=(tmp_path / "in.csv").as_uri(), sink=sink)
    killer = KillWhenOthersFinish(victim=1, replicas=3)
    with pytest.raises(ReplicaError):
        execute_job(job, files, log=killer._log, launcher=killer, keep_on_failure=True)
    changed = frame.copy()
    changed["f0"] = changed["f0"] + 1  # the input is rewritten before the retry
    write_frame(changed, tmp_path / "in.csv", "csv")
    os.utime(tmp_path / "in.csv", ns=(1, 10**18))  # a different modification time, whatever the clock's resolution
    retry, files = build(tmp_path, SlowWhereMarked(), job_id="run-2", attempt="try2",
                         source=(tmp_path / "in.csv").as_uri(), sink=sink)
    lines: list[str] = []
    summary = execute_job(retry, files, log=lines.append)
    assert any("Not resuming: the model, the input listing or the scoring options changed" in x for x in lines)
    assert summary["resumed_shards"] == []
    check_exactly_once(changed, read_output(sink, "csv", ["id", "prediction"]))


class StartsAnotherAttempt(LocalLauncher):
    """While attempt 1's replicas run, attempt 2 of the same run starts (an Airflow retry racing a zombie)."""

    def __init__(self, newer):
        super().__init__(lambda line: None)
        self.newer = newer

    def run(self, *args, **kwargs) -> None:
        super().run(*args, **kwargs)
        job, files = self.newer
        FileSink(job, None).begin_attempt(fingerprint(job, files), reuse=True, log=lambda line: None)


def test_an_attempt_superseded_by_a_newer_one_cannot_publish(tmp_path: Path):
    frame = make_frame(1500, seed=64)
    write_frame(frame, tmp_path / "in.csv", "csv")
    sink = tmp_path / "out"
    source = (tmp_path / "in.csv").as_uri()
    old, files = build(tmp_path, SlowWhereMarked(), job_id="run-3", attempt="try1", source=source, sink=sink)
    new, new_files = build(tmp_path, SlowWhereMarked(), job_id="run-3", attempt="try2", source=source, sink=sink)
    with pytest.raises(file_staging.SupersededError, match="attempt 'try1' of 'run-3' did not publish: attempt 'try2'"):
        execute_job(old, files, launcher=StartsAnotherAttempt((new, new_files)))
    assert not [p for p in sink.iterdir() if not p.name.startswith("_temporary")]  # nothing published
    summary = execute_job(new, new_files, log=lambda line: None)  # the newer attempt reuses the older one's shards
    assert summary["resumed_shards"] == [0, 1, 2]
    check_exactly_once(frame, read_output(sink, "csv", ["id", "prediction"]))


class AddsAFile(LocalLauncher):
    def __init__(self, folder: Path):
        super().__init__(lambda line: None)
        self.folder = folder

    def run(self, *args, **kwargs) -> None:
        super().run(*args, **kwargs)
        write_frame(make_frame(10, seed=99), self.folder / "late.csv", "csv")


def test_a_file_added_while_scoring_is_detected_and_nothing_is_published(tmp_path: Path):
    write_frame(make_frame(1200, seed=65), tmp_path / "in" / "a.csv", "csv")
    sink = tmp_path / "out"
    job, files = build(tmp_path, SlowWhereMarked(), job_id="run-4", attempt="try1",
                       source=(tmp_path / "in").as_uri(), sink=sink, replicas=2)
    with pytest.raises(InputError, match=r"changed while it was being scored \(added: .*late\.csv\); nothing was"):
        execute_job(job, files, launcher=AddsAFile(tmp_path / "in"))
    assert_nothing_published(sink)


def test_parallel_runs_into_sibling_folders_do_not_interfere(tmp_path: Path):
    frames = {day: make_frame(2000, seed=70 + i) for i, day in enumerate(["2026-01-05", "2026-01-06"])}
    results: dict[str, object] = {}

    def run(day: str) -> None:
        write_frame(frames[day], tmp_path / "in" / day / "x.csv", "csv")
        job, files = build(tmp_path / day, SlowWhereMarked(), job_id=f"daily.score.{day}", attempt="try1",
                           source=(tmp_path / "in" / day).as_uri(), sink=tmp_path / "out" / f"day={day}",
                           replicas=2)
        try:
            results[day] = execute_job(job, files, log=lambda line: None)
        except BaseException as err:  # reported by the assertion below
            results[day] = err

    for day in frames:
        (tmp_path / day).mkdir()
    threads = [threading.Thread(target=run, args=(day,)) for day in frames]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(300)
    for day, frame in frames.items():
        assert isinstance(results[day], dict), results[day]
        assert results[day]["rows_out"] == 2000
        check_exactly_once(frame, read_output(tmp_path / "out" / f"day={day}", "csv", ["id", "prediction"]))
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["day=2026-01-05", "day=2026-01-06"]


def test_preflight_fails_before_any_replica_starts(tmp_path: Path):
    """With the schema known before the model is loaded (given here; an MLflow signature does the same), a bad
    value in the head of a file fails the run before any replica starts."""
    frame = make_frame(5000, seed=66)
    write_frame(frame, tmp_path / "in.csv", "csv")
    text = (tmp_path / "in.csv").read_text().splitlines()
    fields = text[2].split(",")
    fields[3] = "not-a-number"  # f2 on line 3
    text[2] = ",".join(fields)
    (tmp_path / "in.csv").write_text("\n".join(text) + "\n")
    sink = tmp_path / "out"
    job, files = build(tmp_path, SlowWhereMarked(), job_id="run-5", attempt="try1",
                       source=(tmp_path / "in.csv").as_uri(), sink=sink, input_schema=SCHEMA)
    lines: list[str] = []
    with pytest.raises(InputError, match=r"in\.csv, line 3, column 'f2': value 'not-a-number'"):
        execute_job(job, files, log=lines.append)
    assert not any(line.startswith("[replica") for line in lines)  # no replica was started
    assert_nothing_published(sink)


def test_storage_server_stopped_mid_run_then_restarted(tmp_path: Path):
    server = start_seaweedfs(tmp_path / "weed")
    try:
        options = {"key": S3_KEY, "secret": S3_SECRET, "endpoint_url": server.endpoint, "skip_instance_cache": True}
        fs = fsspec.filesystem("s3", **options)
        fs.mkdir("faults")
        frame = marked_frame(3000, seed=67, marked=range(0, 3000))  # every batch is slow: 0.25 s
        write_frame(frame, tmp_path / "in.csv", "csv")
        fs.put_file(str(tmp_path / "in.csv"), "faults/in/in.csv")
        storage = {"source": options, "sink": options}
        job, files = build(tmp_path, SlowWhereMarked(), job_id="run-6", attempt="try1", source="s3://faults/in/",
                           sink=tmp_path, sink_uri="s3://faults/out", storage_options=storage, batch_size=100)
        stopped = threading.Event()

        def log(line: str) -> None:
            if "rows scored" in line and not stopped.is_set():
                stopped.set()
                server.stop()  # the store goes away while replicas read and write

        with pytest.raises(StorageError, match="a store could not be reached while the replica read or wrote") as err:
            execute_job(job, files, storage_options=storage, log=log, keep_on_failure=True)
        assert stopped.is_set()
        assert "Check that the store is up" in str(err.value) and S3_SECRET not in str(err.value)
        server.restart()
        fs.invalidate_cache()
        published = [p for p in fs.find("faults/out") if "/_temporary/" not in p]
        assert published == []  # nothing half-published
        retry, files = build(tmp_path, SlowWhereMarked(), job_id="run-6", attempt="try2", source="s3://faults/in/",
                             sink=tmp_path, sink_uri="s3://faults/out", storage_options=storage, batch_size=100)
        summary = execute_job(retry, files, storage_options=storage, log=lambda line: None)
        assert summary["rows_out"] == 3000
        fs.invalidate_cache()
        names = sorted(p.rsplit("/", 1)[-1] for p in fs.find("faults/out"))
        assert names == ["_SUCCESS", "_manifest.json", "part-00000.csv", "part-00001.csv", "part-00002.csv"]
        local = tmp_path / "downloaded"
        local.mkdir()
        for name in names:
            fs.get_file(f"faults/out/{name}", str(local / name))
        check_exactly_once(frame, read_output(local, "csv", ["id", "prediction"]))
    finally:
        server.stop()


def test_attempt_names_are_safe_in_file_names(tmp_path: Path):
    """Attempt names become part of staged file names: anything but letters, digits, ``_`` and ``-`` is replaced,
    and the attempt is dropped again when a part is published."""
    from airflow_batch_scoring.runtime.shards import part_name, published_name

    write_frame(make_frame(10, seed=68), tmp_path / "in.csv", "csv")
    job, _ = build(tmp_path, SlowWhereMarked(), job_id="run-7", attempt="try 2/../x",
                   source=(tmp_path / "in.csv").as_uri(), sink=tmp_path / "out")
    assert job.attempt == "try_2_x"
    assert part_name(3, "csv", job.attempt) == "part-00003.try_2_x.csv"
    assert published_name(part_name(3, "parquet", job.attempt)) == "part-00003.parquet"
    assert part_name(3, "jsonl", job.attempt, "gzip") == "part-00003.try_2_x.jsonl.gz"
    assert published_name(part_name(3, "jsonl", job.attempt, "gzip")) == "part-00003.jsonl.gz"
    assert published_name("part-00003.csv.xz") == "part-00003.csv.xz"  # (already published)
