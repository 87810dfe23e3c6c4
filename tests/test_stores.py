"""Object stores through Airflow connections, on real servers: SeaweedFS (S3 and a MinIO-style endpoint),
Azurite (Azure Blob) and fake-gcs-server (GCS)."""

from __future__ import annotations

import io
import json
import uuid
from dataclasses import dataclass
from pathlib import Path

import fsspec
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq
import pytest
from helpers import FEATURES, Models, make_frame, source_spec, write_frame
from servers import AZURITE_KEY, S3_KEY, S3_SECRET, azurite_connection_string
from test_operator import (
    rendered_fields,
    test_dag,  # noqa: F401  (the migrated test DAG fixture)
    xcom_of,
)
from test_scoring import check_predictions

from airflow_batch_scoring.errors import InputError
from airflow_batch_scoring.hooks.storage import storage_options
from airflow_batch_scoring.job import DataSpec
from airflow_batch_scoring.links import output_location_url
from airflow_batch_scoring.runtime.driver import execute_job, prepare_job


@dataclass
class Store:
    name: str
    scheme: str
    bucket: str
    conn_id: str
    fs: fsspec.AbstractFileSystem

    def uri(self, path: str) -> str:
        return f"{self.scheme}://{self.bucket}/{path}"

    def put(self, local: Path, path: str) -> str:
        self.fs.put_file(str(local), f"{self.bucket}/{path}")
        return self.uri(path)

    def read_output(self, path: str, fmt: str, names: list[str]) -> pa.Table:
        tables = []
        self.fs.invalidate_cache()
        for part in sorted(self.fs.ls(f"{self.bucket}/{path}", detail=False)):
            name = part.rsplit("/", 1)[-1]
            if not name.startswith("part-"):
                continue
            data = self.fs.cat_file(part)
            if fmt == "csv":
                tables.append(pa_csv.read_csv(io.BytesIO(data), read_options=pa_csv.ReadOptions(column_names=names)))
            elif fmt == "csv_header":
                tables.append(pa_csv.read_csv(io.BytesIO(data)))
            elif fmt == "jsonl":
                tables.append(pa.Table.from_pylist([json.loads(x) for x in data.decode().splitlines()]))
            else:
                tables.append(pq.read_table(io.BytesIO(data)))
        return pa.concat_tables(tables)

    def names(self, path: str) -> list[str]:
        """The files (not folders) in ``path``; checks that no staged file was left behind."""
        self.fs.invalidate_cache()
        staged = self.fs.find(f"{self.bucket}/{path}/_temporary", detail=True)
        assert [p for p, info in staged.items() if info["type"] == "file"] == []
        entries = self.fs.ls(f"{self.bucket}/{path}", detail=True)
        # (SeaweedFS keeps an emptied folder as a prefix; it holds no object.)
        return sorted(e["name"].rsplit("/", 1)[-1] for e in entries if e["type"] == "file")


def _env_connection(monkeypatch, conn_id: str, value: dict) -> None:
    monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps(value))


STORES = ["s3", "minio", "gcs", "azure"]


@pytest.fixture(params=STORES)
def store(request, monkeypatch) -> Store:
    kind = request.param
    if kind in ("s3", "minio"):
        server = request.getfixturevalue("seaweedfs")
        bucket = request.getfixturevalue("s3_bucket")
        extra: dict = {"endpoint_url": server.endpoint}
        if kind == "minio":  # the MinIO way: endpoint, path-style addressing, a region
            extra.update(region_name="eu-central-1", config_kwargs={"s3": {"addressing_style": "path"}})
        _env_connection(monkeypatch, f"{kind}_test", {"conn_type": "aws", "login": S3_KEY, "password": S3_SECRET,
                                                      "extra": extra})
        fs = fsspec.filesystem("s3", key=S3_KEY, secret=S3_SECRET, endpoint_url=server.endpoint,
                               skip_instance_cache=True)
        return Store(kind, "s3", bucket, f"{kind}_test", fs)
    if kind == "gcs":
        server = request.getfixturevalue("fake_gcs")
        bucket = request.getfixturevalue("gcs_bucket")
        _env_connection(monkeypatch, "gcs_test", {"conn_type": "google_cloud_platform", "extra": {
            "is_anonymous": True, "project": "test", "gcs.endpoint": server.endpoint}})
        fs = fsspec.filesystem("gs", token="anon", project="test", endpoint_url=server.endpoint,
                               skip_instance_cache=True)
        return Store(kind, "gs", bucket, "gcs_test", fs)
    server = request.getfixturevalue("azurite")
    container = request.getfixturevalue("azure_container")
    _env_connection(monkeypatch, "azure_test", {"conn_type": "wasb", "extra": {
        "connection_string": azurite_connection_string(server)}})
    fs = fsspec.filesystem("abfs", connection_string=azurite_connection_string(server), skip_instance_cache=True)
    return Store(kind, "abfs", container, "azure_test", fs)


