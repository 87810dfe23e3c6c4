"""Incremental scoring for real: landings of files (local and on SeaweedFS's S3 API) and appends to Delta and Iceberg
tables, each run scoring only what is new since the last run that published, a failed run caught up by the next,
nothing new -> 0 rows and nothing published, and clear errors for what incremental scoring cannot read."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pytest

from airflow_batch_scoring.artifacts import process_model
from airflow_batch_scoring.driver import incremental
from airflow_batch_scoring.driver.prepare import prepare_job
from airflow_batch_scoring.driver.run import execute_job
from airflow_batch_scoring.errors import ConfigurationError, InputError
from airflow_batch_scoring.hooks.data import credentials_for
from airflow_batch_scoring.options import ScoringOptions
from airflow_batch_scoring.specs import parse_data_spec
from tests.support.helpers import Models, make_frame, read_output, write_frame
from tests.support.scoring import check_predictions
from tests.support.stores import Store


def run(model: str, source: dict, sink: dict, work: Path, *, key: str = "dag.score.-1", state: str | None = None,
        job_id: str | None = None, attempt: str = "try1", lines: list[str] | None = None, **kwargs) -> dict:
    source_spec, sink_spec = parse_data_spec(source, "source"), parse_data_spec(sink, "sink")
    options = {"source": credentials_for(source_spec), "sink": credentials_for(sink_spec)}
    kwargs.setdefault("passthrough_columns", ["id"])
    log = lines.append if lines is not None else (lambda line: None)
    job, files = prepare_job(
        job_id=job_id or f"t-{uuid.uuid4().hex[:6]}", attempt=attempt,
        model=process_model(model, str(work / f"model-{uuid.uuid4().hex[:6]}")), source=source_spec,
        sink=sink_spec, storage_options=options, log=log,
        options=ScoringOptions.parse(incremental=True, incremental_key=key, incremental_state=state, **kwargs),
    )
    return execute_job(job, files, storage_options=options, log=log)


def state_of(folder: Path) -> dict:
    (document,) = [json.loads(p.read_text()) for p in folder.glob("*.json")]
    return document


def test_files_three_landings_a_failed_run_caught_up_nothing_new_and_a_changed_file(models: Models, tmp_path: Path):
    model = str(models.regressor_path)
    landing, state = tmp_path / "landing", tmp_path / "state"
    frames = [make_frame(300, seed=s) for s in (91, 92, 93)]
    write_frame(frames[0], landing / "a.csv", "csv_header")
    source = {"uri": landing.as_uri() + "/", "format": "csv"}

    def sink(name: str) -> dict:
        return {"uri": (tmp_path / "out" / name).as_uri() + "/", "format": "csv"}

    first = run(model, source, sink("r1"), tmp_path, state=state.as_uri(), replicas=2)
    assert first["rows_in"] == 300 and first["new_files"] == 1
    assert first["incremental"]["watermark"] == {"files_scored": 1}
    assert not list((state / "_planned").iterdir())  # the run's planned watermarks, removed once promoted
    assert state_of(state)["committed"]["watermark"]["files"][0]["uri"].endswith("/a.csv")

    # landing 2 (good) and landing 3 (a malformed row): the run fails, publishes nothing, the watermark stays
    write_frame(frames[1], landing / "b.csv", "csv_header")
    bad = frames[2].astype(str)
    bad.loc[5, "f1"] = "abc"
    write_frame(bad, landing / "c.csv", "csv_header")
    with pytest.raises(InputError, match="c.csv"):
        run(model, source, sink("r2"), tmp_path, state=state.as_uri())
    assert not (tmp_path / "out" / "r2" / "_SUCCESS").exists()
    assert len(state_of(state)["committed"]["watermark"]["files"]) == 1

    # the bad file is fixed: the next run scores both landings the failed run missed
    write_frame(frames[2], landing / "c.csv", "csv_header")
    lines: list[str] = []
    third = run(model, source, sink("r3"), tmp_path, state=state.as_uri(), lines=lines)
    assert third["rows_in"] == 600 and third["new_files"] == 2
    manifest = json.loads((tmp_path / "out" / "r3" / "_manifest.json").read_text())
    assert manifest["input"]["incremental"]["new_files"] == 2
    assert manifest["input"]["incremental"]["since"] == {"files_scored": 1}
    assert [f["uri"].rsplit("/", 1)[1] for f in manifest["input"]["files"]] == ["b.csv", "c.csv"]
    names = ["id", "prediction"]
    outputs = [read_output(str(tmp_path / "out" / r), "csv_header").select(names) for r in ("r1", "r3")]
    check_predictions(pd.concat(frames), pa.concat_tables(outputs), models.regressor)  # every id exactly once

    # nothing new: success, 0 rows, nothing published
    lines.clear()
    nothing = run(model, source, sink("r4"), tmp_path, state=state.as_uri(), lines=lines)
    assert nothing["rows_in"] == 0 and nothing["new_files"] == 0 and nothing["manifest_uri"] is None
    assert not (tmp_path / "out" / "r4").exists()
    assert any("Incremental: nothing new in" in line for line in lines), lines

    # an already-scored file that changed: refused, naming it
    write_frame(frames[0].iloc[:10], landing / "a.csv", "csv_header")
    with pytest.raises(InputError, match=r"a\.csv.*new name"):
        run(model, source, sink("r5"), tmp_path, state=state.as_uri())

    # a file sink needs a state folder; a SQL source cannot be read incrementally
    with pytest.raises(ConfigurationError, match="incremental_state"):
        run(model, source, sink("r6"), tmp_path)
    with pytest.raises(ConfigurationError, match="incremental"):
        ScoringOptions.parse(incremental=True)


def test_files_on_seaweedfs(s3_store: Store, models: Models, tmp_path: Path):
    """Landings on S3 into per-run folders on S3, the state on the sink's store (its connection)."""
    model = str(models.regressor_path)
    prefix = uuid.uuid4().hex[:8]
    frames = [make_frame(200, seed=s) for s in (94, 95)]
    conn = s3_store.conn_id
    source = {"uri": s3_store.uri(f"{prefix}/landing/"), "format": "parquet", "conn_id": conn}
    state = s3_store.uri(f"{prefix}/state/")
    outputs = []
    for n, frame in enumerate(frames):
        write_frame(frame, tmp_path / f"{n}.parquet", "parquet")
        s3_store.put(tmp_path / f"{n}.parquet", f"{prefix}/landing/{n}.parquet")
        summary = run(model, source, {"uri": s3_store.uri(f"{prefix}/out/{n}/"), "conn_id": conn}, tmp_path,
                      state=state)
        assert summary["rows_in"] == 200 and summary["new_files"] == 1
        outputs.append(s3_store.read_output(f"{prefix}/out/{n}", "parquet", ["id", "prediction"]))
    check_predictions(pd.concat(frames), pa.concat_tables(outputs), models.regressor)
    s3_store.fs.invalidate_cache()
    entries = s3_store.fs.ls(f"{s3_store.bucket}/{prefix}/state/", detail=True)
    (document,) = [e["name"] for e in entries if e["type"] == "file"]
    assert document.endswith(".json")  # (and no planned watermark left behind)
    planned = s3_store.fs.find(f"{s3_store.bucket}/{prefix}/state/_planned/", detail=True)
    assert [name for name, info in planned.items() if info["type"] == "file"] == []


