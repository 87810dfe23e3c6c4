"""The Kubernetes API calls of a scoring run (``hooks/kubernetes.py``) against the HTTP Kubernetes emulator (kmock):
what each call sends, what it returns, and how a refusal is explained. The launcher's policy on top of them is
tests/integration/test_kubernetes_api.py's."""

from __future__ import annotations

import asyncio
import base64
import uuid

import pytest
from kubernetes import client
from kubernetes.client import models as k8s

from airflow_batch_scoring.errors import ConfigurationError
from airflow_batch_scoring.hooks.kubernetes import AsyncScoringJobHook, ScoringJobHook
from airflow_batch_scoring.kubernetes.status import JOB_NAME_LABEL
from tests.support.kube_cluster import FakeCluster

SECRET_VALUE = "s3cr3t-Value-that-must-not-leak"


@pytest.fixture
def namespace() -> str:
    return f"hook-{uuid.uuid4().hex[:8]}"


def _hook(cluster: FakeCluster) -> ScoringJobHook:
    return ScoringJobHook(conn_id=None, config_file=str(cluster.kubeconfig))


def _async_hook(cluster: FakeCluster) -> AsyncScoringJobHook:
    return AsyncScoringJobHook(conn_id=None, config_file=str(cluster.kubeconfig))


def _job(name: str, namespace: str) -> k8s.V1Job:
    container = k8s.V1Container(name="scoring", image="registry.example.com/scoring:1", command=["true"])
    return k8s.V1Job(
        api_version="batch/v1", kind="Job", metadata=k8s.V1ObjectMeta(name=name, namespace=namespace),
        spec=k8s.V1JobSpec(template=k8s.V1PodTemplateSpec(
            spec=k8s.V1PodSpec(containers=[container], restart_policy="Never"))),
    )


def _secret(name: str, namespace: str, value: str = SECRET_VALUE) -> k8s.V1Secret:
    return k8s.V1Secret(api_version="v1", kind="Secret", metadata=k8s.V1ObjectMeta(name=name, namespace=namespace),
                        data={"secrets.json": base64.b64encode(value.encode()).decode()}, immutable=True)


def _config_map(name: str, namespace: str) -> k8s.V1ConfigMap:
    return k8s.V1ConfigMap(api_version="v1", kind="ConfigMap",
                           metadata=k8s.V1ObjectMeta(name=name, namespace=namespace), data={"job.json": "{}"})


def _pod(name: str, namespace: str, job: str) -> dict:
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": namespace, "labels": {JOB_NAME_LABEL: job}},
            "spec": {"containers": [{"name": "scoring", "image": "x"}]}}


def test_a_run_is_created_owned_read_back_and_deleted_with_its_propagation(cluster, namespace):
    hook = _hook(cluster)
    assert hook.read_job("job-a", namespace) is None
    assert hook.read_config_map("job-a-spec", namespace) is None
    hook.create_or_replace_secret(_secret("job-a-credentials", namespace))
    hook.create_or_replace_config_map(_config_map("job-a-spec", namespace))
    created = hook.submit_job(_job("job-a", namespace))
    assert created["metadata"]["name"] == "job-a" and created["metadata"]["uid"]
    owner = {"apiVersion": "batch/v1", "kind": "Job", "name": "job-a", "uid": created["metadata"]["uid"]}
    hook.own_dependents(owner, namespace=namespace, secret="job-a-credentials", config_map="job-a-spec")
    core = client.CoreV1Api(cluster.client())
    for obj in (core.read_namespaced_secret("job-a-credentials", namespace),
                core.read_namespaced_config_map("job-a-spec", namespace)):
        assert [(o.kind, o.name, o.uid) for o in obj.metadata.owner_references] == [("Job", "job-a", owner["uid"])]
    assert hook.read_job("job-a", namespace)["metadata"]["uid"] == owner["uid"]  # type: ignore[index]
    assert hook.read_config_map("job-a-spec", namespace) == {"job.json": "{}"}

    hook.delete_job("job-a", namespace, "Background")
    hook.delete_job("job-a", namespace)  # already gone: fine
    deletes = [r.data for r in cluster.requests("delete", "jobs") if r.namespace == namespace]
    assert deletes == [{"propagationPolicy": "Background"}, {"propagationPolicy": "Foreground"}]
    assert hook.read_job("job-a", namespace) is None
    with pytest.raises(ValueError, match="propagation"):
        hook.delete_job("job-a", namespace, "Cascade")


