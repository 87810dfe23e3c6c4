"""The Kubernetes runtime's API interaction against an HTTP Kubernetes emulator (kmock): create, wait, read logs,
failure reasons, delete on kill, reattach and partial re-run on retry, RBAC refusals, and the trigger.

The pods here play scripted outcomes (see tests/kube_cluster.py); tests/test_kubernetes_run.py runs the pods' own
command against a real S3 server.
"""

from __future__ import annotations

import asyncio
import base64
import json
import types
import uuid
from pathlib import Path

import kubernetes_validate
import pytest
from kubernetes import client

from airflow_batch_scoring.errors import (
    ConfigurationError,
    InputError,
    ReplicaError,
    SchemaError,
    StorageError,
    is_retryable,
)
from airflow_batch_scoring.job import ModelSpec, Piece, ScoringJob
from airflow_batch_scoring.kubernetes import manifests, status
from airflow_batch_scoring.kubernetes.launcher import KubernetesLauncher
from airflow_batch_scoring.kubernetes.settings import KubernetesSettings
from airflow_batch_scoring.specs import FileSpec
from tests.support.kube_cluster import TEST_AGENT, FakeCluster, Kubelet, Outcome
from tests.support.waiting import wait_for

ROOT = Path(__file__).resolve().parents[2]
IMAGE = "registry.example.com/batch-scoring-runtime:0.1.0"
SECRETS = {"source": {"key": "AKIDEXAMPLE", "secret": "s3cr3t-Value-that-must-not-leak"},
           "sink": {"key": "AKIDEXAMPLE", "secret": "s3cr3t-Value-that-must-not-leak"}}
VERSIONS = ("1.29", "1.37")


@pytest.fixture
def namespace() -> str:
    return f"scoring-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def kubelet(cluster: FakeCluster, namespace: str, tmp_path: Path):
    player = Kubelet(cluster, tmp_path, namespace)
    yield player
    player.stop()


def _context(run: str = "manual__2026-01-01") -> dict:
    ti = types.SimpleNamespace(dag_id="dag", task_id="score", map_index=-1, try_number=1, run_id=run)
    return {"ti": ti, "run_id": run, "dag": types.SimpleNamespace()}


def _job_file(folder: Path, replicas: int) -> str:
    staging = "s3://scoring/out/_temporary/job-1"
    job = ScoringJob(
        job_id="job-1",
        model=ModelSpec(uri="models:/churn/3", path=f"{staging}/_model/model.joblib", flavor="sklearn",
                        digest="sha256:" + "0" * 64),
        source=FileSpec(uri="s3://scoring/in/", format="csv"),
        sink=FileSpec(uri="s3://scoring/out/", format="csv"),
        staging_uri=staging,
        shards=tuple((Piece(path=f"s3://scoring/in/{i}.csv"),) for i in range(replicas)),
    )
    path = folder / "job.json"
    path.write_text(job.to_json())
    return str(path)


def _launcher(cluster: FakeCluster, namespace: str, lines: list[str] | None = None, **settings) -> KubernetesLauncher:
    config = KubernetesSettings.parse({"image": IMAGE, "namespace": namespace, "config_file": str(cluster.kubeconfig),
                                       **settings}, poll_interval=0.05)
    log = lines.append if lines is not None else (lambda line: None)
    name = manifests.job_name("dag", "score", "manual__2026-01-01", -1)
    return KubernetesLauncher(config, name=name, context=_context(), task="dag.score/manual", log=log)


def _jobs(cluster: FakeCluster, namespace: str) -> list:
    return client.BatchV1Api(cluster.client()).list_namespaced_job(namespace).items


def _deletes(cluster: FakeCluster, namespace: str) -> list[dict]:
    return [r.data or {} for r in cluster.requests("delete", "jobs") if r.namespace == namespace]


