"""``BatchScoringOperator(runtime="kubernetes")`` end to end in ``dag.test()``, without a cluster.

The operator talks to kmock's Kubernetes emulator through the cncf-kubernetes provider's hooks; the test's kubelet
(tests/kube_cluster.py) runs each pod's own container command with the pod's own environment as a local process,
its ConfigMap and Secret written to files as they would be mounted, against the real S3 server (SeaweedFS). The
output must equal ``runtime="local"`` on the same input, row for row. (An MLflow model folder staged for the pods is
scored by the runtime image's environment in tests/test_runtime_image.py.)
"""

from __future__ import annotations

import base64
import io
import json
import uuid
from pathlib import Path

import fsspec
import kubernetes_validate
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from airflow_batch_scoring.kubernetes import manifests
from tests.support.dag_runs import xcom_of
from tests.support.helpers import FEATURES, Models, make_frame, write_frame
from tests.support.kube_cluster import FakeCluster, Kubelet
from tests.support.scoring import check_predictions
from tests.support.servers import BUCKET, S3_KEY, S3_SECRET

IMAGE = "registry.example.com/batch-scoring-runtime:0.1.0"


@pytest.fixture(scope="module")
def k8s_dag(airflow_db):
    from tests.system.dags.kubernetes_test_dag import dag

    return dag


@pytest.fixture
def setup(cluster, bucket, seaweedfs, monkeypatch, tmp_path):
    namespace = f"scoring-{uuid.uuid4().hex[:8]}"
    monkeypatch.setenv("AIRFLOW_CONN_KUBE_S3", json.dumps({
        "conn_type": "aws", "login": S3_KEY, "password": S3_SECRET, "extra": {"endpoint_url": seaweedfs.endpoint}}))
    kubelet = Kubelet(cluster, tmp_path / "pods", namespace)
    yield namespace, kubelet, f"{BUCKET}/{uuid.uuid4().hex[:8]}"
    kubelet.stop()


def _conf(prefix: str, namespace: str, cluster: FakeCluster, model: str, fmt: str, replicas: int,
          deferrable: bool = False, **settings) -> dict:
    return {
        "model": model,
        "source": {"uri": f"s3://{prefix}/in/", "format": "csv", "columns": ["id", *FEATURES], "conn_id": "kube_s3"},
        "sink": {runtime: {"uri": f"s3://{prefix}/out-{runtime}/", "format": fmt, "conn_id": "kube_s3"}
                 for runtime in ("local", "kubernetes")},
        "replicas": replicas,
        "passthrough": ["id"],
        "kubernetes": {"image": IMAGE, "namespace": namespace, "config_file": str(cluster.kubeconfig), **settings},
        "deferrable": deferrable,
        "poll_interval": 0.2,
    }


def _parts(fs: fsspec.AbstractFileSystem, folder: str) -> list[str]:
    fs.invalidate_cache()
    return sorted(p for p in fs.ls(folder, detail=False) if p.rsplit("/", 1)[-1].startswith("part-"))


def _read(fs: fsspec.AbstractFileSystem, folder: str, fmt: str) -> pa.Table:
    tables = []
    for part in _parts(fs, folder):
        data = fs.cat_file(part)
        if fmt == "parquet":
            tables.append(pq.read_table(io.BytesIO(data)))
        else:
            tables.append(pa.Table.from_pylist([json.loads(line) for line in data.decode().splitlines()]))
    return pa.concat_tables(tables)


def _upload_input(fs: fsspec.AbstractFileSystem, prefix: str, frames: list, tmp_path: Path) -> None:
    for i, frame in enumerate(frames):
        write_frame(frame, tmp_path / f"in{i}.csv", "csv")
        fs.put_file(str(tmp_path / f"in{i}.csv"), f"{prefix}/in/part-{i}.csv")



