"""BatchScoringOperator inside a real Airflow: ``dag.test()`` against the test metadata DB."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from airflow_batch_scoring.errors import ConfigurationError
from tests.support.dag_runs import rendered_fields, xcom_of
from tests.support.helpers import Models, assert_nothing_published, make_frame, read_output, source_spec, write_frame
from tests.support.scoring import check_predictions


def test_scores_a_registry_model_in_dag_test(test_dag, models: Models, tmp_path: Path, capfd):
    frame = make_frame(2345, seed=21)
    write_frame(frame, tmp_path / "in.csv", "csv")
    sink = tmp_path / "out"
    dag_run = test_dag.test(
        run_conf={
            "model": f"models:/{models.registry_name}@champion",
            "source": source_spec("csv", (tmp_path / "in.csv").as_uri()),
            "sink": {"uri": sink.as_uri(), "format": "jsonl"},
            "replicas": 3,
            "passthrough": ["id"],
        }
    )
    assert dag_run.state == "success"
    summary = xcom_of(dag_run)
    assert summary["rows_in"] == summary["rows_out"] == 2345
    assert summary["output_uri"] == sink.as_uri()
    assert summary["model_uri"] == f"models:/{models.registry_name}/{models.registry_version}"
    assert summary["duration_s"] > 0 and summary["rows_per_s"] > 0
    check_predictions(frame, read_output(sink, "jsonl", []), models.classifier)
    rendered = rendered_fields(dag_run)
    assert rendered["model"] == f"models:/{models.registry_name}@champion"
    assert rendered["replicas"] == 3
    logs = capfd.readouterr()
    text = logs.out + logs.err
    assert "[replica 2] replica 3/3:" in text and "rows scored" in text and "rows/s" in text
    # The operator prestarted the three replicas: they loaded the MLflow model while it planned the shards.
    # (labelled "[replica starting]", or "[replica N]" when the shard was handed over before the line was relayed)
    assert text.count("] model loaded in") == 3


def test_failed_run_publishes_nothing(test_dag, models: Models, tmp_path: Path):
    lines = [f"{i},1,2,3,4,5\n" for i in range(100)]
    lines[42] = "42,1,2,three,4,5\n"
    (tmp_path / "in.csv").write_text("".join(lines))
    sink = tmp_path / "out"
    dag_run = test_dag.test(
        run_conf={
            "model": str(models.regressor_path),
            "source": source_spec("csv", (tmp_path / "in.csv").as_uri()),
            "sink": {"uri": sink.as_uri()},
            "replicas": 2,
            "passthrough": ["id"],
        }
    )
    assert dag_run.state == "failed"
    assert dag_run.get_task_instance("score").state == "failed"
    assert_nothing_published(sink)


def test_operator_rejects_bad_parameters_at_parse_time():
    from airflow_batch_scoring.operators import BatchScoringOperator

    with pytest.raises(ConfigurationError, match="runtime must be one of"):
        BatchScoringOperator(task_id="t", model="m", source="file:///x.csv", sink="file:///y", runtime="spark")
    with pytest.raises(TypeError):
        BatchScoringOperator("t", "m", "file:///x.csv", "file:///y")  # type: ignore[misc]
    assert {"model", "source", "sink", "replicas", "batch_size", "passthrough_columns"} <= set(
        BatchScoringOperator.template_fields
    )


def test_provider_is_discovered(airflow_db):
    airflow = str(Path(sys.executable).parent / "airflow")
    listing = subprocess.run([airflow, "providers", "list"], capture_output=True, text=True, check=True).stdout
    assert "airflow-batch-scoring" in listing


def test_normal_run_logs_no_error_line(test_dag, models: Models, tmp_path: Path, capfd):
    """A registry model on a local MLflow store has no version page (no Model version link): the task log of a
    normal run holds no ``[error]`` line (the links are not looked up in XCom where none was stored)."""
    frame = make_frame(300, seed=23)
    write_frame(frame, tmp_path / "in.csv", "csv")
    dag_run = test_dag.test(
        run_conf={
            "model": f"models:/{models.registry_name}/{models.registry_version}",
            "source": source_spec("csv", (tmp_path / "in.csv").as_uri()),
            "sink": {"uri": (tmp_path / "out").as_uri(), "format": "jsonl"},
            "passthrough": ["id"],
        }
    )
    assert dag_run.state == "success"
    logs = capfd.readouterr()
    text = logs.out + logs.err
    assert "rows scored" in text  # the task's own log was captured
    errors = [line for line in text.splitlines() if "[error" in line.lower() or "XCom not found" in line]
    assert errors == []
    # The links Airflow stores when the task ends: the output folder; no model version page for a local store.
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    with create_session() as session:
        rows = session.query(XComModel).filter_by(dag_id=dag_run.dag_id, run_id=dag_run.run_id, task_id="score")
        links = {row.key: row.value for row in rows if row.key.startswith("_link_")}
    assert links == {"_link_OutputLocationLink": (tmp_path / "out").as_uri(), "_link_ModelVersionLink": ""}