def test_oom_names_the_index_and_the_memory_limit(cluster, namespace, kubelet, tmp_path):
    kubelet.script.update({0: Outcome("ok"), 1: Outcome("oom"), 2: Outcome("ok")})
    launcher = _launcher(cluster, namespace, resources={"limits": {"memory": "256Mi"}})
    with pytest.raises(ReplicaError) as err:
        launcher.run(_job_file(tmp_path, 3), 3, secrets=SECRETS)
    message = str(err.value)
    assert f"Kubernetes Job {namespace}/{launcher.name} failed" in message
    assert "index 1 (shard 1)" in message and "OOMKilled" in message and "memory limit of 256Mi" in message
    assert "index 0" not in message and "index 2" not in message
    assert [j.metadata.name for j in _jobs(cluster, namespace)] == [launcher.name]  # a failed Job is kept


def test_polls_list_only_pending_pods_and_the_failures_read_them_all(cluster, namespace, kubelet, tmp_path):
    """A poll of a 1,000-index Job reads its pending pods, not all 1,000 (benchmarks/bench_scale_out.py); judging the
    failed Job reads every pod, once. (The emulator filters nothing: the request's selector is what is checked.)"""
    kubelet.script.update({0: Outcome("ok"), 1: Outcome("exit", code=1, log="boom")})
    launcher = _launcher(cluster, namespace)
    with pytest.raises(ReplicaError, match="index 1"):
        launcher.run(_job_file(tmp_path, 2), 2, secrets=SECRETS)
    lists = [r for r in cluster.requests("get", "pods") if r.namespace == namespace and not r.name
             and r.headers.get("User-Agent") != TEST_AGENT]
    selectors = [r.params.get("fieldSelector") for r in lists]
    assert selectors[-1] is None and selectors.count(None) == 1, selectors  # the failures: every pod, once, last
    assert selectors[:-1] and set(selectors[:-1]) == {"status.phase=Pending"}, selectors


def test_image_pull_failure_names_the_image_and_deletes_the_job(cluster, namespace, kubelet, tmp_path):
    kubelet.script.update({0: Outcome("image"), 1: Outcome("ok")})
    launcher = _launcher(cluster, namespace, image="registry.example.com/no-such-image:9.9")
    with pytest.raises(ReplicaError) as err:
        launcher.run(_job_file(tmp_path, 2), 2, secrets=SECRETS)
    message = str(err.value)
    assert "cannot pull the image 'registry.example.com/no-such-image:9.9' (ImagePullBackOff" in message
    assert "kubernetes['image_pull_secrets']" in message
    assert _deletes(cluster, namespace) == [{"propagationPolicy": "Foreground"}]  # it would never end by itself
    assert _jobs(cluster, namespace) == []


def test_non_zero_exit_shows_the_tail_of_the_pods_log(cluster, namespace, kubelet, tmp_path):
    log = "\n".join(f"line {i}" for i in range(1, 41)) + "\nMemoryError: cannot allocate\n"
    kubelet.script.update({0: Outcome("ok"), 1: Outcome("exit", code=1, log=log)})
    launcher = _launcher(cluster, namespace, backoff_limit=1)
    with pytest.raises(ReplicaError) as err:
        launcher.run(_job_file(tmp_path, 2), 2, secrets=SECRETS)
    message = str(err.value)
    assert "index 1 (shard 1)" in message and "exited with code 1. Its last log lines:" in message
    assert "line 40\nMemoryError: cannot allocate" in message and "line 20\n" not in message
    pods = client.CoreV1Api(cluster.client()).list_namespaced_pod(namespace).items
    index1 = [p for p in pods if p.metadata.annotations[status.INDEX_KEY] == "1"]
    assert len(index1) == 2  # backoff_limit=1: index 1 was retried once inside the Job


