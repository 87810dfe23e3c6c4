"""specs.py and job.py: a source or sink spec is parsed once into a tagged, immutable type; the job is frozen and
survives its JSON."""

from __future__ import annotations

import dataclasses
import json

import pytest

from airflow_batch_scoring.errors import ConfigurationError
from airflow_batch_scoring.job import ModelSpec, Piece, ScoringJob
from airflow_batch_scoring.specs import (
    FileSpec,
    QuerySpec,
    TableName,
    TableSpec,
    narrow,
    parse_data_spec,
    spec_from_dict,
    spec_to_dict,
)

SPECS = {
    "files": ({"uri": "s3://bucket/in/*.csv", "columns": "id, f0", "header": False, "encoding": "latin-1",
               "conn_id": "aws"}, "source"),
    "table": ({"conn_id": "db", "table": "analytics.scores", "mode": "upsert", "merge_keys": ["id", "day"]}, "sink"),
    "query": ({"conn_id": "db", "query": "SELECT * FROM t WHERE day = %s;", "parameters": ["2026-01-01"],
               "partition_column": "id"}, "source"),
}


@pytest.mark.parametrize("kind", sorted(SPECS))
def test_a_spec_round_trips_through_json_with_its_kind(kind: str) -> None:
    value, role = SPECS[kind]
    spec = parse_data_spec(value, role)
    assert spec.kind == kind
    document = json.loads(json.dumps(spec_to_dict(spec)))
    assert document["kind"] == kind
    again = spec_from_dict(document)
    assert again == spec and type(again) is type(spec)
    hash(again)  # tuples, not lists: the value is really immutable


def test_the_parsed_types_hold_tuples_and_a_table_name() -> None:
    files = narrow(parse_data_spec(*SPECS["files"]), FileSpec)
    assert files.columns == ("id", "f0") and files.header is False and files.encoding == "iso8859-1"
    table = narrow(parse_data_spec(*SPECS["table"]), TableSpec)
    assert table.table == TableName("analytics", "scores") and table.merge_keys == ("id", "day")
    query = narrow(parse_data_spec(*SPECS["query"]), QuerySpec)
    assert query.query == "SELECT * FROM t WHERE day = %s" and query.parameters == ("2026-01-01",)
    source_table = parse_data_spec({"conn_id": "db", "table": "scores"}, "source")
    assert isinstance(source_table, TableSpec) and source_table.mode is None
    assert parse_data_spec(files, "source") is files  # a spec is returned as it is
    with pytest.raises(TypeError, match="'table' spec is needed here, got a 'files' spec"):
        narrow(files, TableSpec)


def test_a_spec_is_frozen() -> None:
    spec = parse_data_spec("file:///data/in.csv", "source")
    with pytest.raises(dataclasses.FrozenInstanceError):
        spec.uri = "file:///elsewhere/"  # type: ignore[misc]


def test_an_unknown_kind_in_a_document_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="kind must be one of"):
        spec_from_dict({"kind": "hudi", "uri": "s3://b/t/"})


@pytest.mark.parametrize(
    ("value", "parsed"),
    [("scores", TableName(None, "scores")), (" analytics.scores ", TableName("analytics", "scores")),
     ("_s1.T_2", TableName("_s1", "T_2")), ("x" * 63, TableName(None, "x" * 63))],
)
def test_table_name_parse_and_str(value: str, parsed: TableName) -> None:
    assert TableName.parse(value, "sink['table']") == parsed
    assert str(parsed) == value.strip()


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("scores; DROP TABLE x", "is not a valid table name"),
        ('scores" --', "is not a valid table name"),
        ("a.b.c", "has more than two parts"),
        ("x" * 64, "is not a valid table name"),
        ("s." + "y" * 64, "is not a valid table name"),
        ("1scores", "is not a valid table name"),
        ("", "must be a table name"),
        (None, "must be a table name"),
    ],
)
def test_table_name_refusals(value: object, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message) as caught:
        TableName.parse(value, "sink['table']")
    assert "sink['table']" in str(caught.value)


def test_a_sql_table_name_is_validated_once_when_parsed() -> None:
    with pytest.raises(ConfigurationError, match=r"source\['table'\] 'a.b.c' has more than two parts"):
        parse_data_spec({"conn_id": "db", "table": "a.b.c"}, "source")


def _job() -> ScoringJob:
    return ScoringJob(
        job_id="j1",
        model=ModelSpec(uri="models:/churn@champion", path="/models/churn", flavor="sklearn"),
        source=parse_data_spec({"conn_id": "db", "query": "SELECT * FROM t WHERE day = :day",
                                "parameters": {"day": "2026-01-01"}}, "source"),
        sink=parse_data_spec({"uri": "s3://bucket/out/", "format": "csv", "header": True}, "sink"),
        staging_uri="s3://bucket/out/_temporary/j1",
        shards=((Piece("s3://bucket/in/a.parquet", row_groups=(0, 1), rows=10),), ()),
        passthrough_columns=("id",),
    )


def test_a_job_is_frozen_all_the_way_down() -> None:
    job = _job()
    with pytest.raises(dataclasses.FrozenInstanceError):
        job.staging_uri = "s3://elsewhere/"  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        job.model.path = "/tmp/model"  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        job.shards[0][0].rows = 3  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        job.sink.uri = "s3://elsewhere/"  # type: ignore[misc]
    assert isinstance(job.shards, tuple) and isinstance(job.passthrough_columns, tuple)
    moved = dataclasses.replace(job, staging_uri="s3://bucket/out/_temporary/j2")
    assert (moved.staging_uri, job.staging_uri) == ("s3://bucket/out/_temporary/j2", "s3://bucket/out/_temporary/j1")


def test_a_job_round_trips_through_json_as_tuples() -> None:
    job = _job()
    again = ScoringJob.from_json(job.to_json())
    assert again == job
    assert isinstance(again.source, QuerySpec) and isinstance(again.sink, FileSpec)
    assert again.shards[0][0].row_groups == (0, 1) and again.passthrough_columns == ("id",)
    assert json.loads(job.to_json())["source"]["kind"] == "query"
