"""Faults under Airflow (``dag.test()``): a retry of a killed replica completes exactly once, and planted secrets
appear in no log, XCom or rendered field."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import fsspec
import joblib

from tests.support.fault_models import KillOnce, check_exactly_once, marked_frame
from tests.support.helpers import make_frame, read_output, source_spec, write_frame
from tests.support.servers import S3_KEY, S3_SECRET


def test_airflow_retry_of_a_killed_replica_completes_exactly_once(airflow_db, tmp_path: Path):
    from tests.system.dags.fault_test_dag import dag

    frame = marked_frame(2400, seed=62, marked=range(1500, 1501))
    write_frame(frame, tmp_path / "in.csv", "csv")
    joblib.dump(KillOnce(tmp_path / "killed.flag"), tmp_path / "kill-once.joblib")
    sink = tmp_path / "out"
    dag_run = dag.test(run_conf={
        "model": str(tmp_path / "kill-once.joblib"),
        "source": source_spec("csv", (tmp_path / "in.csv").as_uri()),
        "sink": {"uri": sink.as_uri()},
    })
    assert (tmp_path / "killed.flag").exists()  # the first try lost a replica to SIGKILL ...
    assert dag_run.state == "success"  # ... and Airflow's retry finished the run
    (ti,) = dag_run.get_task_instances()
    assert ti.try_number == 2
    check_exactly_once(frame, read_output(sink, "csv", ["id", "prediction"]))
    assert not (sink / "_temporary").exists()


def test_planted_secrets_appear_nowhere(airflow_db, models, seaweedfs, s3_bucket, azurite, azure_container,
                                        tmp_path: Path, monkeypatch, capfd):
    """A full run (registry model through an MLflow connection, S3 source, Azure Blob sink) whose connections all
    hold recognizable secrets: none of them shows in logs, XCom, rendered fields, the manifest or the outputs."""
    import json

    from airflow.models.renderedtifields import RenderedTaskInstanceFields
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    from tests.support.servers import AZURITE_KEY, azurite_connection_string

    token = "PLANTED-mlflow-token-5f2c9e"
    planted = [token, S3_SECRET, AZURITE_KEY]
    monkeypatch.setenv("AIRFLOW_CONN_MLFLOW_PLANTED", json.dumps({
        "conn_type": "mlflow", "extra": {"tracking_uri": os.environ["MLFLOW_TRACKING_URI"], "token": token}}))
    monkeypatch.setenv("AIRFLOW_CONN_S3_PLANTED", json.dumps({
        "conn_type": "aws", "login": S3_KEY, "password": S3_SECRET, "extra": {"endpoint_url": seaweedfs.endpoint}}))
    monkeypatch.setenv("AIRFLOW_CONN_AZURE_PLANTED", json.dumps({
        "conn_type": "wasb", "extra": {"connection_string": azurite_connection_string(azurite)}}))
    run = uuid.uuid4().hex[:8]
    frame = make_frame(900, seed=69)
    write_frame(frame, tmp_path / "in.csv", "csv")
    s3 = fsspec.filesystem("s3", key=S3_KEY, secret=S3_SECRET, endpoint_url=seaweedfs.endpoint,
                           skip_instance_cache=True)
    s3.put_file(str(tmp_path / "in.csv"), f"{s3_bucket}/{run}/in.csv")
    from tests.system.dags.secrets_test_dag import dag

    dag_run = dag.test(run_conf={
        "model": f"models:/{models.registry_name}@champion",
        "target": str(tmp_path / "processed"),
        "source": {**source_spec("csv", f"s3://{s3_bucket}/{run}/in.csv"), "conn_id": "s3_planted"},
        "sink": {"uri": f"abfs://{azure_container}/{run}/out", "format": "jsonl", "conn_id": "azure_planted"},
    })
    assert dag_run.state == "success"
    seen = {"logs": "".join(capfd.readouterr())}
    with create_session() as session:
        for row in session.query(XComModel).filter_by(dag_id=dag_run.dag_id, run_id=dag_run.run_id):
            seen[f"xcom {row.task_id} {row.key}"] = json.dumps(row.value, default=str)
        for row in session.query(RenderedTaskInstanceFields).filter_by(dag_id=dag_run.dag_id, run_id=dag_run.run_id):
            seen[f"rendered {row.task_id}"] = json.dumps(row.rendered_fields, default=str)
    azure = fsspec.filesystem("abfs", connection_string=azurite_connection_string(azurite), skip_instance_cache=True)
    outputs = sorted(azure.find(f"{azure_container}/{run}/out"))
    assert [p.rsplit("/", 1)[-1] for p in outputs] == ["_SUCCESS", "_manifest.json", "part-00000.jsonl",
                                                       "part-00001.jsonl"]
    for path in outputs:
        seen[path] = azure.cat_file(path).decode()
    for path in (tmp_path / "processed").rglob("*"):
        if path.is_file() and path.suffix in (".json", ".yaml", ".txt", "") and path.stat().st_size < 1_000_000:
            seen[str(path)] = path.read_text(errors="replace")
    assert "xcom score return_value" in seen and "rendered score" in seen and len(seen["logs"]) > 1000
    rows = [json.loads(line) for part in outputs if part.endswith(".jsonl") for line in seen[part].splitlines()]
    assert sorted(int(r["id"]) for r in rows) == frame["id"].tolist()  # (a CSV source's id is its text)
    leaks = [(where, secret[:6]) for where, text in seen.items() for secret in planted if secret in text]
    assert leaks == []
