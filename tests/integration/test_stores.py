"""Object stores through Airflow connections, on real servers: SeaweedFS (S3 and a MinIO-style endpoint),
Azurite (Azure Blob) and fake-gcs-server (GCS)."""

from __future__ import annotations

import io
import json
import uuid
from pathlib import Path

import fsspec
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pa_csv
import pytest

from airflow_batch_scoring.driver.prepare import prepare_job
from airflow_batch_scoring.driver.run import execute_job
from airflow_batch_scoring.errors import InputError
from airflow_batch_scoring.hooks.storage import storage_options
from airflow_batch_scoring.links import output_location_url
from airflow_batch_scoring.options import ScoringOptions
from airflow_batch_scoring.specs import parse_data_spec
from tests.support.helpers import FEATURES, Models, make_frame, write_frame
from tests.support.scoring import check_predictions
from tests.support.servers import S3_KEY, S3_SECRET
from tests.support.stores import Store, score_on


def test_other_formats_and_a_glob(store: Store, models: Models, tmp_path: Path):
    run = uuid.uuid4().hex[:8]
    frames = [make_frame(300, seed=54), make_frame(400, seed=55)]
    for i, frame in enumerate(frames):
        write_frame(frame, tmp_path / f"in{i}.jsonl", "jsonl")
        store.put(tmp_path / f"in{i}.jsonl", f"{run}/day={i}/data.jsonl")
    conn = store.conn_id
    score_on(store, str(models.regressor_path), {"uri": store.uri(f"{run}/day=*/*.jsonl"), "conn_id": conn},
           {"uri": store.uri(f"{run}/out"), "format": "csv", "header": True, "conn_id": conn}, tmp_path, replicas=2,
           part_size=8192)  # (pieces that start inside a file: each reads the file's head to tell its line breaks)
    check_predictions(pd.concat(frames), store.read_output(f"{run}/out", "csv_header", []), models.regressor)
    write_frame(frames[0], tmp_path / "h.csv", "csv_header")
    score_on(store, str(models.regressor_path),
           {"uri": store.put(tmp_path / "h.csv", f"{run}/h.csv"), "header": True, "conn_id": conn},
           {"uri": store.uri(f"{run}/out2"), "format": "parquet", "conn_id": conn}, tmp_path)
    check_predictions(frames[0], store.read_output(f"{run}/out2", "parquet", []), models.regressor)


def test_gzipped_csv_objects(store: Store, models: Models, tmp_path: Path):
    """Compressed objects are read as streams, each whole by one replica (s3fs, gcsfs and adlfs files under fsspec's
    decompression), and the output is written compressed (through each store's multipart writer)."""
    import gzip

    run = uuid.uuid4().hex[:8]
    frames = [make_frame(600, seed=56), make_frame(500, seed=57), make_frame(400, seed=58)]
    for i, frame in enumerate(frames):
        write_frame(frame, tmp_path / f"in{i}.csv", "csv")
        with gzip.open(tmp_path / f"in{i}.csv.gz", "wb") as f:
            f.write((tmp_path / f"in{i}.csv").read_bytes())
        store.put(tmp_path / f"in{i}.csv.gz", f"{run}/in/part-{i}.csv.gz")
    conn = store.conn_id
    summary = score_on(store, str(models.regressor_path),
                     {"uri": store.uri(f"{run}/in/"), "columns": ["id", *FEATURES], "conn_id": conn},
                     {"uri": store.uri(f"{run}/out"), "format": "csv", "header": True, "compression": "gzip",
                      "conn_id": conn}, tmp_path, replicas=2)
    assert summary["rows_in"] == summary["rows_out"] == 1500
    names = store.names(f"{run}/out")
    assert names == ["_SUCCESS", "_manifest.json", "part-00000.csv.gz", "part-00001.csv.gz"]
    tables = [pa_csv.read_csv(io.BytesIO(gzip.decompress(store.fs.cat_file(f"{store.bucket}/{run}/out/{name}"))))
              for name in names if name.startswith("part-")]
    check_predictions(pd.concat(frames), pa.concat_tables(tables), models.regressor)


