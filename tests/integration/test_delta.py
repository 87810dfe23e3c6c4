"""Delta Lake tables as sources and sinks, for real (delta-rs on local files and on SeaweedFS's S3 API): every row
exactly once with the model's own predictions, one table version per run, a retry after a commit adds nothing, a
killed replica leaves the table as it was, partitions committed side by side, and clear errors for bad input."""

from __future__ import annotations

import uuid
from pathlib import Path

import joblib
import pandas as pd
import pyarrow as pa
import pytest

from airflow_batch_scoring.artifacts import process_model
from airflow_batch_scoring.driver.prepare import prepare_job
from airflow_batch_scoring.driver.run import execute_job
from airflow_batch_scoring.errors import ConfigurationError, InputError, ReplicaError
from airflow_batch_scoring.hooks.storage import storage_options
from airflow_batch_scoring.io.delta import delta_storage_options
from airflow_batch_scoring.options import ScoringOptions
from airflow_batch_scoring.specs import parse_data_spec
from tests.support.fault_models import SlowWhereMarked, check_exactly_once, marked_frame
from tests.support.helpers import Models, make_frame, write_frame
from tests.support.launchers import KillWhenOthersFinish
from tests.support.scoring import check_predictions
from tests.support.stores import Store

deltalake = pytest.importorskip("deltalake")
DeltaTable, write_deltalake = deltalake.DeltaTable, deltalake.write_deltalake

DAYS = ("2026-01-01", "2026-01-02")