def test_pods_score_like_local_replicas_row_for_row(k8s_dag, setup, cluster, bucket, models: Models, tmp_path,
                                                    capfd):
    namespace, kubelet, prefix = setup
    frames = [make_frame(900, seed=61), make_frame(733, seed=62)]
    _upload_input(bucket, prefix, frames, tmp_path)
    conf = _conf(prefix, namespace, cluster, str(models.classifier_path), "parquet", 3,
                 resources={"requests": {"cpu": "500m", "memory": "1Gi"}, "limits": {"cpu": "2", "memory": "1Gi"}},
                 labels={"team": "risk"})
    dag_run = k8s_dag.test(run_conf=conf)
    assert dag_run.state == "success", capfd.readouterr().out[-5000:]
    kubernetes_out = _read(bucket, f"{prefix}/out-kubernetes", "parquet")
    local_out = _read(bucket, f"{prefix}/out-local", "parquet")
    assert kubernetes_out.num_rows == 1633 and kubernetes_out.equals(local_out)  # row for row, bit for bit
    check_predictions(pd.concat(frames), kubernetes_out, models.classifier)
    summary = xcom_of(dag_run, "score_kubernetes")
    assert summary["rows_in"] == summary["rows_out"] == 1633 and summary["replicas"] == 3
    manifest = json.loads(bucket.cat_file(f"{prefix}/out-kubernetes/_manifest.json"))
    assert manifest["runtime"] == "kubernetes" and manifest["model"]["digest"] == summary["model_digest"]
    assert manifest["runtime_image"] == conf["kubernetes"]["image"]
    assert bucket.exists(f"{prefix}/out-kubernetes/_SUCCESS")
    staged = bucket.find(f"{prefix}/out-kubernetes/_temporary", detail=True)
    assert [p for p, info in staged.items() if info["type"] == "file"] == []  # the staged model went too

    # one pod per completion index, each the pod's own command and environment
    assert sorted(run["index"] for run in kubelet.runs) == [0, 1, 2]
    assert all(run["code"] == 0 for run in kubelet.runs)
    run = kubelet.runs[0]
    assert run["command"][1:5] == ["-m", "airflow_batch_scoring.runtime", "run-shard", "--job"]
    assert run["env"]["OMP_NUM_THREADS"] == "2" and run["env"]["JOB_COMPLETION_INDEX"] == str(run["index"])
    assert f"replica {run['index'] + 1}/3: " in run["output"] and "rows scored" in run["output"]

    # what was sent: valid for current Kubernetes, the credentials only in the Secret's data
    sent = {kind: [b for b in cluster.created(kind) if b["metadata"].get("namespace") == namespace]
            for kind in ("jobs", "secrets", "configmaps")}
    assert [len(bodies) for bodies in sent.values()] == [1, 1, 1]
    for bodies in sent.values():
        kubernetes_validate.validate(bodies[0], "1.37", strict=True)
    job, secret, config_map = sent["jobs"][0], sent["secrets"][0], sent["configmaps"][0]
    assert job["spec"]["completionMode"] == "Indexed" and job["spec"]["completions"] == 3
    assert job["metadata"]["labels"]["team"] == "risk"
    assert json.loads(base64.b64decode(secret["data"][manifests.SECRETS_KEY]))["sink"]["secret"] == S3_SECRET
    logs = capfd.readouterr()
    visible = [json.dumps(job), json.dumps(config_map), json.dumps(secret["metadata"]), json.dumps(summary),
               json.dumps([r["env"] for r in kubelet.runs]), json.dumps([r["command"] for r in kubelet.runs]),
               logs.out, logs.err]
    assert all(S3_SECRET not in text for text in visible)
    # the succeeded Job was deleted (its Secret and ConfigMap are owned by it)
    assert [r.data for r in cluster.requests("delete", "jobs") if r.namespace == namespace] == [
        {"propagationPolicy": "Background"}]


def test_deferrable_waits_in_the_trigger_and_commits_on_resume(k8s_dag, setup, cluster, bucket, models: Models,
                                                               tmp_path, capfd, caplog, monkeypatch):
    """Also a plan over what a ConfigMap holds (the limit lowered here; a real one is some thousands of input files):
    it is staged on the store, the pods and the resumed task read it from there, and it goes with the staging."""
    namespace, kubelet, prefix = setup
    frame = make_frame(1200, seed=63)
    _upload_input(bucket, prefix, [frame], tmp_path)
    monkeypatch.setattr(manifests, "CONFIGMAP_LIMIT", 1000)  # the pointers: ~550 bytes
    conf = _conf(prefix, namespace, cluster, str(models.regressor_path), "jsonl", 2, deferrable=True)
    dag_run = k8s_dag.test(run_conf=conf, mark_success_pattern="score_local")
    assert dag_run.state == "success", capfd.readouterr().out[-5000:]
    check_predictions(frame, _read(bucket, f"{prefix}/out-kubernetes", "jsonl"), models.regressor)
    assert sorted(run["index"] for run in kubelet.runs) == [0, 1]
    summary = xcom_of(dag_run, "score_kubernetes")
    assert summary["rows_out"] == 1200
    assert "[DAG TEST] running trigger in line" in caplog.text  # the wait happened in the trigger
    config_map = next(c for c in cluster.created("configmaps") if c["metadata"]["namespace"] == namespace)
    pointers = [json.loads(config_map["data"][key]) for key in (manifests.JOB_KEY, manifests.INPUTS_KEY)]
    staged = f"s3://{prefix}/out-kubernetes/_temporary/"
    assert [p["staged_document"].startswith(staged) for p in pointers] == [True, True], pointers
    assert not bucket.exists(pointers[0]["staged_document"].removeprefix("s3://"))  # removed with the staging


