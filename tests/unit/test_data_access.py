"""hooks/data.py: the one place the Airflow side tells files from SQL (credentials, location, URI)."""

from __future__ import annotations

from airflow_batch_scoring.hooks import data
from airflow_batch_scoring.specs import parse_data_spec


def test_files_and_sql_dispatch_once_by_the_spec_kind(monkeypatch) -> None:
    files = parse_data_spec({"uri": "s3://bucket/out/", "conn_id": "aws"}, "sink")
    table = parse_data_spec({"conn_id": "db", "table": "public.scores"}, "sink")
    query = parse_data_spec({"conn_id": "db", "query": "SELECT 1 AS x"}, "source")
    assert (files.kind, table.kind, query.kind) == ("files", "table", "query")
    assert data.data_access(table) is data.data_access(query)  # one SQL access for both
    assert data.data_access(files).uri(files) == "s3://bucket/out/"
    assert data.data_access(table).uri(table) is None
    assert data.data_access(files).location(files, {"endpoint_url": "http://s3:8333"}) == "http://s3:8333/bucket/out/"
    calls: list[tuple[str, object]] = []
    def recording(kind: str, key: str) -> data.DataAccess:
        real = data._BY_KIND[kind]
        return data.DataAccess(credentials=lambda spec: calls.append((kind, getattr(spec, key))) or {},
                               location=real.location, uri=real.uri)

    monkeypatch.setattr(data, "_BY_KIND", {"files": recording("files", "uri"), "table": recording("table", "table"),
                                           "query": recording("query", "query")})
    data.credentials_for(files)
    data.credentials_for(table)
    data.credentials_for(query)
    assert [(kind, str(value)) for kind, value in calls] == [
        ("files", "s3://bucket/out/"), ("table", "public.scores"), ("query", "SELECT 1 AS x")
    ]
