"""Apache Iceberg tables in SQL catalogs (SQLite, and the test PostgreSQL through an Airflow connection), for real:
one snapshot per run carrying the run id, a retry after the commit adds nothing, a snapshot-pinned source, a killed
replica leaves the table as it was, and a schema that does not fit is refused; partitions overwritten side by side,
merge on keys, and a filtered, column-pruned source."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import joblib
import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from airflow_batch_scoring.artifacts import process_model
from airflow_batch_scoring.driver.prepare import prepare_job
from airflow_batch_scoring.driver.run import execute_job
from airflow_batch_scoring.errors import ConfigurationError, InputError, ReplicaError
from airflow_batch_scoring.hooks.data import credentials_for
from airflow_batch_scoring.io.iceberg import RUN_ID_KEY, load_catalog
from airflow_batch_scoring.options import ScoringOptions
from airflow_batch_scoring.specs import parse_data_spec
from tests.support.fault_models import SlowWhereMarked, check_exactly_once, marked_frame
from tests.support.helpers import FEATURES, Models, make_frame, write_frame
from tests.support.launchers import KillWhenOthersFinish
from tests.support.scoring import check_predictions
from tests.support.sql import Database
from tests.support.stores import Store

pytest.importorskip("pyiceberg")


def run(model: str, source: dict, sink: dict, work: Path, *, job_id: str | None = None, attempt: str = "try1",
        launcher=None, log=None, **kwargs) -> dict:
    source_spec, sink_spec = parse_data_spec(source, "source"), parse_data_spec(sink, "sink")
    options = {"source": credentials_for(source_spec), "sink": credentials_for(sink_spec)}
    kwargs.setdefault("passthrough_columns", ["id"])
    job, files = prepare_job(
        job_id=job_id or f"t-{uuid.uuid4().hex[:6]}", attempt=attempt,
        model=process_model(model, str(work / f"model-{attempt}")), source=source_spec, sink=sink_spec,
        storage_options=options, options=ScoringOptions.parse(**kwargs),
    )
    return execute_job(job, files, storage_options=options, log=log or (lambda line: None), launcher=launcher)


def table_of(spec: dict):
    parsed = parse_data_spec(spec, "sink")
    return load_catalog(parsed, credentials_for(parsed)).load_table(parsed.table)


def test_sqlite_catalog_sink_source_and_retry(models: Models, tmp_path: Path, pg: Database, s3_store: Store):
    model = str(models.regressor_path)
    frame = make_frame(2500, seed=81)
    write_frame(frame, tmp_path / "in.parquet", "parquet")
    catalog = {"format": "iceberg", "catalog_uri": f"sqlite:///{tmp_path / 'catalog.db'}",
               "warehouse": (tmp_path / "warehouse").as_uri()}
    sink = {**catalog, "table": "lake.scores"}
    summary = run(model, {"uri": (tmp_path / "in.parquet").as_uri()}, sink, tmp_path, job_id="ice-1", replicas=3,
                  passthrough_columns=["id", *[f"f{i}" for i in range(5)]])
    table = table_of(sink)
    assert len(table.snapshots()) == 1 and table.current_snapshot().summary[RUN_ID_KEY] == "ice-1"
    assert summary["rows_out"] == 2500 and summary["iceberg"]["created"]
    check_predictions(frame, table.scan().to_arrow(), models.regressor)

    lines: list[str] = []
    again = run(model, {"uri": (tmp_path / "in.parquet").as_uri()}, sink, tmp_path, job_id="ice-1",
                attempt="try2", replicas=3, log=lines.append)
    assert again["iceberg"]["already_committed"] and len(table_of(sink).snapshots()) == 1
    assert not any(line.startswith("[replica") for line in lines)

    # the table as a source, pinned to its snapshot, into a table of a PostgreSQL catalog (Airflow connection)
    # whose warehouse is on SeaweedFS (S3 API)
    snapshot = table.current_snapshot().snapshot_id
    target = {"format": "iceberg", "catalog_conn_id": pg.conn_id, "conn_id": s3_store.conn_id,
              "warehouse": s3_store.uri(f"{uuid.uuid4().hex[:8]}/warehouse"),
              "table": f"lake.scores_{uuid.uuid4().hex[:6]}", "mode": "overwrite"}
    for attempt in ("try1", "try2"):  # the second run overwrites the first: the rows once
        run(model, {**catalog, "table": "lake.scores", "snapshot_id": snapshot}, target, tmp_path, replicas=2,
            attempt=attempt)
    check_predictions(frame, table_of(target).scan().to_arrow(), models.regressor)


def test_bad_input_and_schema(models: Models, tmp_path: Path):
    model = str(models.regressor_path)
    frame = make_frame(300, seed=82)
    write_frame(frame, tmp_path / "in.parquet", "parquet")
    catalog = {"format": "iceberg", "catalog_uri": f"sqlite:///{tmp_path / 'catalog.db'}",
               "warehouse": (tmp_path / "warehouse").as_uri()}
    with pytest.raises(InputError, match="there is no Iceberg table lake.nothing"):
        run(model, {**catalog, "table": "lake.nothing"}, {"uri": (tmp_path / "out").as_uri()}, tmp_path)
    with pytest.raises(InputError, match="cannot reach the Iceberg catalog postgresql"):
        run(model, {"uri": (tmp_path / "in.parquet").as_uri()},
            {**catalog, "catalog_uri": "postgresql://nobody@127.0.0.1:9/none", "table": "lake.t"}, tmp_path)
    import pyarrow as pa

    spec = parse_data_spec({**catalog, "table": "lake.typed"}, "sink")
    cat = load_catalog(spec, {})
    cat.create_namespace_if_not_exists("lake")
    cat.create_table("lake.typed", schema=pa.schema([("id", pa.int64()), ("prediction", pa.string())]))
    with pytest.raises(ConfigurationError, match=r"'prediction' \(table: string, output: double\)"):
        run(model, {"uri": (tmp_path / "in.parquet").as_uri()}, {**catalog, "table": "lake.typed"}, tmp_path)
    assert cat.load_table("lake.typed").snapshots() == []
    assert not list((tmp_path / "warehouse").rglob("*.parquet"))


@pytest.mark.usefixtures("replicas_import_tests")
def test_killed_replica_commits_nothing(tmp_path: Path):
    frame = marked_frame(3000, seed=83, marked=range(1000, 2000))
    write_frame(frame, tmp_path / "in.parquet", "parquet")
    joblib.dump(SlowWhereMarked(), tmp_path / "slow.joblib")
    sink = {"format": "iceberg", "catalog_uri": f"sqlite:///{tmp_path / 'catalog.db'}",
            "warehouse": (tmp_path / "warehouse").as_uri(), "table": "lake.scores"}
    killer = KillWhenOthersFinish(victim=1, replicas=3)
    with pytest.raises(ReplicaError, match="Replica 1 was killed by signal 9"):
        run(str(tmp_path / "slow.joblib"), {"uri": (tmp_path / "in.parquet").as_uri()}, sink, tmp_path,
            job_id="killed", replicas=3, batch_size=50, launcher=killer, log=killer._log)
    assert not list((tmp_path / "warehouse").rglob("*.parquet"))  # no table, no data file left
    run(str(tmp_path / "slow.joblib"), {"uri": (tmp_path / "in.parquet").as_uri()}, sink, tmp_path,
        job_id="killed", attempt="try2", replicas=3, batch_size=50)
    table = table_of(sink)
    assert len(table.snapshots()) == 1
    check_exactly_once(frame, table.scan().to_arrow())


def day_frame(rows: int, seed: int, day: str):
    frame = make_frame(rows, seed=seed)
    frame["day"] = day
    return frame


def test_partitions_side_by_side_filtered_source(models: Models, tmp_path: Path):
    """overwrite_partition of two days side by side in a table the first run creates partitioned, one day replaced
    again (a retry of that run adds nothing), then the table as a filtered, column-pruned source."""
    model = str(models.regressor_path)
    catalog = {"format": "iceberg", "catalog_uri": f"sqlite:///{tmp_path / 'catalog.db'}",
               "warehouse": (tmp_path / "warehouse").as_uri()}
    frames = {"d1": day_frame(600, 84, "2026-01-01"), "d2": day_frame(600, 85, "2026-01-02"),
              "d1b": day_frame(500, 86, "2026-01-01")}
    for name, frame in frames.items():
        write_frame(frame, tmp_path / f"{name}.parquet", "parquet")
    sink = {**catalog, "table": "lake.daily", "mode": "overwrite_partition", "partition_by": ["day"]}

    def score(name: str, day: str, replicas: int = 1, **kwargs) -> dict:
        return run(model, {"uri": (tmp_path / f"{name}.parquet").as_uri()}, {**sink, "partition": {"day": day}},
                   tmp_path, replicas=replicas, passthrough_columns=["id", "day", *FEATURES], **kwargs)

    score("d1", "2026-01-01", replicas=2, job_id="day-1")
    score("d2", "2026-01-02", job_id="day-2")
    score("d1b", "2026-01-01", job_id="day-1b")
    table = table_of({**catalog, "table": "lake.daily"})
    assert [f.name for f in table.spec().fields] == ["day"]
    snapshots = len(table.snapshots())
    again = score("d1b", "2026-01-01", job_id="day-1b", attempt="try2")
    assert again["iceberg"]["already_committed"] and len(table.refresh().snapshots()) == snapshots
    rows = table.scan().to_arrow()
    assert sorted(set(rows.column("day").to_pylist())) == ["2026-01-01", "2026-01-02"]
    check_predictions(pd.concat([frames["d1b"], frames["d2"]]), rows, models.regressor)
    with pytest.raises(ConfigurationError, match="outside the partition"):  # rows of another day: nothing committed
        score("d2", "2026-01-01", job_id="day-wrong")
    assert len(table.refresh().snapshots()) == snapshots

    # the table as a source: one partition (its files only), a row filter, only the columns needed
    source = {**catalog, "table": "lake.daily", "columns": ["id", *FEATURES],
              "filter": [["day", "=", "2026-01-02"], ["f0", ">", 0]]}
    out = tmp_path / "out"
    summary = run(model, source, {"uri": out.as_uri() + "/", "format": "parquet"}, tmp_path, replicas=2,
                  passthrough_columns=["id"])
    kept = frames["d2"][frames["d2"]["f0"] > 0]
    assert summary["rows_out"] == len(kept)
    check_predictions(kept, pq.read_table(out), models.regressor)
    day2_files = [t.file.file_path for t in table.scan(row_filter="day = '2026-01-02'").plan_files()]
    manifest = json.loads((out / "_manifest.json").read_text())
    assert manifest["input"]["files"] == len(day2_files) < len(list(table.scan().plan_files()))

    with pytest.raises(InputError, match=r"source\['filter'\] names the column 'nope'.*its columns are \['id'"):
        run(model, {**source, "filter": [["nope", "=", 1]]}, {"uri": (tmp_path / "none").as_uri() + "/"}, tmp_path)
    with pytest.raises(InputError, match=r"does not fit the columns of the Iceberg table lake.daily.*into a long"):
        run(model, {**source, "filter": [["id", "=", "abc"]]}, {"uri": (tmp_path / "none").as_uri() + "/"}, tmp_path)
    assert not (tmp_path / "none").exists()


def test_merge_on_keys_postgres_catalog_on_s3(models: Models, tmp_path: Path, pg: Database, s3_store: Store):
    """merge on id (PostgreSQL catalog, warehouse on SeaweedFS): the first run creates the table, the second updates
    the rows whose ids exist and inserts the others, exactly; a retry adds nothing."""
    model = str(models.regressor_path)
    first, second = make_frame(600, seed=87), make_frame(600, seed=88)
    first["id"], second["id"] = np.arange(0, 600), np.arange(300, 900)
    for name, frame in (("first", first), ("second", second)):
        write_frame(frame, tmp_path / f"{name}.parquet", "parquet")
    sink = {"format": "iceberg", "catalog_conn_id": pg.conn_id, "conn_id": s3_store.conn_id,
            "warehouse": s3_store.uri(f"{uuid.uuid4().hex[:8]}/warehouse"),
            "table": f"lake.merged_{uuid.uuid4().hex[:6]}", "mode": "merge", "merge_keys": ["id"]}
    run(model, {"uri": (tmp_path / "first.parquet").as_uri()}, sink, tmp_path, job_id="merge-1", replicas=2,
        passthrough_columns=["id", *FEATURES])
    summary = run(model, {"uri": (tmp_path / "second.parquet").as_uri()}, sink, tmp_path, job_id="merge-2",
                  replicas=2, passthrough_columns=["id", *FEATURES])
    assert (summary["iceberg"]["updated"], summary["iceberg"]["inserted"]) == (300, 300)
    snapshots = len(table_of(sink).snapshots())
    again = run(model, {"uri": (tmp_path / "second.parquet").as_uri()}, sink, tmp_path, job_id="merge-2",
                attempt="try2", replicas=2, passthrough_columns=["id", *FEATURES])
    assert again["iceberg"]["already_committed"] and len(table_of(sink).snapshots()) == snapshots
    check_predictions(pd.concat([first[first["id"] < 300], second]), table_of(sink).scan().to_arrow(),
                      models.regressor)
