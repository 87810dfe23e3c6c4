"""``BatchTrainingOperator(runtime="kubernetes")`` in ``dag.test()`` without a cluster (kmock's emulator; the test's
kubelet runs the pod's own command with the pod's own environment as a local process, against the real S3 server and
the session's MLflow registry): the pod registers a real new version whose model predicts as the callable's own; the
source's credentials and the MLflow token are in the Job's Secret only; a callable that returns no model fails with
its message, not retried, registering nothing."""

from __future__ import annotations

import base64
import json
import sys
import uuid
from pathlib import Path

import numpy as np
import pytest

from airflow_batch_scoring.kubernetes import manifests
from tests.support import training
from tests.support.dag_runs import xcom_of
from tests.support.helpers import FEATURES, make_frame
from tests.support.registry import TOKEN
from tests.support.servers import BUCKET, S3_KEY, S3_SECRET

pytestmark = pytest.mark.skipif(sys.version_info < (3, 11), reason="kmock needs Python 3.11")
IMAGE = "registry.example.com/batch-scoring-runtime:0.1.0"
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def training_k8s_dag(airflow_db):
    from tests.system.dags.training_kubernetes_test_dag import dag

    return dag


@pytest.fixture
def setting(cluster, seaweedfs, monkeypatch, tmp_path: Path, mlflow_connection):
    """A namespace with its kubelet, the S3 connection, and the run's conf for it."""
    from tests.support.kube_cluster import Kubelet

    namespace = f"train-{uuid.uuid4().hex[:8]}"
    monkeypatch.setenv("AIRFLOW_CONN_KUBE_S3", json.dumps({
        "conn_type": "aws", "login": S3_KEY, "password": S3_SECRET, "extra": {"endpoint_url": seaweedfs.endpoint}}))
    kubelet = Kubelet(cluster, tmp_path / "pods", namespace)
    kubernetes = {"image": IMAGE, "namespace": namespace, "config_file": str(cluster.kubeconfig),
                  "env_vars": {"PYTHONPATH": str(ROOT)}}  # the image would hold the callable's package
    yield namespace, kubelet, kubernetes
    kubelet.stop()


def labeled(rows: int, seed: int):
    frame = make_frame(rows, seed=seed).drop(columns=["id"])
    frame["label"] = (frame["f0"] - frame["f4"] / 3 > 0).astype("int64")
    return frame


def _put(bucket, frame, tmp_path: Path) -> str:
    prefix = f"{BUCKET}/{uuid.uuid4().hex[:8]}"
    frame.to_parquet(tmp_path / "part.parquet", index=False)
    bucket.put_file(str(tmp_path / "part.parquet"), f"{prefix}/in/part-0.parquet")
    return f"s3://{prefix}/in/"


def test_a_training_pod_registers_a_version_and_only_the_secret_holds_credentials(
    training_k8s_dag, setting, cluster, bucket, tmp_path: Path, capfd
):
    import mlflow
    from kubernetes import client as kube

    namespace, kubelet, kubernetes = setting
    frame = labeled(600, seed=81)
    uri = _put(bucket, frame, tmp_path)
    dag_run = training_k8s_dag.test(run_conf={
        "training": "tests.support.training:logistic", "source": {"uri": uri, "conn_id": "kube_s3"},
        "register_as": "trained-on-kubernetes", "training_kwargs": {"c": 0.5}, "kubernetes": kubernetes,
    })
    assert dag_run.state == "success"
    assert [(run["index"], run["code"]) for run in kubelet.runs] == [(0, 0)]  # one pod, which trained
    assert kubelet.runs[0]["command"][1:4] == ["-m", "airflow_batch_scoring.runtime", "train"]
    summary = xcom_of(dag_run, "train")
    client = mlflow.MlflowClient()
    assert str(client.get_model_version_by_alias("trained-on-kubernetes", "challenger").version) == summary["version"]
    assert summary["model_uri"] == f"models:/trained-on-kubernetes/{summary['version']}"
    assert summary["rows"] == len(frame) and summary["digest"].startswith("sha256:")
    own = training.logistic(frame, "label", c=0.5)
    np.testing.assert_array_equal(mlflow.pyfunc.load_model(summary["model_uri"]).predict(frame[FEATURES]),
                                  own.predict(frame[FEATURES]))
    # the Secret holds the source's credentials and the MLflow token; the Job (pod spec) and the ConfigMap do not
    sent = {kind: [b for b in cluster.created(kind) if b["metadata"].get("namespace") == namespace]
            for kind in ("jobs", "secrets", "configmaps")}
    assert [len(bodies) for bodies in sent.values()] == [1, 1, 1]
    job, secret, config_map = sent["jobs"][0], sent["secrets"][0], sent["configmaps"][0]
    held = json.loads(base64.b64decode(secret["data"][manifests.SECRETS_KEY]))
    assert held["mlflow"] == {"token": TOKEN} and S3_SECRET in json.dumps(held["source"])
    container = job["spec"]["template"]["spec"]["containers"][0]
    assert container["args"] == manifests.training_arguments() and not container.get("envFrom")
    assert json.loads(config_map["data"][manifests.JOB_KEY])["register_as"] == "trained-on-kubernetes"
    task_log = "".join(capfd.readouterr())
    assert f"] {training.__name__}:logistic returned a LogisticRegression" in task_log  # the pod's lines, relayed
    outside = [json.dumps(job), json.dumps(config_map), json.dumps({k: v for k, v in secret.items() if k != "data"}),
               task_log, kubelet.runs[0]["output"], json.dumps(kubelet.runs[0]["env"])]
    for value in (S3_SECRET, TOKEN):
        assert all(value not in text for text in outside), value
    # the Job (and its Secret and ConfigMap with it) is deleted once the result is read
    assert kube.BatchV1Api(cluster.client()).list_namespaced_job(namespace).items == []


def test_a_callable_without_a_model_fails_in_its_pod_without_retry_and_registers_nothing(
    training_k8s_dag, setting, bucket, tmp_path: Path, capfd
):
    import mlflow

    namespace, kubelet, kubernetes = setting
    uri = _put(bucket, labeled(100, seed=82), tmp_path)
    dag_run = training_k8s_dag.test(run_conf={
        "training": "tests.support.training:returns_text", "source": {"uri": uri, "conn_id": "kube_s3"},
        "register_as": "never-on-kubernetes", "training_kwargs": {}, "kubernetes": kubernetes,
    })
    assert dag_run.state == "failed"
    ti = dag_run.get_task_instance("train")
    assert (ti.state, ti.try_number) == ("failed", 1)
    assert [(run["index"], run["code"]) for run in kubelet.runs] == [(0, 2)]  # a user error: exit 2, one pod
    text = "".join(capfd.readouterr())
    assert "returned a builtins.str, which has no predict method" in text and "not retried" in text
    assert f"Kubernetes Job {namespace}/" in text
    assert mlflow.MlflowClient().search_model_versions("name='never-on-kubernetes'") == []