def test_a_replicas_own_error_keeps_its_class_and_is_not_retried(cluster, namespace, kubelet, tmp_path):
    error = {"type": "InputError", "message": "file s3://scoring/in/0.csv, line 3, column 'f2': value 'x' cannot be "
                                              "read as Float64 (double)", "retryable": False}
    log = "starting\nBATCH_SCORING_ERROR " + json.dumps(error) + "\n"
    kubelet.script.update({0: Outcome("exit", code=2, log=log)})
    launcher = _launcher(cluster, namespace, backoff_limit=3)
    with pytest.raises(InputError) as err:
        launcher.run(_job_file(tmp_path, 1), 1, secrets=SECRETS)
    assert str(err.value).startswith("file s3://scoring/in/0.csv, line 3, column 'f2': value 'x' cannot be read")
    assert f"[Kubernetes Job {namespace}/{launcher.name}, index 0 (shard 0), pod " in str(err.value)
    pods = client.CoreV1Api(cluster.client()).list_namespaced_pod(namespace).items
    assert len(pods) == 1  # exit code 2 fails the index at once (pod failure policy), despite backoff_limit=3
    assert not is_retryable(err.value)  # nor does the operator retry it (AirflowFailException)


def test_a_store_outage_in_a_pod_stays_retryable(cluster, namespace, kubelet, tmp_path):
    error = {"type": "StorageError", "message": "a store could not be reached while the replica read or wrote",
             "retryable": True}
    log = "starting\nBATCH_SCORING_ERROR " + json.dumps(error) + "\n"
    kubelet.script.update({0: Outcome("exit", code=1, log=log)})
    launcher = _launcher(cluster, namespace, backoff_limit=1)
    with pytest.raises(StorageError) as err:
        launcher.run(_job_file(tmp_path, 1), 1, secrets=SECRETS)
    assert is_retryable(err.value) and "could not be reached" in str(err.value)
    pods = client.CoreV1Api(cluster.client()).list_namespaced_pod(namespace).items
    assert len(pods) == 2  # exit code 1: the index was retried inside the Job (backoff_limit=1)


def test_a_user_error_in_one_index_decides_over_a_lost_one(cluster, namespace, kubelet, tmp_path):
    lost = {"type": "ReplicaError", "message": "MemoryError", "retryable": True}
    bad = {"type": "SchemaError", "message": "column 'f2' is missing", "retryable": False}
    kubelet.script.update({0: Outcome("exit", code=1, log="BATCH_SCORING_ERROR " + json.dumps(lost) + "\n"),
                           1: Outcome("exit", code=2, log="BATCH_SCORING_ERROR " + json.dumps(bad) + "\n")})
    launcher = _launcher(cluster, namespace)
    with pytest.raises(SchemaError) as err:
        launcher.run(_job_file(tmp_path, 2), 2, secrets=SECRETS)
    assert not is_retryable(err.value)  # a retry would meet the same missing column
    assert "column 'f2' is missing" in str(err.value) and "MemoryError" in str(err.value)


def test_kill_deletes_the_job_with_foreground_propagation(cluster, namespace, kubelet, tmp_path):
    kubelet.script.update({0: Outcome("hang"), 1: Outcome("hang")})
    lines: list[str] = []
    launcher = _launcher(cluster, namespace, lines)
    reference = launcher.start(_job_file(tmp_path, 2), 2, secrets=SECRETS)
    assert reference == {"name": launcher.name, "namespace": namespace, "shards": [0, 1]}
    wait_for(lambda: len(client.CoreV1Api(cluster.client()).list_namespaced_pod(namespace).items) == 2)
    launcher.kill()
    assert _deletes(cluster, namespace) == [{"propagationPolicy": "Foreground"}]
    assert _jobs(cluster, namespace) == []
    assert f"Deleting Job {namespace}/{launcher.name} (foreground propagation)" in lines