def test_missing_bucket_prefix_and_unreadable_object(store: Store, models: Models, tmp_path: Path):
    conn = store.conn_id
    sink = {"uri": store.uri("never/out"), "conn_id": conn}
    with pytest.raises(InputError, match="does not exist"):
        score_on(store, str(models.regressor_path),
               {"uri": f"{store.scheme}://no-such-bucket-x/in.csv", "columns": ["id"], "conn_id": conn}, sink, tmp_path)
    with pytest.raises(InputError, match="does not exist|no input file"):
        score_on(store, str(models.regressor_path),
               {"uri": store.uri("no/such/prefix/"), "format": "csv", "conn_id": conn}, sink, tmp_path)
    store.fs.pipe_file(f"{store.bucket}/broken/in.parquet", b"PAR1 not parquet at all")
    with pytest.raises(InputError, match="not a readable Parquet file"):
        score_on(store, str(models.regressor_path), {"uri": store.uri("broken/in.parquet"), "conn_id": conn}, sink,
               tmp_path)
    with pytest.raises(InputError, match="sink's bucket or container 'no-such-sink-x' does not exist"):
        score_on(store, str(models.regressor_path), {"uri": store.uri("broken/"), "format": "csv", "conn_id": conn},
               {"uri": f"{store.scheme}://no-such-sink-x/out", "conn_id": conn}, tmp_path)
    assert not store.fs.exists(f"{store.bucket}/never/out")


