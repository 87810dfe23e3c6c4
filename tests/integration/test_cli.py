"""The shell side: ``batch-scoring score`` / ``manifest``, the runtime's own command, and the example DAG."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from airflow_batch_scoring.driver.local import LocalLauncher, replica_command
from airflow_batch_scoring.job import ModelSpec, Piece, ScoringJob
from airflow_batch_scoring.specs import FileSpec
from tests.support.examples import dag_bag
from tests.support.helpers import Models, make_frame, read_output, write_frame
from tests.support.scoring import check_predictions

BIN = Path(sys.executable).parent
ROOT = Path(__file__).resolve().parents[2]


def test_score_and_manifest_commands(models: Models, tmp_path: Path):
    frame = make_frame(999, seed=31)
    write_frame(frame, tmp_path / "in.csv", "csv")
    sink = (tmp_path / "out").as_uri()
    result = subprocess.run(
        [str(BIN / "batch-scoring"), "score", "--model", str(models.classifier_path), "--source",
         (tmp_path / "in.csv").as_uri(), "--sink", sink, "--columns", "id,f0,f1,f2,f3,f4", "--passthrough", "id",
         "--replicas", "2", "--sink-format", "parquet"],
        capture_output=True, text=True, check=True,
    )
    summary = json.loads(result.stdout)
    assert summary["rows_in"] == 999 and summary["output_uri"] == sink
    assert "replica 2/2" in result.stderr
    check_predictions(frame, read_output(tmp_path / "out", "parquet", []), models.classifier)
    manifest = json.loads(
        subprocess.run([str(BIN / "batch-scoring"), "manifest", sink], capture_output=True, text=True,
                       check=True).stdout
    )
    assert manifest["totals"] == {"rows_in": 999, "rows_out": 999, "rows_bad": 0}
    bad = subprocess.run([str(BIN / "batch-scoring"), "manifest", (tmp_path / "none").as_uri()],
                         capture_output=True, text=True)
    assert bad.returncode == 2 and "no _SUCCESS" in bad.stderr


def test_runtime_command_runs_one_shard_and_reads_secrets_from_stdin(models: Models, tmp_path: Path):
    """The replica command carries no secret: storage options arrive on stdin, and never reach its output."""
    frame = make_frame(100, seed=32)
    write_frame(frame, tmp_path / "in.parquet", "parquet")
    job = ScoringJob(
        job_id="j1",
        model=ModelSpec(uri=str(models.regressor_path), path=str(models.regressor_path), flavor="sklearn"),
        source=FileSpec(uri=(tmp_path / "in.parquet").as_uri(), format="parquet"),
        sink=FileSpec(uri=(tmp_path / "out").as_uri(), format="csv"),
        staging_uri=(tmp_path / "out" / "_temporary" / "j1").as_uri(),
        shards=((Piece((tmp_path / "in.parquet").as_uri(), row_groups=(0, 1, 2, 3)),),),
        passthrough_columns=("id",),
    )
    job_path = tmp_path / "job.json"
    job_path.write_text(job.to_json())
    secret = "s3cr3t-value-never-shown"
    command = replica_command(str(job_path), 0)
    assert secret not in " ".join(command)
    lines: list[str] = []
    LocalLauncher(lines.append).run(str(job_path), 1, secrets={"source": {"token": secret}, "sink": {}})
    assert not any(secret in line for line in lines)
    report = json.loads((tmp_path / "out" / "_temporary" / "j1" / "_shard-00000.json").read_text())
    assert report["rows_in"] == report["rows_out"] == 100


def test_example_dag_runs_as_is(tmp_path: Path):
    env = dict(os.environ)
    env.update(
        AIRFLOW_HOME=str(tmp_path / "airflow"),
        AIRFLOW__CORE__DAGS_FOLDER=str(ROOT / "dags"),
        BATCH_SCORING_DEMO_DIR=str(tmp_path / "demo"),
    )
    for name in ("MLFLOW_TRACKING_URI", "MLFLOW_EXPERIMENT_ID", "MLFLOW_EXPERIMENT_NAME"):
        env.pop(name, None)
    # A demo store left by an older version (no "artifacts" in its marker) is started afresh, not trusted.
    (tmp_path / "demo").mkdir()
    (tmp_path / "demo" / "mlflow.db").write_bytes(b"not a database")
    (tmp_path / "demo" / ".demo-model.json").write_text('{"version": "7"}')
    subprocess.run([str(BIN / "airflow"), "db", "migrate"], env=env, check=True, capture_output=True)
    run = subprocess.run([sys.executable, str(ROOT / "dags" / "example_batch_scoring.py")], env=env,
                         capture_output=True, text=True)
    assert "finished: success" in run.stdout, run.stdout[-3000:] + run.stderr[-3000:]
    (output,) = (tmp_path / "demo" / "scores").iterdir()
    manifest = json.loads((output / "_manifest.json").read_text())
    assert manifest["totals"]["rows_out"] == 50_000 and (output / "_SUCCESS").exists()
    assert manifest["model"]["resolved_uri"] == "models:/demo-churn/1"


def test_example_dags_import_cleanly_with_tags_doc_and_owner(monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT / "dags"))  # as Airflow puts its DAGS_FOLDER on sys.path
    bag = dag_bag(ROOT / "dags")
    assert bag.import_errors == {}
    assert bag.dags
    for dag_id, dag in bag.dags.items():
        assert dag.tags, dag_id
        assert dag.doc_md or dag.description, dag_id
        assert all(task.owner not in (None, "", "airflow") for task in dag.tasks), dag_id