def test_a_retry_reattaches_to_the_running_job(cluster, namespace, kubelet, tmp_path):
    kubelet.script.update({0: Outcome("hang"), 1: Outcome("hang")})
    job_path = _job_file(tmp_path, 2)
    first = _launcher(cluster, namespace)
    first.start(job_path, 2, secrets=SECRETS)
    lines: list[str] = []
    retry = _launcher(cluster, namespace, lines)  # a new attempt of the same task instance: the same Job name
    assert retry.start(job_path, 2, secrets=SECRETS, shards=[1]) == first.reference()
    assert len([r for r in cluster.requests("post", "jobs") if r.namespace == namespace]) == 1
    assert any(line.startswith(f"Reattaching to Job {namespace}/{first.name}") for line in lines)
    retry.kill()


def test_a_retry_after_a_failure_reruns_only_the_missing_shards(cluster, namespace, kubelet, tmp_path):
    kubelet.script.update({0: Outcome("ok"), 1: Outcome("exit", code=1, log="boom"), 2: Outcome("ok"),
                           3: Outcome("exit", code=1, log="boom")})
    job_path = _job_file(tmp_path, 4)
    with pytest.raises(ReplicaError):
        _launcher(cluster, namespace).run(job_path, 4, secrets=SECRETS)
    kubelet.script.clear()
    kubelet.script.update({0: Outcome("ok"), 1: Outcome("ok")})
    lines: list[str] = []
    retry = _launcher(cluster, namespace, lines)
    retry.run(job_path, 4, secrets=SECRETS, shards=[1, 3])  # the driver found reports of shards 0 and 2
    created = [r.data for r in cluster.requests("post", "jobs") if r.namespace == namespace]
    assert len(created) == 2
    second = created[1]["spec"]
    assert second["completions"] == 2 and second["parallelism"] == 2
    assert second["template"]["spec"]["containers"][0]["args"][-2:] == ["--shards", "1,3"]
    assert created[1]["metadata"]["annotations"][manifests.ANNOTATION_SHARDS] == "1,3"
    assert f"Deleting the earlier attempt's Job {namespace}/{retry.name} before starting a new one" in lines
    # the failed Job went first (foreground), the succeeded one after the run (background)
    assert _deletes(cluster, namespace) == [{"propagationPolicy": "Foreground"}, {"propagationPolicy": "Background"}]


def test_secret_configmap_and_job_are_valid_and_only_the_secret_holds_credentials(cluster, namespace, kubelet,
                                                                                   tmp_path):
    kubelet.script.update({0: Outcome("ok"), 1: Outcome("ok")})
    lines: list[str] = []
    launcher = _launcher(cluster, namespace, lines, on_finish_action="keep_job")
    launcher.run(_job_file(tmp_path, 2), 2, secrets=SECRETS)
    sent = {kind: [b for b in cluster.created(kind) if b["metadata"].get("namespace") == namespace]
            for kind in ("jobs", "secrets", "configmaps")}
    assert [len(sent[k]) for k in sent] == [1, 1, 1]
    for bodies in sent.values():
        for version in VERSIONS:
            kubernetes_validate.validate(bodies[0], version, strict=True)
    job, secret, config_map = sent["jobs"][0], sent["secrets"][0], sent["configmaps"][0]
    assert json.loads(base64.b64decode(secret["data"][manifests.SECRETS_KEY])) == SECRETS
    secret_value = SECRETS["sink"]["secret"]
    outside = [json.dumps(job), json.dumps(config_map), json.dumps({k: v for k, v in secret.items() if k != "data"}),
               "\n".join(lines)]
    assert all(secret_value not in text and "AKIDEXAMPLE" not in text for text in outside)
    assert secret_value.encode() not in b"".join(base64.b64encode(t.encode()) for t in outside)
    # the Secret and the ConfigMap are owned by the Job, so that they are deleted with it
    core = client.CoreV1Api(cluster.client())
    uid = _jobs(cluster, namespace)[0].metadata.uid
    for obj in (core.read_namespaced_secret(secret["metadata"]["name"], namespace),
                core.read_namespaced_config_map(config_map["metadata"]["name"], namespace)):
        assert [(o.kind, o.name, o.uid) for o in obj.metadata.owner_references] == [("Job", launcher.name, uid)]
    assert json.loads(config_map["data"][manifests.JOB_KEY])["staging_uri"] == "s3://scoring/out/_temporary/job-1"
    # the pods read the job and the credentials from the mounted files
    container = job["spec"]["template"]["spec"]["containers"][0]
    assert container["command"] == ["python", "-m", "airflow_batch_scoring.runtime"]
    assert container["args"] == ["run-shard", "--job", f"{manifests.JOB_MOUNT}/job.json", "--secrets-file",
                                 f"{manifests.SECRETS_MOUNT}/secrets.json"]
    assert "Job" in lines[0] and any(line.startswith(f"Job {launcher.name} complete: 2/2") for line in lines)


