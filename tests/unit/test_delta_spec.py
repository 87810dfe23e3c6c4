"""Delta source and sink specs: parsed once, with clear errors, and carried through the job's JSON unchanged."""

from __future__ import annotations

import pyarrow as pa
import pytest

from airflow_batch_scoring.errors import ConfigurationError
from airflow_batch_scoring.io.delta import delta_storage_options, table_uri
from airflow_batch_scoring.specs import DeltaSpec, parse_data_spec, spec_from_dict, spec_to_dict


def test_sink_and_source_round_trip():
    sink = parse_data_spec({"format": "delta", "uri": "s3://lake/scores/", "mode": "overwrite_partition",
                            "partition": {"day": "2026-01-01"}, "partition_by": ["day"], "conn_id": "aws"}, "sink")
    assert sink == DeltaSpec(uri="s3://lake/scores", conn_id="aws", mode="overwrite_partition",
                             partition_by=("day",), partition=(("day", "2026-01-01"),))
    source = parse_data_spec({"format": "delta", "uri": "file:///data/t", "version": 3, "columns": ["id", "f0"],
                              "filter": [["day", "in", ["a", "b"]], ["f0", ">", 1.5]]}, "source")
    assert source.filter == (("day", "in", ("a", "b")), ("f0", ">", 1.5))
    for spec in (sink, source):
        assert spec_from_dict(spec_to_dict(spec)) == spec
    assert parse_data_spec({"format": "delta", "uri": "/t", "filter": {"day": "x"}}, "source").filter == (
        ("day", "=", "x"),)


@pytest.mark.parametrize("value, role, message", [
    ({"format": "delta"}, "sink", r"sink\['uri'\] is required"),
    ({"format": "delta", "uri": "/t", "mode": "upsert"}, "sink", "must be one of append, overwrite"),
    ({"format": "delta", "uri": "/t", "mode": "overwrite_partition"}, "sink", "must name the partition"),
    ({"format": "delta", "uri": "/t", "mode": "merge"}, "sink", "merge_keys"),
    ({"format": "delta", "uri": "/t", "version": -1}, "source", "a table version"),
    ({"format": "delta", "uri": "/t", "filter": [["day", "~", 1]]}, "source", "operator"),
    ({"format": "delta", "uri": "/t", "mode": "append"}, "source", r"source\['mode'\] is not a key"),
    ({"format": "delta", "uri": "/t", "version": 2}, "sink", r"sink\['version'\] is not a key"),
    ({"uri": "/t", "filter": {"a": 1}}, "source", "is for Delta tables"),
    ({"format": "delta", "uri": "/t", "mode": "overwrite_partition", "partition": {"day": "x"},
      "partition_by": ["region"]}, "sink", "not in sink"),
])
def test_bad_specs(value, role, message):
    with pytest.raises(ConfigurationError, match=message):
        parse_data_spec(value, role)


def test_storage_options_for_delta_rs():
    options = delta_storage_options("s3://lake/t", {"key": "AK", "secret": "SK", "endpoint_url": "http://127.0.0.1:9"})
    assert options["AWS_ACCESS_KEY_ID"] == "AK" and options["AWS_SECRET_ACCESS_KEY"] == "SK"
    assert options["AWS_ENDPOINT_URL"] == "http://127.0.0.1:9" and options["AWS_ALLOW_HTTP"] == "true"
    assert delta_storage_options("file:///t", {}) == {}
    assert table_uri("file:///data/a%20b/") == "/data/a b" and table_uri("s3://lake/t/") == "s3://lake/t"


def test_iceberg_specs():
    sink = parse_data_spec({"format": "iceberg", "table": "lake.scores", "catalog_conn_id": "cat",
                            "warehouse": "s3://lake/wh/", "mode": "overwrite"}, "sink")
    assert sink.uri == "s3://lake/wh/lake/scores" and sink.mode == "overwrite" and sink.catalog_uri == ""
    assert spec_from_dict(spec_to_dict(sink)) == sink
    for value, message in [
        ({"table": "scores", "catalog_uri": "sqlite:///c.db", "warehouse": "/w"}, "must be 'namespace.table'"),
        ({"table": "a.b", "warehouse": "/w"}, "needs its catalog"),
        ({"table": "a.b", "catalog_uri": "postgresql://u:secret@h/db", "warehouse": "/w"}, "holds a password"),
        ({"table": "a.b", "catalog_uri": "sqlite:///c.db", "warehouse": "/w", "mode": "upsert"}, "must be one of"),
        ({"table": "a.b", "catalog_uri": "sqlite:///c.db", "warehouse": "/w", "mode": "merge"}, "merge_keys"),
        ({"table": "a.b", "catalog_uri": "sqlite:///c.db", "warehouse": "/w", "mode": "overwrite_partition"},
         "must name the partition"),
    ]:
        with pytest.raises(ConfigurationError, match=message):
            parse_data_spec({"format": "iceberg", **value}, "sink")
    with pytest.raises(ConfigurationError, match="is for Iceberg tables"):
        parse_data_spec({"uri": "/x", "warehouse": "/w"}, "source")
    daily = parse_data_spec({"format": "iceberg", "table": "lake.daily", "catalog_uri": "sqlite:///c.db",
                             "warehouse": "/w", "mode": "overwrite_partition", "partition": {"day": "2026-01-01"},
                             "partition_by": ["day"]}, "sink")
    assert daily.partition == (("day", "2026-01-01"),) and spec_from_dict(spec_to_dict(daily)) == daily
    source = parse_data_spec({"format": "iceberg", "table": "lake.daily", "catalog_uri": "sqlite:///c.db",
                              "warehouse": "/w", "columns": ["id", "x"], "filter": [["day", "in", ["a", "b"]]]},
                             "source")
    assert source.filter == (("day", "in", ("a", "b")),) and spec_from_dict(spec_to_dict(source)) == source


def test_schema_of_an_existing_delta_table():
    pytest.importorskip("deltalake")
    from airflow_batch_scoring.sinks.delta_commit import check_schema

    output = pa.schema([("id", pa.int64()), ("prediction", pa.float64()), ("label", pa.large_string())])
    spec = parse_data_spec({"format": "delta", "uri": "/t"}, "sink")
    assert check_schema(spec, {"id": "long", "prediction": "double", "label": "string", "extra": "long"}, output) == []
    with pytest.raises(ConfigurationError, match=r"'prediction' \(table: float, output: double\)"):
        check_schema(spec, {"id": "long", "prediction": "float"}, output)
    with pytest.raises(ConfigurationError, match=r"\['label \(string\)'\] that the Delta table /t lacks"):
        check_schema(spec, {"id": "long", "prediction": "double"}, output)
    allowing = parse_data_spec({"format": "delta", "uri": "/t", "allow_new_columns": True}, "sink")
    assert check_schema(allowing, {"id": "long", "prediction": "double"}, output) == ["label"]
