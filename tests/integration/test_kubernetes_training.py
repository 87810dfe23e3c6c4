"""The Kubernetes trainer against the API emulator with scripted pods: the result read from the pod's log before the
Job is deleted, a retry that finds the earlier attempt's succeeded Job reads its result instead of training again,
and a pod's user error raised as the pod reported it (not retryable)."""

from __future__ import annotations

import json
import types
import uuid
from pathlib import Path

import pytest
from kubernetes import client

from airflow_batch_scoring.errors import ConfigurationError, is_retryable
from airflow_batch_scoring.job import Piece
from airflow_batch_scoring.kubernetes import manifests
from airflow_batch_scoring.kubernetes.settings import KubernetesSettings
from airflow_batch_scoring.kubernetes.training import KubernetesTrainer
from airflow_batch_scoring.runtime.protocol import ERROR_MARKER
from airflow_batch_scoring.specs import FileSpec
from airflow_batch_scoring.training.job import TrainingJob
from airflow_batch_scoring.training.process import RESULT_MARKER
from tests.support.kube_cluster import FakeCluster, Kubelet, Outcome

IMAGE = "registry.example.com/batch-scoring-runtime:0.1.0"
JOB = TrainingJob(job_id="train-1", source=FileSpec(uri="s3://data/in/", format="parquet"),
                  pieces=(Piece(path="s3://data/in/0.parquet"),), label_column="label",
                  training="models.fit:train", register_as="churn")
RESULT = {"model_uri": "models:/churn/4", "name": "churn", "version": "4", "alias": "challenger", "run_id": "r1"}


@pytest.fixture
def namespace() -> str:
    return f"training-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def kubelet(cluster: FakeCluster, namespace: str, tmp_path: Path):
    player = Kubelet(cluster, tmp_path, namespace)
    yield player
    player.stop()


def _trainer(cluster: FakeCluster, namespace: str, lines: list[str], **settings) -> KubernetesTrainer:
    config = KubernetesSettings.parse({"image": IMAGE, "namespace": namespace, "config_file": str(cluster.kubeconfig),
                                       **settings}, poll_interval=0.05)
    ti = types.SimpleNamespace(dag_id="dag", task_id="train", map_index=-1, try_number=1, run_id="manual")
    name = manifests.job_name("dag", "train", "manual", -1, kind="training")
    return KubernetesTrainer(config, name=name, context={"ti": ti, "run_id": "manual", "dag": types.SimpleNamespace()},
                             task="dag.train/manual", log=lines.append)


def _jobs(cluster: FakeCluster, namespace: str) -> list:
    return client.BatchV1Api(cluster.client()).list_namespaced_job(namespace).items


def test_the_result_is_read_from_the_pod_and_a_retry_reads_a_succeeded_job_instead_of_training_again(
    cluster, namespace, kubelet
):
    kubelet.script[0] = Outcome("ok", log=f"Read 10 rows\n{RESULT_MARKER}{json.dumps(RESULT)}\n")
    lines: list[str] = []
    assert _trainer(cluster, namespace, lines, on_finish_action="keep_job")(JOB, {"mlflow": {"token": "t"}}) == RESULT
    assert any(line.endswith("] Read 10 rows") for line in lines)
    assert len(_jobs(cluster, namespace)) == 1  # kept: as if the attempt died before deleting it
    again: list[str] = []
    assert _trainer(cluster, namespace, again)(JOB, {"mlflow": {"token": "t"}}) == RESULT
    assert any("Reattaching to training Job" in line for line in again)
    assert len([b for b in cluster.created("jobs") if b["metadata"]["namespace"] == namespace]) == 1
    assert _jobs(cluster, namespace) == []  # deleted once its result was read


def test_a_user_error_in_the_pod_is_raised_as_reported_and_not_retryable(cluster, namespace, kubelet):
    error = {"type": "ConfigurationError", "message": "models.fit:train returned None", "retryable": False}
    kubelet.script[0] = Outcome("exit", code=2, log=ERROR_MARKER + json.dumps(error) + "\n")
    with pytest.raises(ConfigurationError, match=r"returned None \[Kubernetes Job training-") as raised:
        _trainer(cluster, namespace, [])(JOB, {})
    assert not is_retryable(raised.value)