def test_rbac_refusal_says_which_permission_is_missing(cluster, namespace, tmp_path):
    cluster.forbidden.add(("secrets", namespace))
    launcher = _launcher(cluster, namespace)
    with pytest.raises(ConfigurationError) as err:
        launcher.start(_job_file(tmp_path, 1), 1, secrets=SECRETS)
    message = str(err.value)
    assert f"The Kubernetes API refused to create the Secret in namespace {namespace!r} (403 Forbidden)" in message
    assert "Role in README 'Kubernetes runtime'" in message
    assert SECRETS["sink"]["secret"] not in message and _jobs(cluster, namespace) == []


def _trigger_events(cluster: FakeCluster, namespace: str, name: str, grace: float = 0) -> dict:
    from airflow_batch_scoring.triggers.kubernetes import ScoringJobTrigger

    trigger = ScoringJobTrigger(name=name, namespace=namespace, container=manifests.CONTAINER,
                                config_file=str(cluster.kubeconfig), kubernetes_conn_id=None, poll_interval=0.05,
                                grace_period_seconds=grace)
    classpath, kwargs = trigger.serialize()
    assert classpath == "airflow_batch_scoring.triggers.kubernetes.ScoringJobTrigger"
    trigger = ScoringJobTrigger(**kwargs)

    async def first() -> dict:
        async for event in trigger.run():
            return event.payload
        return {}

    return asyncio.run(asyncio.wait_for(first(), 60))


def test_trigger_fires_when_the_job_completes_or_cannot_pull_its_image(cluster, namespace, kubelet, tmp_path):
    kubelet.script.update({0: Outcome("ok"), 1: Outcome("ok")})
    launcher = _launcher(cluster, namespace, on_finish_action="keep_job")
    launcher.start(_job_file(tmp_path, 2), 2, secrets=SECRETS)
    event = _trigger_events(cluster, namespace, launcher.name)
    assert event["status"] == "succeeded" and event["summary"].startswith(f"Job {launcher.name} complete: 2/2")
    job, inputs = launcher.read_spec()  # what execute_complete does: the job the pods ran, then judge the Job
    assert (job.job_id, job.replicas, inputs) == ("job-1", 2, [])
    launcher.collect()

    launcher._delete_and_wait()
    kubelet.script.update({0: Outcome("image"), 1: Outcome("ok")})
    launcher.start(_job_file(tmp_path, 2), 2, secrets=SECRETS)
    event = _trigger_events(cluster, namespace, launcher.name)
    assert event["status"] == "failed" and "cannot pull its image (ImagePullBackOff)" in event["summary"]
    with pytest.raises(ReplicaError, match="cannot pull the image"):
        launcher.collect()