def test_large_output_uses_multipart_upload(seaweedfs, s3_bucket, models: Models, monkeypatch, tmp_path: Path):
    monkeypatch.setenv("AIRFLOW_CONN_S3_BIG", json.dumps(
        {"conn_type": "aws", "login": S3_KEY, "password": S3_SECRET, "extra": {"endpoint_url": seaweedfs.endpoint}}))
    frame = make_frame(400_000, seed=56)
    write_frame(frame, tmp_path / "in.parquet", "parquet")
    fs = fsspec.filesystem("s3", key=S3_KEY, secret=S3_SECRET, endpoint_url=seaweedfs.endpoint)
    fs.put_file(str(tmp_path / "in.parquet"), "scoring/big/in.parquet")
    from airflow_batch_scoring.artifacts import process_model

    source = parse_data_spec({"uri": "s3://scoring/big/in.parquet", "conn_id": "s3_big"}, "source")
    sink = parse_data_spec({"uri": "s3://scoring/big/out/", "format": "jsonl", "conn_id": "s3_big"}, "sink")
    options = {"source": storage_options(source.uri, "s3_big"), "sink": storage_options(sink.uri, "s3_big")}
    job, files = prepare_job(
        job_id="big",
        model=process_model(str(models.regressor_path), str(tmp_path)),
        source=source,
        sink=sink,
        storage_options=options,
        options=ScoringOptions.parse(
            passthrough_columns=["id", "f0", "f1", "f2", "f3", "f4"],
            part_size=5 * 1024 * 1024,
            write_concurrency=4,
        ),
    )
    execute_job(job, files, storage_options=options, log=lambda line: None)
    info = fs.info("scoring/big/out/part-00000.jsonl")
    assert info["size"] >= 50 * 1024 * 1024
    etag = info["ETag"].strip('"')
    # An S3 multipart ETag is <md5>-<part count>: the object went up in part_size parts (4 at a time by default),
    # never buffered whole.
    assert "-" in etag and int(etag.rsplit("-", 1)[1]) == -(-info["size"] // (5 * 1024 * 1024)), etag
    import pyarrow.json as pa_json

    output = pa_json.read_json(io.BytesIO(fs.cat_file("scoring/big/out/part-00000.jsonl")))
    check_predictions(frame, output, models.regressor)  # parts reassembled in order: every row, exactly once


def test_output_link():
    assert output_location_url("s3://b/p/") == "https://s3.console.aws.amazon.com/s3/buckets/b?prefix=p/"
    assert output_location_url("s3://b/p/", "http://127.0.0.1:9000") == "http://127.0.0.1:9000/b/p/"
    assert output_location_url("gs://b/p") == "https://console.cloud.google.com/storage/browser/b/p"
    assert output_location_url("file:///tmp/x/") == "file:///tmp/x/"


def test_a_changed_artifact_on_the_store_is_refused(s3_store: Store, models: Models, tmp_path: Path):
    """The scoring side checks the digest of what it fetched; a missing artifact says what to do."""
    from airflow_batch_scoring.errors import ModelError
    from airflow_batch_scoring.operators import ProcessArtifactOperator
    from airflow_batch_scoring.operators.process_artifact import fetch_processed_model

    run = uuid.uuid4().hex[:8]
    target = s3_store.uri(f"{run}/artifacts")
    operator = ProcessArtifactOperator(task_id="process", model=str(models.classifier_path), target=target,
                                       target_conn_id=s3_store.conn_id)
    result = operator.execute({})
    assert result["path"] == f"{target}/artifact/{models.classifier_path.name}"
    fetched = fetch_processed_model(result, str(tmp_path / "a"))
    assert fetched["path"] == str(tmp_path / "a" / models.classifier_path.name)
    assert Path(fetched["path"]).read_bytes() == models.classifier_path.read_bytes()
    assert operator.execute({})["digest"] == result["digest"]  # a retry replaces its own output
    s3_store.fs.pipe_file(f"{s3_store.bucket}/{run}/artifacts/artifact/{models.classifier_path.name}", b"changed")
    with pytest.raises(ModelError, match="digest"):
        fetch_processed_model(result, str(tmp_path / "b"))
    s3_store.fs.rm(f"{s3_store.bucket}/{run}/artifacts", recursive=True)
    with pytest.raises(ModelError, match="Run the ProcessArtifactOperator task again"):
        fetch_processed_model(result, str(tmp_path / "c"))
    # a store folder the operator did not write is refused, and kept
    s3_store.fs.pipe_file(f"{s3_store.bucket}/{run}/other/keep.txt", b"mine")
    operator.target = s3_store.uri(f"{run}/other")
    with pytest.raises(Exception, match="not empty and was not written by ProcessArtifactOperator"):
        operator.execute({})
    assert s3_store.fs.cat_file(f"{s3_store.bucket}/{run}/other/keep.txt") == b"mine"


def test_temporary_s3_credentials_are_taken_for_the_run_and_said_so(monkeypatch, caplog):
    """A session token (STS, an assumed role) is snapshotted when the run starts: the log says so, never the token."""
    import logging

    from airflow_batch_scoring.errors import ConfigurationError

    monkeypatch.setenv("AIRFLOW_CONN_S3_STS", json.dumps({
        "conn_type": "aws", "login": "AKIAEXAMPLE", "password": "sts-secret",
        "extra": {"aws_session_token": "sts-token-123", "path_style": "True"}}))
    with caplog.at_level(logging.INFO, logger="airflow_batch_scoring.hooks.storage"):
        options = storage_options("s3://bucket/x", "s3_sts")
    assert options["token"] == "sts-token-123"
    assert options["config_kwargs"] == {"s3": {"addressing_style": "path"}}
    assert "temporary credentials" in caplog.text and "whole run" in caplog.text
    assert "sts-token-123" not in caplog.text and "sts-secret" not in caplog.text
    monkeypatch.setenv("AIRFLOW_CONN_S3_ODD", json.dumps({
        "conn_type": "aws", "login": "AKIAEXAMPLE", "password": "x", "extra": {"path_style": "sometimes"}}))
    with pytest.raises(ConfigurationError, match="path_style must be true or false, got 'sometimes'"):
        storage_options("s3://bucket/x", "s3_odd")
