"""The object stores of the store tests (SeaweedFS as S3 and as MinIO, fake GCS, Azurite), each with an Airflow
connection, and scoring through them. tests/conftest.py registers the fixtures ``store``,
``s3_store`` and ``failing_moves``."""

from __future__ import annotations

import inspect
import json
import uuid
from dataclasses import dataclass
from pathlib import Path

import fsspec
import pyarrow as pa
import pytest

from tests.support.helpers import read_output
from tests.support.servers import S3_KEY, S3_SECRET, azurite_connection_string


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
        return read_output(f"{self.bucket}/{path}", fmt, names, fs=self.fs)

    def names(self, path: str) -> list[str]:
        """The files (not folders) in ``path``; checks that no staged file was left behind."""
        self.fs.invalidate_cache()
        staged = self.fs.find(f"{self.bucket}/{path}/_temporary", detail=True)
        assert [p for p, info in staged.items() if info["type"] == "file"] == []
        entries = self.fs.ls(f"{self.bucket}/{path}", detail=True)
        # (SeaweedFS keeps an emptied folder as a prefix; it holds no object.)
        return sorted(e["name"].rsplit("/", 1)[-1] for e in entries if e["type"] == "file")


def env_connection(monkeypatch, conn_id: str, value: dict) -> None:
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
        env_connection(monkeypatch, f"{kind}_test", {"conn_type": "aws", "login": S3_KEY, "password": S3_SECRET,
                                                      "extra": extra})
        fs = fsspec.filesystem("s3", key=S3_KEY, secret=S3_SECRET, endpoint_url=server.endpoint,
                               skip_instance_cache=True)
        return Store(kind, "s3", bucket, f"{kind}_test", fs)
    if kind == "gcs":
        server = request.getfixturevalue("fake_gcs")
        bucket = request.getfixturevalue("gcs_bucket")
        env_connection(monkeypatch, "gcs_test", {"conn_type": "google_cloud_platform", "extra": {
            "is_anonymous": True, "project": "test", "gcs.endpoint": server.endpoint}})
        fs = fsspec.filesystem("gs", token="anon", project="test", endpoint_url=server.endpoint,
                               skip_instance_cache=True)
        return Store(kind, "gs", bucket, "gcs_test", fs)
    server = request.getfixturevalue("azurite")
    container = request.getfixturevalue("azure_container")
    env_connection(monkeypatch, "azure_test", {"conn_type": "wasb", "extra": {
        "connection_string": azurite_connection_string(server)}})
    fs = fsspec.filesystem("abfs", connection_string=azurite_connection_string(server), skip_instance_cache=True)
    return Store(kind, "abfs", container, "azure_test", fs)


@pytest.fixture
def failing_moves(monkeypatch):
    """Make the k-th move of a publish (and only that one) fail, as a store outage would: its ``mv`` on the local
    disk, its server-side copy (s3fs's coroutine ``_cp_file``) on a store."""

    def install(fs_class, k: int, method: str = "mv") -> list[int]:
        original = getattr(fs_class, method)
        calls = [0]

        def fail_at_k() -> None:
            calls[0] += 1
            if calls[0] == k:
                raise OSError("the store went away (injected)")

        def mv(self, *args, **kwargs):
            fail_at_k()
            return original(self, *args, **kwargs)

        async def amv(self, *args, **kwargs):
            fail_at_k()
            return await original(self, *args, **kwargs)

        monkeypatch.setattr(fs_class, method, amv if inspect.iscoroutinefunction(original) else mv)
        patched.append(fs_class)
        fs_class.clear_instance_cache()  # cached instances hold sync wrappers of the unpatched coroutine
        return calls

    patched: list = []
    yield install
    for fs_class in patched:
        fs_class.clear_instance_cache()


def score_on(store: Store, model: str, source: dict, sink: dict, tmp_path: Path, **kwargs) -> dict:
    from airflow_batch_scoring.artifacts import process_model
    from airflow_batch_scoring.driver.prepare import prepare_job
    from airflow_batch_scoring.driver.run import execute_job
    from airflow_batch_scoring.hooks.storage import storage_options
    from airflow_batch_scoring.options import ScoringOptions
    from airflow_batch_scoring.specs import parse_data_spec

    source, sink = parse_data_spec(source, "source"), parse_data_spec(sink, "sink")
    options = {"source": storage_options(source.uri, source.conn_id), "sink": storage_options(sink.uri, sink.conn_id)}
    job, files = prepare_job(
        job_id=f"t-{uuid.uuid4().hex[:6]}",
        model=process_model(model, str(tmp_path)),
        source=source,
        sink=sink,
        storage_options=options,
        options=ScoringOptions.parse(passthrough_columns=["id"], **kwargs),
    )
    return execute_job(job, files, storage_options=options, log=lambda line: None)


@pytest.fixture
def s3_store(seaweedfs, s3_bucket, monkeypatch) -> Store:
    env_connection(monkeypatch, "s3_artifacts", {"conn_type": "aws", "login": S3_KEY, "password": S3_SECRET,
                                                  "extra": {"endpoint_url": seaweedfs.endpoint}})
    fs = fsspec.filesystem("s3", key=S3_KEY, secret=S3_SECRET, endpoint_url=seaweedfs.endpoint,
                           skip_instance_cache=True)
    return Store("s3", "s3", s3_bucket, "s3_artifacts", fs)