def test_a_failed_index_lets_the_others_run_for_the_grace_period_then_the_job_is_deleted(
    cluster, namespace, kubelet, tmp_path
):
    """While a retry will come, an OOM-killed index does not stop a sibling (no maxFailedIndexes); a sibling that does
    not finish within ``grace_period_seconds`` is stopped by deleting the Job, on the worker and in the trigger."""
    kubelet.script.update({0: Outcome("oom"), 1: Outcome("hang")})
    lines: list[str] = []
    launcher = _launcher(cluster, namespace, lines, grace_period_seconds=1)
    launcher.finish_siblings = True
    with pytest.raises(ReplicaError, match=r"index 0 \(shard 0\), pod .*: OOMKilled") as err:
        launcher.run(_job_file(tmp_path, 2), 2, secrets=SECRETS)
    assert is_retryable(err.value) and "index(es) [0] failed" in str(err.value)
    assert any("Index(es) [0] failed; the task will be retried, so the other indexes may finish" in line
               for line in lines)
    assert any("the 1s grace period (kubernetes['grace_period_seconds']) has passed" in line for line in lines)
    assert _deletes(cluster, namespace)[-1] == {"propagationPolicy": "Foreground"} and _jobs(cluster, namespace) == []
    assert "maxFailedIndexes" not in cluster.created("jobs")[-1]["spec"]

    launcher = _launcher(cluster, namespace, grace_period_seconds=1)
    launcher.finish_siblings = True
    launcher.start(_job_file(tmp_path, 2), 2, secrets=SECRETS)
    event = _trigger_events(cluster, namespace, launcher.name, grace=1)
    assert event["status"] == "failed" and "index(es) [0] failed" in event["summary"]
    with pytest.raises(ReplicaError, match="OOMKilled"):
        launcher.collect()  # what execute_complete does: say why, and stop the sibling still running
    assert _jobs(cluster, namespace) == []


def test_on_the_last_try_a_failed_index_stops_the_job_at_once(cluster, namespace, kubelet, tmp_path):
    kubelet.script.update({0: Outcome("oom"), 1: Outcome("hang")})
    launcher = _launcher(cluster, namespace, grace_period_seconds=3600)  # finish_siblings is False: no retry comes
    with pytest.raises(ReplicaError, match="OOMKilled"):
        launcher.run(_job_file(tmp_path, 2), 2, secrets=SECRETS)
    assert cluster.created("jobs")[-1]["spec"]["maxFailedIndexes"] == 0


def test_trigger_on_kill_deletes_the_job(cluster, namespace, kubelet, tmp_path):
    from airflow_batch_scoring.triggers.kubernetes import ScoringJobTrigger

    kubelet.script.update({0: Outcome("hang")})
    launcher = _launcher(cluster, namespace)
    launcher.start(_job_file(tmp_path, 1), 1, secrets=SECRETS)
    trigger = ScoringJobTrigger(name=launcher.name, namespace=namespace, container=manifests.CONTAINER,
                                config_file=str(cluster.kubeconfig), kubernetes_conn_id=None)
    asyncio.run(trigger.on_kill())
    assert _deletes(cluster, namespace) == [{"propagationPolicy": "Foreground"}]
    assert _trigger_events(cluster, namespace, launcher.name)["status"] == "deleted"


def test_the_documented_role_allows_every_call_and_no_more(cluster):
    """runtime_image/rbac.yaml (the README's Role) is valid and grants exactly the calls this module's runs made."""
    import yaml

    documents = list(yaml.safe_load_all((ROOT / "runtime_image" / "rbac.yaml").read_text()))
    for document in documents:
        kubernetes_validate.validate(document, VERSIONS[-1], strict=True)
    [role] = [d for d in documents if d["kind"] == "Role"]
    granted = {(group, resource, verb) for rule in role["rules"] for group in rule["apiGroups"]
               for resource in rule["resources"] for verb in rule["verbs"]}
    used = cluster.rbac_uses()
    assert used, "run the whole module: this test checks the calls of the tests before it"
    assert used <= granted, f"the Role lacks {sorted(used - granted)}"
    assert granted <= used, f"the Role grants more than needed: {sorted(granted - used)}"