def test_a_bad_row_fails_with_its_index_file_line_and_column(k8s_dag, setup, cluster, bucket, models: Models,
                                                              tmp_path, capfd):
    namespace, kubelet, prefix = setup
    lines = [f"{i},1,2,3,4,5\n" for i in range(400)]
    lines[350] = "350,1,2,three,4,5\n"
    bucket.pipe_file(f"{prefix}/in/data.csv", "".join(lines).encode())
    conf = _conf(prefix, namespace, cluster, str(models.regressor_path), "csv", 2, backoff_limit=2)
    conf["source"]["columns"] = ["id", *FEATURES]
    dag_run = k8s_dag.test(run_conf=conf, mark_success_pattern="score_local")
    ti = dag_run.get_task_instance("score_kubernetes")
    assert (ti.state, ti.try_number) == ("failed", 1)  # a user error inside a pod: none of the 3 retries is used
    text = capfd.readouterr().out
    assert "AirflowFailException: InputError: " in text and "not retried" in text
    assert f"s3://{prefix}/in/data.csv, line 351, column 'f2'" in text
    assert "index 1 (shard 1), pod job-scoring-score-kubernetes-" in text
    # exit 2 fails the Job at once (FailJob, not retried); a sibling still running then is stopped (-9), never retried
    assert [(run["index"], run["code"]) for run in kubelet.runs if run["code"] not in (0, -9)] == [(1, 2)]
    assert [run["index"] for run in kubelet.runs].count(0) == 1
    bucket.invalidate_cache()
    assert not bucket.exists(f"{prefix}/out-kubernetes/_SUCCESS") and not bucket.exists(f"{prefix}/out-kubernetes/"
                                                                                        "_manifest.json")
    assert _parts(bucket, f"{prefix}/out-kubernetes") == [] if bucket.exists(f"{prefix}/out-kubernetes") else True


def test_a_killed_index_lets_the_others_finish_and_the_retry_reruns_only_its_shard(
    k8s_dag, setup, cluster, bucket, models: Models, tmp_path, capfd
):
    """Index 1 of 3 is OOM-killed at once while retries remain: the Job (no ``maxFailedIndexes``) lets indexes 0 and 2
    finish their shards, the try fails, and the retry's Job scores shard 1 alone."""
    from tests.support.kube_cluster import Outcome

    namespace, kubelet, prefix = setup
    frames = [make_frame(700, seed=64), make_frame(650, seed=65), make_frame(600, seed=66)]
    _upload_input(bucket, prefix, frames, tmp_path)
    kubelet.script[1] = Outcome("oom")  # the first Job's index 1 (the retry's Job has index 0 only)
    conf = _conf(prefix, namespace, cluster, str(models.regressor_path), "jsonl", 3, grace_period_seconds=600)
    dag_run = k8s_dag.test(run_conf=conf, mark_success_pattern="score_local")
    text = capfd.readouterr().out
    ti = dag_run.get_task_instance("score_kubernetes")
    assert (dag_run.state, ti.state, ti.try_number) == ("success", "success", 2), text[-5000:]
    assert "index 1 (shard 1), pod job-scoring-score-kubernetes-" in text and "OOMKilled" in text
    assert "Resuming: shard(s) [0, 2] completed in an earlier attempt" in text
    # the first Job ran indexes 0 and 2 to their end; the retry's Job ran shard 1 only
    first, retry = kubelet.runs[:2], kubelet.runs[2:]
    assert sorted((r["index"], r["code"]) for r in first) == [(0, 0), (2, 0)]
    assert [(r["index"], r["code"]) for r in retry] == [(0, 0)]
    assert retry[0]["command"][-2:] == ["--shards", "1"]
    jobs = [b for b in cluster.created("jobs") if b["metadata"].get("namespace") == namespace]
    assert [j["spec"]["completions"] for j in jobs] == [3, 1]
    assert "maxFailedIndexes" not in jobs[0]["spec"]  # a retry remained: the others were not stopped
    for body in jobs:
        kubernetes_validate.validate(body, "1.37", strict=True)
    out = _read(bucket, f"{prefix}/out-kubernetes", "jsonl")
    ids = sorted(out.column("id").to_pylist())
    assert len(ids) == 1950 and len(set(ids)) == 1950  # every row exactly once
    check_predictions(pd.concat(frames), out, models.regressor)