def test_a_secret_left_by_an_earlier_attempt_is_replaced(cluster, namespace):
    core = client.CoreV1Api(cluster.client())
    core.create_namespaced_secret(namespace, _secret("job-b-credentials", namespace, "stale"))
    _hook(cluster).create_or_replace_secret(_secret("job-b-credentials", namespace))
    data = core.read_namespaced_secret("job-b-credentials", namespace).data
    assert base64.b64decode(data["secrets.json"]).decode() == SECRET_VALUE
    assert [r.name for r in cluster.requests("delete", "secrets") if r.namespace == namespace] == ["job-b-credentials"]


def test_dependents_not_yet_owned_are_deleted_and_missing_ones_are_fine(cluster, namespace):
    hook = _hook(cluster)
    hook.create_or_replace_secret(_secret("job-c-credentials", namespace))
    hook.delete_dependents(secret="job-c-credentials", config_map="job-c-spec", namespace=namespace)
    assert client.CoreV1Api(cluster.client()).list_namespaced_secret(namespace).items == []


def test_the_pods_of_a_job_and_a_pods_log(cluster, namespace):
    core = client.CoreV1Api(cluster.client())
    core.create_namespaced_pod(namespace, _pod("job-d-0-abcde", namespace, "job-d"))
    core.create_namespaced_pod(namespace, _pod("other-0-abcde", namespace, "other"))
    cluster.logs["job-d-0-abcde"] = "starting\nBATCH_SCORING_ERROR {}\n"
    hook = _hook(cluster)
    pods = hook.list_job_pods("job-d", namespace)
    assert JOB_NAME_LABEL in pods[0]["metadata"]["labels"]  # the API's JSON, as status.assess judges it
    [request] = [r for r in cluster.requests("get", "pods") if r.namespace == namespace and not r.name]
    assert request.params.get("labelSelector") == f"{JOB_NAME_LABEL}=job-d"
    assert hook.tail_pod_log("job-d-0-abcde", namespace, "scoring") == "starting\nBATCH_SCORING_ERROR {}\n"


def test_a_refused_secret_names_the_permission_and_never_quotes_the_server(cluster, namespace):
    cluster.forbidden.add(("secrets", namespace))
    with pytest.raises(ConfigurationError) as err:
        _hook(cluster).create_or_replace_secret(_secret("job-e-credentials", namespace))
    message = str(err.value)
    assert message.startswith(f"The Kubernetes API refused to create the Secret in namespace {namespace!r} (403 ")
    assert "RBAC" not in message and SECRET_VALUE not in message  # quiet: the server's message is left out
    cluster.forbidden.add(("configmaps", namespace))
    with pytest.raises(ConfigurationError, match="refused to create the ConfigMap .*: configmaps is forbidden: RBAC"):
        _hook(cluster).create_or_replace_config_map(_config_map("job-e-spec", namespace))


def test_the_async_hook_reads_the_job_and_its_pods_and_deletes_the_job(cluster, namespace):
    hook = _hook(cluster)
    hook.submit_job(_job("job-f", namespace))
    client.CoreV1Api(cluster.client()).create_namespaced_pod(namespace, _pod("job-f-0-abcde", namespace, "job-f"))

    async def scenario() -> tuple:
        trigger_hook = _async_hook(cluster)
        job, pods = await trigger_hook.read_job_and_pods("job-f", namespace)
        await trigger_hook.delete_job("job-f", namespace)
        await trigger_hook.delete_job("job-f", namespace)  # already gone: fine
        return job, pods, await trigger_hook.read_job_and_pods("job-f", namespace)

    job, pods, after = asyncio.run(scenario())
    assert job["metadata"]["name"] == "job-f" and [p["metadata"]["name"] for p in pods] == ["job-f-0-abcde"]
    polled = [r.params for r in cluster.requests("get", "pods") if r.namespace == namespace and not r.name]
    assert polled and all(p.get("fieldSelector") == "status.phase=Pending" for p in polled)  # a poll: pending pods
    assert after == (None, [])
    assert [r.data for r in cluster.requests("delete", "jobs") if r.namespace == namespace] == [
        {"propagationPolicy": "Foreground"}, {"propagationPolicy": "Foreground"}]

