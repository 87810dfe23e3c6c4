"""Bad rows through BatchScoringOperator in ``dag.test()``: quarantine with the counts in the summary, and failing by
default or over a limit. The case table itself is tests/unit/test_bad_rows.py."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.bad_rows import COLUMNS, errors_of, output_of, spread_bad_lines
from tests.support.dag_runs import xcom_of
from tests.support.helpers import Models, assert_nothing_published, make_frame
from tests.support.scoring import check_predictions


@pytest.fixture(scope="module")
def bad_rows_dag(airflow_db):
    from tests.system.dags.bad_rows_test_dag import dag

    return dag


def test_operator_quarantines_and_reports_counts(bad_rows_dag, models: Models, tmp_path: Path):
    frame = make_frame(1000, seed=14)
    path, bad = spread_bad_lines(frame, tmp_path)
    sink = tmp_path / "out"
    dag_run = bad_rows_dag.test(run_conf={
        "model": str(models.regressor_path), "source": {"uri": path.as_uri(), "columns": COLUMNS},
        "sink": {"uri": sink.as_uri(), "format": "parquet"}, "replicas": 2, "on_bad_rows": "quarantine",
        "max_bad_rows": 10,
    })
    assert dag_run.state == "success"
    summary = xcom_of(dag_run)
    assert summary["rows_bad"] == len(bad) == 5 and summary["rows_out"] == 995
    assert summary["errors_uri"] == (sink / "_errors").as_uri() + "/"
    good = frame.drop(index=sorted(bad))
    check_predictions(good, output_of(sink), models.regressor)
    assert [(e["line"], e["reason"]) for e in errors_of(sink)] == [(i + 1, bad[i][0]) for i in sorted(bad)]


def test_operator_fails_on_bad_rows_by_default_and_over_a_limit(bad_rows_dag, models: Models, tmp_path: Path,
                                                                 capfd):
    frame = make_frame(1000, seed=15)
    path, _ = spread_bad_lines(frame, tmp_path)
    conf = {"model": str(models.regressor_path), "source": {"uri": path.as_uri(), "columns": COLUMNS},
            "sink": {"uri": (tmp_path / "out").as_uri()}, "replicas": 1, "on_bad_rows": "fail", "max_bad_rows": None,
            "max_bad_fraction": None}  # (every param, as dag.test() keeps the params an earlier run was given)
    assert bad_rows_dag.test(run_conf=conf).state == "failed"
    logs = capfd.readouterr()
    assert f"file {path.as_uri()}, line 6, column 'f1': value 'x" in logs.out + logs.err, logs.out + logs.err
    assert_nothing_published(tmp_path / "out")
    dag_run = bad_rows_dag.test(
        run_conf={**conf, "replicas": 2, "on_bad_rows": "quarantine", "max_bad_fraction": 0.001}
    )
    assert dag_run.state == "failed"
    logs = capfd.readouterr()
    assert "too many bad rows: 5 of the 1,000 rows read (0.50%) are bad" in logs.out + logs.err
    assert_nothing_published(tmp_path / "out")