def test_csv_prefix_to_jsonl_in_dag_test(test_dag, store: Store, models: Models, tmp_path: Path, capfd):  # noqa: F811
    run = uuid.uuid4().hex[:8]
    frames = [make_frame(700, seed=51), make_frame(555, seed=52)]
    for i, frame in enumerate(frames):
        write_frame(frame, tmp_path / f"in{i}.csv", "csv")
        store.put(tmp_path / f"in{i}.csv", f"{run}/in/part-{i}.csv")
    dag_run = test_dag.test(run_conf={
        "model": str(models.classifier_path),
        "source": {**source_spec("csv", store.uri(f"{run}/in/")), "conn_id": store.conn_id},
        "sink": {"uri": store.uri(f"{run}/out/"), "format": "jsonl", "conn_id": store.conn_id},
        "replicas": 2,
        "passthrough": ["id"],
        "part_size": 8192,
    })
    assert dag_run.state == "success"
    assert xcom_of(dag_run)["rows_out"] == 1255
    check_predictions(pd.concat(frames), store.read_output(f"{run}/out", "jsonl", []), models.classifier)
    assert store.names(f"{run}/out") == ["_SUCCESS", "_manifest.json", "part-00000.jsonl", "part-00001.jsonl"]
    # the store's secret is nowhere a user or another task can see it
    secret = {"s3": S3_SECRET, "minio": S3_SECRET, "azure": AZURITE_KEY}.get(store.name)
    if secret:
        seen = [json.dumps(xcom_of(dag_run)), json.dumps(rendered_fields(dag_run)),
                store.fs.cat_file(f"{store.bucket}/{run}/out/_manifest.json").decode()]
        logs = capfd.readouterr()
        seen += [logs.out, logs.err]
        assert all(secret not in text for text in seen)
        assert "connection" not in seen[1] or store.conn_id in seen[1]


def test_parquet_object_to_csv_in_dag_test(test_dag, store: Store, models: Models, tmp_path: Path):  # noqa: F811
    run = uuid.uuid4().hex[:8]
    frame = make_frame(1600, seed=53)
    write_frame(frame, tmp_path / "in.parquet", "parquet")
    uri = store.put(tmp_path / "in.parquet", f"{run}/in.parquet")
    dag_run = test_dag.test(run_conf={
        "model": str(models.regressor_path),
        "source": {"uri": uri, "conn_id": store.conn_id},
        "sink": {"uri": store.uri(f"{run}/out"), "format": "csv", "conn_id": store.conn_id},
        "replicas": 2,
        "passthrough": ["id"],
    })
    assert dag_run.state == "success"
    check_predictions(frame, store.read_output(f"{run}/out", "csv", ["id", "prediction"]), models.regressor)


def _score(store: Store, model: str, source: dict, sink: dict, tmp_path: Path, **kwargs) -> dict:
    from airflow_batch_scoring.artifacts import process_model

    source, sink = DataSpec.parse(source, "source"), DataSpec.parse(sink, "sink")
    options = {"source": storage_options(source.uri, source.conn_id), "sink": storage_options(sink.uri, sink.conn_id)}
    job, files = prepare_job(job_id=f"t-{uuid.uuid4().hex[:6]}", model=process_model(model, str(tmp_path)),
                             source=source, sink=sink, storage_options=options, passthrough_columns=["id"], **kwargs)
    return execute_job(job, files, storage_options=options, log=lambda line: None)


