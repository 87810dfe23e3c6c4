"""Bad rows through real replica processes: the command line's quarantine, and quarantine on an object store
(SeaweedFS). The case table itself is tests/unit/test_bad_rows.py."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from pathlib import Path

import pyarrow as pa

from airflow_batch_scoring.artifacts import process_model
from airflow_batch_scoring.driver.prepare import prepare_job
from airflow_batch_scoring.driver.run import execute_job
from airflow_batch_scoring.options import ScoringOptions
from airflow_batch_scoring.specs import parse_data_spec
from tests.support.bad_rows import COLUMNS, csv_with_bad_lines, errors_of, spread_bad_lines
from tests.support.helpers import Models, make_frame
from tests.support.scoring import check_predictions


def test_command_line_quarantine(models: Models, tmp_path: Path):
    source = csv_with_bad_lines(tmp_path, 300, [7, 8])
    sink = (tmp_path / "out").as_uri()
    result = subprocess.run(
        [str(Path(sys.executable).parent / "batch-scoring"), "score", "--model", str(models.regressor_path),
         "--source", source["uri"], "--sink", sink, "--columns", ",".join(COLUMNS), "--passthrough", "id",
         "--on-bad-rows", "quarantine", "--max-bad-rows", "2", "--sink-format", "parquet"],
        capture_output=True, text=True,
    )
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["rows_bad"] == 2 and summary["rows_out"] == 298
    assert [e["line"] for e in errors_of(tmp_path / "out")] == [8, 9]


def test_quarantine_on_an_object_store(
    seaweedfs, s3_bucket, models: Models, tmp_path: Path, monkeypatch  # noqa: F811
):
    import fsspec

    from airflow_batch_scoring.hooks.storage import storage_options
    from tests.support.servers import S3_KEY, S3_SECRET

    monkeypatch.setenv("AIRFLOW_CONN_S3_BAD_ROWS", json.dumps(
        {"conn_type": "aws", "login": S3_KEY, "password": S3_SECRET, "extra": {"endpoint_url": seaweedfs.endpoint}}))
    fs = fsspec.filesystem("s3", key=S3_KEY, secret=S3_SECRET, endpoint_url=seaweedfs.endpoint,
                           skip_instance_cache=True)
    run = f"{s3_bucket}/bad-rows-{uuid.uuid4().hex[:8]}"
    frame = make_frame(1200, seed=16)
    path, bad = spread_bad_lines(frame, tmp_path)
    fs.put_file(str(path), f"{run}/in/data.csv")
    source = parse_data_spec({"uri": f"s3://{run}/in/", "format": "csv", "columns": COLUMNS,
                             "conn_id": "s3_bad_rows"}, "source")
    sink = parse_data_spec({"uri": f"s3://{run}/out/", "format": "jsonl", "conn_id": "s3_bad_rows"}, "sink")
    options = {"source": storage_options(source.uri, "s3_bad_rows"), "sink": storage_options(sink.uri, "s3_bad_rows")}
    model = process_model(str(models.regressor_path), str(tmp_path / "model"))
    job, files = prepare_job(
        job_id=f"s3-{run}",
        model=model,
        source=source,
        sink=sink,
        storage_options=options,
        options=ScoringOptions.parse(passthrough_columns=["id"], replicas=2, part_size=8192, on_bad_rows="quarantine"),
    )
    summary = execute_job(job, files, storage_options=options, log=lambda line: None)  # real replica processes
    assert summary["rows_bad"] == len(bad) == 6
    fs.invalidate_cache()
    names = sorted(p.removeprefix(f"{run}/out/") for p in fs.find(f"{run}/out"))
    assert names == ["_SUCCESS", "_errors/part-00000.jsonl", "_errors/part-00001.jsonl", "_manifest.json",
                     "part-00000.jsonl", "part-00001.jsonl"]
    error_parts = sorted(fs.glob(f"{run}/out/_errors/*.jsonl"))
    errors = [json.loads(x) for part in error_parts for x in fs.cat_file(part).decode().splitlines()]
    assert [(e["line"], e["reason"], e["file"]) for e in errors] == [
        (i + 1, bad[i][0], f"s3://{run}/in/data.csv") for i in sorted(bad)
    ]
    outputs = sorted(p for p in fs.glob(f"{run}/out/part-*.jsonl"))
    table = pa.Table.from_pylist([json.loads(x) for p in outputs for x in fs.cat_file(p).decode().splitlines()])
    check_predictions(frame.drop(index=sorted(bad)), table, models.regressor)
    manifest = json.loads(fs.cat_file(f"{run}/out/_manifest.json"))
    assert manifest["totals"]["rows_bad"] == 6 and manifest["bad_rows"]["errors_uri"] == f"s3://{run}/out/_errors/"
