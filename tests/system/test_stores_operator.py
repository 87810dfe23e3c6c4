"""Object stores through the operator in ``dag.test()`` (SeaweedFS as S3 and MinIO, fake GCS, Azurite): connections
give the credentials, and a wrong one is named without its secret."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pandas as pd
import pytest

from airflow_batch_scoring.errors import InputError
from tests.support.dag_runs import rendered_fields, xcom_of
from tests.support.helpers import Models, make_frame, source_spec, write_frame
from tests.support.scoring import check_predictions
from tests.support.servers import AZURITE_KEY, S3_KEY, S3_SECRET
from tests.support.stores import Store, score_on


def test_csv_prefix_to_jsonl_in_dag_test(test_dag, store: Store, models: Models, tmp_path: Path, capfd):  # noqa: F811
    run = uuid.uuid4().hex[:8]
    frames = [make_frame(700, seed=51), make_frame(555, seed=52)]
    for i, frame in enumerate(frames):
        write_frame(frame, tmp_path / f"in{i}.csv", "csv")
        store.put(tmp_path / f"in{i}.csv", f"{run}/in/part-{i}.csv")
    dag_run = test_dag.test(run_conf={
        "model": str(models.classifier_path),
        "source": {**source_spec("csv", store.uri(f"{run}/in/")), "conn_id": store.conn_id},
        "sink": {"uri": store.uri(f"{run}/out/"), "format": "jsonl", "conn_id": store.conn_id},
        "replicas": 2,
        "passthrough": ["id"],
        "part_size": 8192,
    })
    assert dag_run.state == "success"
    assert xcom_of(dag_run)["rows_out"] == 1255
    check_predictions(pd.concat(frames), store.read_output(f"{run}/out", "jsonl", []), models.classifier)
    assert store.names(f"{run}/out") == ["_SUCCESS", "_manifest.json", "part-00000.jsonl", "part-00001.jsonl"]
    # the store's secret is nowhere a user or another task can see it
    secret = {"s3": S3_SECRET, "minio": S3_SECRET, "azure": AZURITE_KEY}.get(store.name)
    if secret:
        seen = [json.dumps(xcom_of(dag_run)), json.dumps(rendered_fields(dag_run)),
                store.fs.cat_file(f"{store.bucket}/{run}/out/_manifest.json").decode()]
        logs = capfd.readouterr()
        seen += [logs.out, logs.err]
        assert all(secret not in text for text in seen)
        assert "connection" not in seen[1] or store.conn_id in seen[1]


def test_parquet_object_to_csv_in_dag_test(test_dag, store: Store, models: Models, tmp_path: Path):  # noqa: F811
    run = uuid.uuid4().hex[:8]
    frame = make_frame(1600, seed=53)
    write_frame(frame, tmp_path / "in.parquet", "parquet")
    uri = store.put(tmp_path / "in.parquet", f"{run}/in.parquet")
    dag_run = test_dag.test(run_conf={
        "model": str(models.regressor_path),
        "source": {"uri": uri, "conn_id": store.conn_id},
        "sink": {"uri": store.uri(f"{run}/out"), "format": "csv", "conn_id": store.conn_id},
        "replicas": 2,
        "passthrough": ["id"],
    })
    assert dag_run.state == "success"
    check_predictions(frame, store.read_output(f"{run}/out", "csv", ["id", "prediction"]), models.regressor)


def test_wrong_credentials_name_the_connection_not_the_secret(
    test_dag, seaweedfs, s3_bucket, models: Models, monkeypatch, capfd  # noqa: F811
):
    wrong = "wrong-secret-V4lue-XYZ"
    monkeypatch.setenv("AIRFLOW_CONN_S3_BAD", json.dumps(
        {"conn_type": "aws", "login": S3_KEY, "password": wrong, "extra": {"endpoint_url": seaweedfs.endpoint}}))
    with pytest.raises(InputError) as err:
        score_on(None, str(models.regressor_path),  # type: ignore[arg-type]
               {"uri": "s3://scoring/any/", "format": "csv", "conn_id": "s3_bad"},
               {"uri": "s3://scoring/out-bad/", "conn_id": "s3_bad"}, Path(seaweedfs.log).parent)
    message = str(err.value)
    assert "connection 's3_bad'" in message and "S3" in message and "refused" in message
    assert wrong not in message
    dag_run = test_dag.test(run_conf={
        "model": str(models.regressor_path),
        "source": {"uri": "s3://scoring/any/", "format": "csv", "conn_id": "s3_bad"},
        "sink": {"uri": "s3://scoring/out-bad/", "conn_id": "s3_bad"},
    })
    assert dag_run.state == "failed"
    logs = capfd.readouterr()
    assert "connection 's3_bad'" in logs.out + logs.err
    assert wrong not in logs.out + logs.err


@pytest.fixture(scope="module")
def store_artifact_dag(airflow_db):
    from tests.system.dags.store_artifact_test_dag import dag

    return dag


def test_a_model_processed_into_an_object_store_is_scored_from_there(
    store_artifact_dag, s3_store: Store, models: Models, tmp_path: Path, monkeypatch, capfd
):
    """ProcessArtifactOperator writes to s3:// (distributed executors: the scoring task runs elsewhere); the scoring
    task fetches the artifact (an MLflow model folder) from the store, checks its digest and scores exactly it."""
    run = uuid.uuid4().hex[:8]
    cache = tmp_path / "worker-disk"
    monkeypatch.setenv("BATCH_SCORING_ARTIFACTS_DIR", str(cache))  # where a local default target would go
    frame = make_frame(640, seed=61)
    write_frame(frame, tmp_path / "in.csv", "csv")
    target = s3_store.uri(f"{run}/artifacts")
    dag_run = store_artifact_dag.test(run_conf={
        "model": f"models:/{models.registry_name}@champion",
        "target": target,
        "conn_id": s3_store.conn_id,
        "source": source_spec("csv", (tmp_path / "in.csv").as_uri()),
        "sink": {"uri": s3_store.uri(f"{run}/out"), "format": "parquet", "conn_id": s3_store.conn_id},
    })
    assert dag_run.state == "success"
    processed = xcom_of(dag_run, "process")
    assert processed["path"] == f"{target}/artifact/model" and processed["storage_conn_id"] == s3_store.conn_id
    assert processed["source_model_version"] == models.registry_version
    s3_store.fs.invalidate_cache()
    marker = json.loads(s3_store.fs.cat_file(f"{s3_store.bucket}/{run}/artifacts/_artifact.json"))
    assert marker == processed
    assert not cache.exists()  # nothing of the artifact stayed on the processing worker's disk
    check_predictions(frame, s3_store.read_output(f"{run}/out", "parquet", []), models.classifier)
    summary = xcom_of(dag_run, "score")
    assert summary["model_digest"] == processed["digest"]
    logs = capfd.readouterr()
    assert S3_SECRET not in logs.out + logs.err and S3_SECRET not in json.dumps(processed)