def test_other_formats_and_a_glob(store: Store, models: Models, tmp_path: Path):
    run = uuid.uuid4().hex[:8]
    frames = [make_frame(300, seed=54), make_frame(400, seed=55)]
    for i, frame in enumerate(frames):
        write_frame(frame, tmp_path / f"in{i}.jsonl", "jsonl")
        store.put(tmp_path / f"in{i}.jsonl", f"{run}/day={i}/data.jsonl")
    conn = store.conn_id
    _score(store, str(models.regressor_path), {"uri": store.uri(f"{run}/day=*/*.jsonl"), "conn_id": conn},
           {"uri": store.uri(f"{run}/out"), "format": "csv", "header": True, "conn_id": conn}, tmp_path, replicas=2,
           part_size=8192)  # (pieces that start inside a file: each reads the file's head to tell its line breaks)
    check_predictions(pd.concat(frames), store.read_output(f"{run}/out", "csv_header", []), models.regressor)
    write_frame(frames[0], tmp_path / "h.csv", "csv_header")
    _score(store, str(models.regressor_path),
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
    summary = _score(store, str(models.regressor_path),
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
        _score(store, str(models.regressor_path),
               {"uri": f"{store.scheme}://no-such-bucket-x/in.csv", "columns": ["id"], "conn_id": conn}, sink, tmp_path)
    with pytest.raises(InputError, match="does not exist|no input file"):
        _score(store, str(models.regressor_path),
               {"uri": store.uri("no/such/prefix/"), "format": "csv", "conn_id": conn}, sink, tmp_path)
    store.fs.pipe_file(f"{store.bucket}/broken/in.parquet", b"PAR1 not parquet at all")
    with pytest.raises(InputError, match="not a readable Parquet file"):
        _score(store, str(models.regressor_path), {"uri": store.uri("broken/in.parquet"), "conn_id": conn}, sink,
               tmp_path)
    with pytest.raises(InputError, match="sink's bucket or container 'no-such-sink-x' does not exist"):
        _score(store, str(models.regressor_path), {"uri": store.uri("broken/"), "format": "csv", "conn_id": conn},
               {"uri": f"{store.scheme}://no-such-sink-x/out", "conn_id": conn}, tmp_path)
    assert not store.fs.exists(f"{store.bucket}/never/out")


def test_wrong_credentials_name_the_connection_not_the_secret(
    test_dag, seaweedfs, s3_bucket, models: Models, monkeypatch, capfd  # noqa: F811
):
    wrong = "wrong-secret-V4lue-XYZ"
    monkeypatch.setenv("AIRFLOW_CONN_S3_BAD", json.dumps(
        {"conn_type": "aws", "login": S3_KEY, "password": wrong, "extra": {"endpoint_url": seaweedfs.endpoint}}))
    with pytest.raises(InputError) as err:
        _score(None, str(models.regressor_path),  # type: ignore[arg-type]
               {"uri": "s3://scoring/any/", "format": "csv", "conn_id": "s3_bad"},
               {"uri": "s3://scoring/out-bad/", "conn_id": "s3_bad"}, Path(seaweedfs.log).parent)
    message = str(err.value)
    assert "connection 's3_bad'" in message and "S3" in message and "refused" in message
    assert wrong not in message
    dag_run = test_dag.test(run_conf={
        "model": str(models.regressor_path),
        "source": {"uri": "s3://scoring/any/", "format": "csv", "conn_id": "s3_bad"},
        "sink": {"uri": "s3://scoring/out-bad/", "conn_id": "s3_bad"},
    })
    assert dag_run.state == "failed"
    logs = capfd.readouterr()
    assert "connection 's3_bad'" in logs.out + logs.err
    assert wrong not in logs.out + logs.err


def test_large_output_uses_multipart_upload(seaweedfs, s3_bucket, models: Models, monkeypatch, tmp_path: Path):
    monkeypatch.setenv("AIRFLOW_CONN_S3_BIG", json.dumps(
        {"conn_type": "aws", "login": S3_KEY, "password": S3_SECRET, "extra": {"endpoint_url": seaweedfs.endpoint}}))
    frame = make_frame(400_000, seed=56)
    write_frame(frame, tmp_path / "in.parquet", "parquet")
    fs = fsspec.filesystem("s3", key=S3_KEY, secret=S3_SECRET, endpoint_url=seaweedfs.endpoint)
    fs.put_file(str(tmp_path / "in.parquet"), "scoring/big/in.parquet")
    from airflow_batch_scoring.artifacts import process_model

    source = DataSpec.parse({"uri": "s3://scoring/big/in.parquet", "conn_id": "s3_big"}, "source")
    sink = DataSpec.parse({"uri": "s3://scoring/big/out/", "format": "jsonl", "conn_id": "s3_big"}, "sink")
    options = {"source": storage_options(source.uri, "s3_big"), "sink": storage_options(sink.uri, "s3_big")}
    job, files = prepare_job(job_id="big", model=process_model(str(models.regressor_path), str(tmp_path)),
                             source=source, sink=sink, storage_options=options,
                             passthrough_columns=["id", "f0", "f1", "f2", "f3", "f4"], part_size=5 * 1024 * 1024,
                             write_concurrency=4)
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


@pytest.fixture
def s3_store(seaweedfs, s3_bucket, monkeypatch) -> Store:
    _env_connection(monkeypatch, "s3_artifacts", {"conn_type": "aws", "login": S3_KEY, "password": S3_SECRET,
                                                  "extra": {"endpoint_url": seaweedfs.endpoint}})
    fs = fsspec.filesystem("s3", key=S3_KEY, secret=S3_SECRET, endpoint_url=seaweedfs.endpoint,
                           skip_instance_cache=True)
    return Store("s3", "s3", s3_bucket, "s3_artifacts", fs)


@pytest.fixture(scope="module")
def store_artifact_dag(airflow_db):
    import sys

    sys.path.insert(0, str(Path(__file__).parent / "dags"))
    from store_artifact_test_dag import dag

    return dag


def _task_xcom(dag_run, task_id: str):
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    with create_session() as session:
        return session.query(XComModel).filter_by(dag_id=dag_run.dag_id, run_id=dag_run.run_id, task_id=task_id,
                                                  key="return_value").one().value


def test_a_model_processed_into_an_object_store_is_scored_from_there(
    store_artifact_dag, s3_store: Store, models: Models, tmp_path: Path, monkeypatch, capfd
):
    """ProcessArtifactOperator writes to s3:// (distributed executors: the scoring task runs elsewhere); the scoring
    task fetches the artifact (an MLflow model folder) from the store, checks its digest and scores exactly it."""
    run = uuid.uuid4().hex[:8]
    cache = tmp_path / "worker-disk"
    monkeypatch.setenv("BATCH_SCORING_ARTIFACTS_DIR", str(cache))  # where a local default target would go
    frame = make_frame(640, seed=61)
    write_frame(frame, tmp_path / "in.csv", "csv")
    target = s3_store.uri(f"{run}/artifacts")
    dag_run = store_artifact_dag.test(run_conf={
        "model": f"models:/{models.registry_name}@champion",
        "target": target,
        "conn_id": s3_store.conn_id,
        "source": source_spec("csv", (tmp_path / "in.csv").as_uri()),
        "sink": {"uri": s3_store.uri(f"{run}/out"), "format": "parquet", "conn_id": s3_store.conn_id},
    })
    assert dag_run.state == "success"
    processed = _task_xcom(dag_run, "process")
    assert processed["path"] == f"{target}/artifact/model" and processed["storage_conn_id"] == s3_store.conn_id
    assert processed["source_model_version"] == models.registry_version
    s3_store.fs.invalidate_cache()
    marker = json.loads(s3_store.fs.cat_file(f"{s3_store.bucket}/{run}/artifacts/_artifact.json"))
    assert marker == processed
    assert not cache.exists()  # nothing of the artifact stayed on the processing worker's disk
    check_predictions(frame, s3_store.read_output(f"{run}/out", "parquet", []), models.classifier)
    summary = _task_xcom(dag_run, "score")
    assert summary["model_digest"] == processed["digest"]
    logs = capfd.readouterr()
    assert S3_SECRET not in logs.out + logs.err and S3_SECRET not in json.dumps(processed)


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

    _env_connection(monkeypatch, "s3_sts", {"conn_type": "aws", "login": "AKIAEXAMPLE", "password": "sts-secret",
                                            "extra": {"aws_session_token": "sts-token-123", "path_style": "True"}})
    with caplog.at_level(logging.INFO, logger="airflow_batch_scoring.hooks.storage"):
        options = storage_options("s3://bucket/x", "s3_sts")
    assert options["token"] == "sts-token-123"
    assert options["config_kwargs"] == {"s3": {"addressing_style": "path"}}
    assert "temporary credentials" in caplog.text and "whole run" in caplog.text
    assert "sts-token-123" not in caplog.text and "sts-secret" not in caplog.text
    _env_connection(monkeypatch, "s3_odd", {"conn_type": "aws", "login": "AKIAEXAMPLE", "password": "x",
                                            "extra": {"path_style": "sometimes"}})
    with pytest.raises(ConfigurationError, match="path_style must be true or false, got 'sometimes'"):
        storage_options("s3://bucket/x", "s3_odd")
