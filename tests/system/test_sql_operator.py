"""The three SQL flows through the operator in ``dag.test()`` with real replicas: table to table, a query with
parameters to Parquet, CSV files to a table."""

from __future__ import annotations

import json

import pandas as pd

from airflow_batch_scoring.sinks.sql_commit import BOOKKEEPING
from tests.support.dag_runs import rendered_fields, xcom_of
from tests.support.helpers import Models, make_frame, read_output, write_frame
from tests.support.scoring import check_predictions
from tests.support.sql import Database, as_arrow, unique


def test_table_to_table_in_dag_test(test_dag, pg: Database, models: Models, capfd):  # noqa: F811
    frame = make_frame(2345, seed=61)
    source, target = unique("customers"), unique("scores")
    pg.load(frame, source)
    dag_run = test_dag.test(run_conf={
        "model": str(models.regressor_path),
        "source": {"conn_id": pg.conn_id, "table": f"public.{source}", "partition_column": "id"},
        "sink": {"conn_id": pg.conn_id, "table": target, "mode": "append"},
        "replicas": 2,
        "passthrough": ["id"],
    })
    assert dag_run.state == "success"
    summary = xcom_of(dag_run)
    assert summary["rows_in"] == summary["rows_out"] == 2345 and summary["parts"] == 2
    assert summary["sql"] == {"table": target, "mode": "append", "inserted": 2345, "updated": 0, "deleted": 0,
                              "created": True, "already_committed": False}
    assert summary["output_uri"] == f"{pg.url.split('@')[1].join(['postgresql://', ''])}#{target}"
    assert xcom_of(dag_run, key="batch_scoring_output") == summary["output_uri"]  # the task's extra link
    output = pg.read(target)
    assert len(output) == 2345
    check_predictions(frame, as_arrow(output), models.regressor)
    assert pg.staging_tables() == []
    manifest = json.loads(pg.read(BOOKKEEPING, order="run_id").set_index("target").loc[target, "manifest"])
    assert manifest["totals"]["rows_out"] == 2345 and manifest["input"]["table"] == f"public.{source}"
    assert [r["rows_out"] for r in manifest["shards"]] == [r["rows_out"] for r in manifest["shards"] if r["parts"]]
    # the connection's password is nowhere a user or another task can see it
    logs = capfd.readouterr()
    seen = [json.dumps(summary), json.dumps(rendered_fields(dag_run)), json.dumps(manifest), logs.out, logs.err]
    assert all(pg.password not in text for text in seen)
    assert "[replica 1] replica 2/2:" in logs.out + logs.err


def test_query_with_parameters_to_parquet_in_dag_test(test_dag, pg: Database, models: Models, tmp_path):  # noqa: F811
    frame = make_frame(3000, seed=62)
    source = unique("events")
    pg.load(frame, source)
    sink = tmp_path / "out"
    dag_run = test_dag.test(run_conf={
        "model": str(models.classifier_path),
        "source": {
            "conn_id": pg.conn_id,
            "query": f"SELECT id, f0, f1, f2, f3, f4 FROM {source} WHERE id >= %(first)s AND f1 > %(low)s",
            "parameters": {"first": 62_000_500, "low": -5.0},
            "partition_column": "id",
        },
        "sink": {"uri": sink.as_uri(), "format": "parquet"},
        "replicas": 2,
        "passthrough": ["id"],
    })
    assert dag_run.state == "success"
    expected = frame[(frame["id"] >= 62_000_500) & (frame["f1"] > -5.0)]
    assert 1000 < len(expected) < 2500
    summary = xcom_of(dag_run)
    assert summary["rows_in"] == summary["rows_out"] == len(expected)
    output = read_output(sink, "parquet", [])
    assert output.num_rows == len(expected)
    check_predictions(expected, output, models.classifier)
    manifest = json.loads((sink / "_manifest.json").read_text())
    assert manifest["input"]["parameters"] == {"first": 62_000_500, "low": -5.0}
    assert [r["column"] for r in manifest["input"]["ranges"]] == ["id", "id"]


def test_csv_files_to_table_in_dag_test(test_dag, lite: Database, models: Models, tmp_path, capfd):  # noqa: F811
    frames = [make_frame(900, seed=63), make_frame(700, seed=64)]
    for i, frame in enumerate(frames):
        write_frame(frame, tmp_path / "in" / f"part-{i}.csv", "csv_header")
    dag_run = test_dag.test(run_conf={
        "model": str(models.regressor_path),
        "source": {"uri": (tmp_path / "in").as_uri(), "format": "csv", "header": True},
        "sink": {"conn_id": lite.conn_id, "table": "scores", "mode": "append"},
        "replicas": 2,
        "passthrough": ["id"],
        "part_size": 8192,
    })
    assert dag_run.state == "success"
    summary = xcom_of(dag_run)
    assert summary["rows_in"] == summary["rows_out"] == 1600
    output = lite.read("scores")
    assert len(output) == 1600
    check_predictions(pd.concat(frames), as_arrow(output), models.regressor)
    assert lite.staging_tables() == [] and sorted(lite.tables()) == [BOOKKEEPING, "scores"]
    logs = capfd.readouterr()
    assert "[replica 1] replica 2/2:" in logs.out + logs.err