def test_delta_appends_optimize_retry_and_delete(models: Models, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    deltalake = pytest.importorskip("deltalake")
    model = str(models.regressor_path)
    table, scores = tmp_path / "events", tmp_path / "scores"
    frames = [make_frame(250, seed=s) for s in (96, 97, 98)]
    source = {"format": "delta", "uri": table.as_uri()}
    sink = {"format": "delta", "uri": scores.as_uri()}

    def append(frame: pd.DataFrame) -> None:
        deltalake.write_deltalake(str(table), pa.Table.from_pandas(frame, preserve_index=False), mode="append")

    append(frames[0])
    first = run(model, source, sink, tmp_path)
    assert first["rows_in"] == 250 and first["incremental"]["watermark"] == {"version": 0}
    append(frames[1])
    deltalake.DeltaTable(str(table)).optimize.compact()  # version 2: the same rows in other files
    second = run(model, source, sink, tmp_path)
    assert second["rows_in"] == 250 and second["incremental"]["new_versions"] == 2
    assert run(model, source, sink, tmp_path)["rows_in"] == 0  # nothing new after the compaction
    assert deltalake.DeltaTable(str(scores)).version() == 1

    # the run dies between its commit and promoting its watermark: the retry finds it committed, scores nothing
    append(frames[2])
    monkeypatch.setattr(incremental, "after_publish", lambda *a, **k: (_ for _ in ()).throw(OSError("worker lost")))
    with pytest.raises(OSError, match="worker lost"):
        run(model, source, sink, tmp_path, job_id="run-3")
    monkeypatch.undo()
    lines: list[str] = []
    retry = run(model, source, sink, tmp_path, job_id="run-3", attempt="try2", lines=lines)
    assert retry["delta"]["already_committed"] and deltalake.DeltaTable(str(scores)).version() == 2
    (document,) = [json.loads(p.read_text()) for p in (scores / "_batch_scoring" / "incremental").glob("*.json")]
    assert document["committed"] == {**document["committed"], "job_id": "run-3", "watermark": {"version": 3}}
    assert "pending" not in document
    check_predictions(pd.concat(frames), deltalake.DeltaTable(str(scores)).to_pyarrow_table(), models.regressor)
    assert run(model, source, sink, tmp_path)["rows_in"] == 0

    deltalake.DeltaTable(str(table)).delete(f"id = {frames[0]['id'].iloc[0]}")
    with pytest.raises(InputError, match=r"version 4 .*DELETE.*appended rows only"):
        run(model, source, sink, tmp_path)


def test_iceberg_two_appends(models: Models, tmp_path: Path):
    pytest.importorskip("pyiceberg")
    from pyiceberg.catalog.sql import SqlCatalog

    model = str(models.regressor_path)
    catalog = {"format": "iceberg", "catalog_uri": f"sqlite:///{tmp_path / 'catalog.db'}",
               "warehouse": (tmp_path / "warehouse").as_uri()}
    frames = [make_frame(200, seed=s) for s in (99, 100)]
    sql = SqlCatalog("batch_scoring", uri=catalog["catalog_uri"], warehouse=catalog["warehouse"])
    sql.create_namespace("lake")
    events = sql.create_table("lake.events", schema=pa.Table.from_pandas(frames[0], preserve_index=False).schema)
    source, sink = {**catalog, "table": "lake.events"}, {**catalog, "table": "lake.scores"}
    for frame in frames:
        events.append(pa.Table.from_pandas(frame, preserve_index=False))
        summary = run(model, source, sink, tmp_path)
        assert summary["rows_in"] == 200 and summary["new_files"] == 1
    check_predictions(pd.concat(frames), sql.load_table("lake.scores").scan().to_arrow(), models.regressor)
    assert run(model, source, sink, tmp_path)["rows_in"] == 0
