"""``BatchMetricsOperator(runtime="kubernetes")`` in ``dag.test()`` without a cluster (kmock's emulator; the test's
kubelet runs each pod's own command as a local process, against the real S3 server): the pods gather the same
statistics as local replicas, so metrics.json holds the same metrics, equal to scikit-learn's."""

from __future__ import annotations

import json
import sys
import uuid
from pathlib import Path

import numpy as np
import pytest
from sklearn import metrics as skm

from tests.support.dag_runs import xcom_of
from tests.support.helpers import FEATURES, Models, make_frame, write_frame
from tests.support.servers import BUCKET, S3_KEY, S3_SECRET

pytestmark = pytest.mark.skipif(sys.version_info < (3, 11), reason="kmock needs Python 3.11")
IMAGE = "registry.example.com/batch-scoring-runtime:0.1.0"


@pytest.fixture(scope="module")
def metrics_k8s_dag(airflow_db):
    from tests.system.dags.metrics_kubernetes_test_dag import dag

    return dag


def test_pods_compute_the_metrics_local_replicas_compute(metrics_k8s_dag, cluster, bucket, seaweedfs, models: Models,
                                                         monkeypatch, tmp_path: Path):
    from tests.support.kube_cluster import Kubelet

    namespace, prefix = f"metrics-{uuid.uuid4().hex[:8]}", f"{BUCKET}/{uuid.uuid4().hex[:8]}"
    monkeypatch.setenv("AIRFLOW_CONN_KUBE_S3", json.dumps({
        "conn_type": "aws", "login": S3_KEY, "password": S3_SECRET, "extra": {"endpoint_url": seaweedfs.endpoint}}))
    kubelet = Kubelet(cluster, tmp_path / "pods", namespace)
    try:
        frame, baseline = make_frame(1400, seed=71), make_frame(900, seed=72)
        rng = np.random.default_rng(7)
        frame["label"] = np.where(frame["f0"] + rng.normal(scale=0.5, size=len(frame)) > 0, "yes", "no")
        frame["region"] = rng.choice(["north", "south"], size=len(frame))
        write_frame(frame, tmp_path / "in.parquet", "parquet")
        write_frame(baseline, tmp_path / "base.parquet", "parquet")
        bucket.put_file(str(tmp_path / "in.parquet"), f"{prefix}/in/part-0.parquet")
        bucket.put_file(str(tmp_path / "base.parquet"), f"{prefix}/base/part-0.parquet")
        dag_run = metrics_k8s_dag.test(run_conf={
            "model": str(models.classifier_path),
            "source": {"uri": f"s3://{prefix}/in/", "conn_id": "kube_s3"},
            "baseline": {"uri": f"s3://{prefix}/base/", "conn_id": "kube_s3"},
            "output": {runtime: {"uri": f"s3://{prefix}/out-{runtime}/", "conn_id": "kube_s3"}
                       for runtime in ("local", "kubernetes")},
            "replicas": 2,
            "kubernetes": {"image": IMAGE, "namespace": namespace, "config_file": str(cluster.kubeconfig)},
        })
        assert dag_run.state == "success"
    finally:
        kubelet.stop()
    assert sorted(run["index"] for run in kubelet.runs) == [0, 0, 1, 1]  # the baseline's Job, then the labeled rows'
    records = {runtime: json.loads(bucket.cat_file(f"{prefix}/out-{runtime}/metrics.json"))
               for runtime in ("local", "kubernetes")}
    local, pods = records["local"], records["kubernetes"]
    assert pods["runtime"] == "kubernetes" and local["runtime"] == "local"
    for section in ("classification", "fairness", "drift", "summary"):
        assert pods[section] == local[section], section
    pred = models.classifier.predict(frame[FEATURES])
    assert pods["classification"]["accuracy"] == pytest.approx(skm.accuracy_score(frame["label"], pred), abs=1e-12)
    assert xcom_of(dag_run, "metrics_kubernetes")["metrics"] == xcom_of(dag_run, "metrics_local")["metrics"]