def with_day(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.assign(day=[DAYS[i % 2] for i in range(len(frame))])


def run(model: str, source: dict, sink: dict, work: Path, *, job_id: str | None = None, attempt: str = "try1",
        options: dict | None = None, launcher=None, log=None, **kwargs) -> dict:
    source_spec, sink_spec = parse_data_spec(source, "source"), parse_data_spec(sink, "sink")
    kwargs.setdefault("passthrough_columns", ["id"])
    job, files = prepare_job(
        job_id=job_id or f"t-{uuid.uuid4().hex[:6]}", attempt=attempt,
        model=process_model(model, str(work / f"model-{attempt}")), source=source_spec, sink=sink_spec,
        storage_options=options, options=ScoringOptions.parse(**kwargs),
    )
    return execute_job(job, files, storage_options=options, log=log or (lambda line: None), launcher=launcher)


def data_files(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*.parquet") if "_batch_scoring" not in p.parts)


def test_local_partitioned_sink_source_retry_and_partitions(models: Models, tmp_path: Path):
    """Parquet -> a new partitioned Delta table (3 replicas, one version); that table (filtered to one partition,
    pinned) -> another; a retry after the commit adds nothing; overwrite_partition runs side by side."""
    model = str(models.regressor_path)
    frame = with_day(make_frame(3000, seed=71))
    write_frame(frame, tmp_path / "in.parquet", "parquet")
    table = tmp_path / "scores"
    summary = run(model, {"uri": (tmp_path / "in.parquet").as_uri()},
                  {"format": "delta", "uri": table.as_uri(), "partition_by": ["day"]}, tmp_path, replicas=3,
                  passthrough_columns=["id", "day", *[f"f{i}" for i in range(5)]])
    scores = DeltaTable(str(table))
    assert scores.version() == 0 and scores.metadata().partition_columns == ["day"]
    assert summary["rows_out"] == 3000 and summary["delta"]["version"] == 0 and summary["delta"]["created"]
    check_predictions(frame, scores.to_pyarrow_table(), models.regressor)

    # the Delta table as a source: one partition, pinned to version 0 (recorded in the manifest)
    extra = frame.iloc[:10].assign(id=frame["id"].iloc[:10] + 10**9, day=DAYS[0], prediction=0.0)
    write_deltalake(str(table), pa.Table.from_pandas(extra, preserve_index=False), mode="append")
    assert DeltaTable(str(table)).version() == 1  # ten more rows the run pinned to version 0 must not read
    out = tmp_path / "day1"
    sink = {"format": "delta", "uri": out.as_uri()}
    source = {"format": "delta", "uri": str(table), "version": 0, "filter": {"day": DAYS[0]}}
    lines: list[str] = []
    first = run(model, source, sink, tmp_path, job_id="day1-run", replicas=3, log=lines.append)
    day1 = frame[frame["day"] == DAYS[0]]
    check_predictions(day1, DeltaTable(str(out)).to_pyarrow_table(), models.regressor)
    assert first["rows_in"] == len(day1)
    manifest = (out / "_batch_scoring" / "day1-run" / "_manifest.json").read_text()
    assert '"version": 0' in manifest and '"format": "delta"' in manifest

    # the same run again (a retry after a commit whose success was lost): nothing scored, nothing committed
    lines.clear()
    again = run(model, source, sink, tmp_path, job_id="day1-run", attempt="try2", replicas=3, log=lines.append)
    assert DeltaTable(str(out)).version() == 0 and again["delta"]["already_committed"]
    assert any("already committed" in line for line in lines), lines
    assert not any(line.startswith("[replica") for line in lines)

    # two runs for different partitions commit side by side
    parts = tmp_path / "parts"
    for day in DAYS:
        run(model, {"format": "delta", "uri": str(table), "version": 0, "filter": [["day", "=", day]]},
            {"format": "delta", "uri": str(parts), "mode": "overwrite_partition", "partition": {"day": day},
             "partition_by": ["day"]}, tmp_path, replicas=2, passthrough_columns=["id", "day"])
    final = DeltaTable(str(parts))
    assert final.version() == 1
    check_predictions(frame, final.to_pyarrow_table(), models.regressor)


def test_merge_and_schema_checks(models: Models, tmp_path: Path):
    """merge on keys updates and inserts in one version; a schema that does not fit is refused (nothing committed,
    no file left), unless new columns are allowed."""
    model = str(models.regressor_path)
    frame = make_frame(1200, seed=72)
    write_frame(frame, tmp_path / "in.parquet", "parquet")
    source = {"uri": (tmp_path / "in.parquet").as_uri()}
    table = tmp_path / "merged"
    old = pd.DataFrame({"id": frame["id"].iloc[:500], "prediction": 0.0})
    write_deltalake(str(table), pa.Table.from_pandas(old, preserve_index=False))
    summary = run(model, source, {"format": "delta", "uri": str(table), "mode": "merge", "merge_keys": ["id"]},
                  tmp_path, replicas=2)
    assert summary["delta"]["merge"] == {"inserted": 700, "updated": 500}
    merged = DeltaTable(str(table))
    assert merged.version() == 1
    check_predictions(frame, merged.to_pyarrow_table(), models.regressor)

    typed = tmp_path / "typed"
    write_deltalake(str(typed), pa.table({"id": pa.array([1], pa.int64()), "prediction": ["high"]}))
    with pytest.raises(ConfigurationError, match=r"'prediction' \(table: string, output: double\)"):
        run(model, source, {"format": "delta", "uri": str(typed)}, tmp_path, replicas=2)
    assert DeltaTable(str(typed)).version() == 0 and len(data_files(typed)) == 1  # no file left behind

    narrow = tmp_path / "narrow"  # (without allow_new_columns such a table is refused: tests/unit/test_delta_spec.py)
    write_deltalake(str(narrow), pa.table({"id": pa.array([-1], pa.int64())}))
    run(model, source, {"format": "delta", "uri": str(narrow), "allow_new_columns": True}, tmp_path)
    widened = DeltaTable(str(narrow)).to_pyarrow_table().filter(pa.compute.field("id") >= 0)
    check_predictions(frame, widened, models.regressor)


def test_bad_input(models: Models, tmp_path: Path):
    model = str(models.regressor_path)
    sink = {"format": "delta", "uri": str(tmp_path / "out")}
    with pytest.raises(InputError, match="there is no Delta table at"):
        run(model, {"format": "delta", "uri": str(tmp_path / "nothing")}, sink, tmp_path)
    write_deltalake(str(tmp_path / "src"), pa.Table.from_pandas(make_frame(50, seed=73), preserve_index=False))
    with pytest.raises(ConfigurationError, match="names the column 'region', which .* does not have"):
        run(model, {"format": "delta", "uri": str(tmp_path / "src"), "filter": {"region": "eu"}}, sink, tmp_path)
    with pytest.raises(ConfigurationError, match="is only used with mode='merge'"):
        parse_data_spec({"format": "delta", "uri": "s3://b/t", "merge_keys": ["id"]}, "sink")
    with pytest.raises(ConfigurationError, match="is for Delta tables"):
        parse_data_spec({"uri": "s3://b/t", "partition_by": ["day"]}, "sink")
    assert not (tmp_path / "out").exists()


@pytest.mark.usefixtures("replicas_import_tests")  # replicas unpickle tests.support.fault_models.*
def test_killed_replica_leaves_the_table_unchanged(tmp_path: Path):
    frame = marked_frame(3000, seed=74, marked=range(1000, 2000))  # shard 1's rows are slow
    write_frame(frame, tmp_path / "in.parquet", "parquet")
    joblib.dump(SlowWhereMarked(), tmp_path / "slow.joblib")
    table = tmp_path / "scores"
    write_deltalake(str(table), pa.table({"id": pa.array([-1], pa.int64()), "prediction": [0.0]}))
    before = data_files(table)
    source, sink = {"uri": (tmp_path / "in.parquet").as_uri()}, {"format": "delta", "uri": str(table)}
    killer = KillWhenOthersFinish(victim=1, replicas=3)
    with pytest.raises(ReplicaError, match="Replica 1 was killed by signal 9"):
        run(str(tmp_path / "slow.joblib"), source, sink, tmp_path, job_id="killed", replicas=3, batch_size=50,
            launcher=killer, log=killer._log)
    assert DeltaTable(str(table)).version() == 0
    assert data_files(table) == before  # the data files the attempt wrote are gone
    lines: list[str] = []
    retry = run(str(tmp_path / "slow.joblib"), source, sink, tmp_path, job_id="killed", attempt="try2", replicas=3,
                batch_size=50, log=lines.append)
    assert DeltaTable(str(table)).version() == 1 and retry["delta"]["version"] == 1
    output = DeltaTable(str(table)).to_pyarrow_table().filter(pa.compute.field("id") >= 0)
    check_exactly_once(frame, output)


def test_seaweedfs_s3(s3_store: Store, models: Models, tmp_path: Path):
    """A Delta table on SeaweedFS (S3 API) through an Airflow connection: sink with 3 replicas, then as a source."""
    model = str(models.regressor_path)
    frame = make_frame(2000, seed=75)
    write_frame(frame, tmp_path / "in.parquet", "parquet")
    prefix = uuid.uuid4().hex[:8]
    conn = s3_store.conn_id
    source = {"uri": s3_store.put(tmp_path / "in.parquet", f"{prefix}/in.parquet"), "conn_id": conn}
    sink = {"format": "delta", "uri": s3_store.uri(f"{prefix}/scores"), "conn_id": conn}
    options = {"source": storage_options(source["uri"], conn), "sink": storage_options(sink["uri"], conn)}
    summary = run(model, source, sink, tmp_path, options=options, replicas=3,
                  passthrough_columns=["id", *[f"f{i}" for i in range(5)]])
    table = DeltaTable(sink["uri"], storage_options=delta_storage_options(sink["uri"], options["sink"]))
    assert table.version() == 0 and summary["rows_out"] == 2000
    check_predictions(frame, table.to_pyarrow_table(), models.regressor)
    out = {"format": "delta", "uri": s3_store.uri(f"{prefix}/again"), "conn_id": conn}
    run(model, {**sink, "version": 0}, out, tmp_path, options={"source": options["sink"], "sink": options["sink"]},
        replicas=1)
    again = DeltaTable(out["uri"], storage_options=delta_storage_options(out["uri"], options["sink"]))
    check_predictions(frame, again.to_pyarrow_table(), models.regressor)
