"""hooks/data.py: the one place the Airflow side tells files from SQL (credentials, location, URI)."""

from __future__ import annotations

from airflow_batch_scoring.hooks import data
from airflow_batch_scoring.job import DataSpec


def test_files_and_sql_dispatch_once_by_the_spec_kind(monkeypatch) -> None:
    files = DataSpec.parse({"uri": "s3://bucket/out/", "conn_id": "aws"}, "sink")
    table = DataSpec.parse({"conn_id": "db", "table": "public.scores"}, "sink")
    assert (files.kind, table.kind) == ("files", "sql")
    assert data.data_access(files).uri(files) == "s3://bucket/out/"
    assert data.data_access(table).uri(table) is None
    assert data.data_access(files).location(files, {"endpoint_url": "http://s3:8333"}) == "http://s3:8333/bucket/out/"
    calls: list[tuple[str, object]] = []
    def recording(kind: str, key: str) -> data.DataAccess:
        real = data._BY_KIND[kind]
        return data.DataAccess(credentials=lambda spec: calls.append((kind, getattr(spec, key))) or {},
                               location=real.location, uri=real.uri)

    monkeypatch.setattr(data, "_BY_KIND", {"files": recording("files", "uri"), "sql": recording("sql", "table")})
    data.credentials_for(files)
    data.credentials_for(table)
    assert calls == [("files", "s3://bucket/out/"), ("sql", "public.scores")]
