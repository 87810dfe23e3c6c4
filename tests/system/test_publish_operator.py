"""A publish stopped part-way is finished by the Airflow retry of the same run (``dag.test()``)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import joblib
from fsspec.implementations.local import LocalFileSystem

from tests.support.fault_models import Doubler, check_exactly_once
from tests.support.helpers import make_frame, read_output, source_spec, write_frame

ROWS = 600


def test_airflow_retry_finishes_a_stopped_publish(airflow_db, tmp_path: Path, failing_moves):
    from tests.system.dags.fault_test_dag import dag

    frame = make_frame(ROWS, seed=6)
    write_frame(frame, tmp_path / "in.csv", "csv")
    joblib.dump(Doubler(), tmp_path / "doubler.joblib")
    sink = tmp_path / "out"
    calls = failing_moves(LocalFileSystem, 2)
    run = dag.test(run_conf={
        "model": str(tmp_path / "doubler.joblib"),
        "source": source_spec("csv", (tmp_path / "in.csv").as_uri()),
        "sink": {"uri": sink.as_uri()},
    })
    assert calls[0] >= 2  # the first try's publish failed at its second move ...
    assert run.state == "success"  # ... and Airflow's retry finished it
    (ti,) = run.get_task_instances()
    assert ti.try_number == 2
    check_exactly_once(frame, read_output(sink, "csv", ["id", "prediction"]))
    assert sorted(os.listdir(sink)) == [
        "_SUCCESS", "_manifest.json", "part-00000.csv", "part-00001.csv", "part-00002.csv"]
    manifest = json.loads((sink / "_manifest.json").read_text())
    # the retry finished the first try's publish (its manifest), rather than scoring a shard again and publishing anew
    assert manifest["attempt"] == "try1" and manifest["resumed_shards"] == []
    assert [f["rows"] for f in manifest["output"]["files"]] == [
        len((sink / f"part-{n:05d}.csv").read_text().splitlines()) for n in range(3)]
