"""The Kubernetes runtime's settings and manifests: every object validated strictly against the official schemas of
the oldest supported and a current Kubernetes version, built by the same functions that send them."""

from __future__ import annotations

import base64
import json
import types

import kubernetes_validate
import pytest

from airflow_batch_scoring.errors import ConfigurationError
from airflow_batch_scoring.kubernetes import manifests
from airflow_batch_scoring.kubernetes.runtime import check_locations
from airflow_batch_scoring.kubernetes.settings import KubernetesSettings
from airflow_batch_scoring.specs import parse_data_spec
from tests.support.pod_security import restricted_violations

IMAGE = "registry.example.com/batch-scoring-runtime:0.1.0"
VERSIONS = ("1.29", "1.37")  # backoffLimitPerIndex is on by default from 1.29 (GA in 1.33)
AFFINITY = {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
    {"matchExpressions": [{"key": "node.kubernetes.io/instance-type", "operator": "In", "values": ["g5.xlarge"]}]}]}}}
FULL = {
    "image": IMAGE,
    "namespace": "scoring",
    "image_pull_policy": "IfNotPresent",
    "resources": {"requests": {"cpu": "1500m", "memory": "4Gi"},
                  "limits": {"cpu": 3, "memory": "4Gi", "nvidia.com/gpu": 1}},
    "node_selector": {"nvidia.com/gpu.present": "true"},
    "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"},
                    {"key": "spot", "operator": "Equal", "value": "yes", "effect": "NoExecute",
                     "tolerationSeconds": 300}],
    "affinity": AFFINITY,
    "service_account_name": "batch-scoring",
    "labels": {"team": "risk", "app.kubernetes.io/part-of": "churn"},
    "annotations": {"cost-center": "1234", "example.com/owner": "Risk analytics (risk@example.com)"},
    "image_pull_secrets": "regcred,other-registry",
    "env_vars": {"HTTPS_PROXY": "http://proxy:3128"},
    "active_deadline_seconds": "7200",
    "ttl_seconds_after_finished": 600,
    "backoff_limit": 2,
    "parallelism": 2,
}


@pytest.fixture
def kubeconfig(tmp_path) -> str:
    """A kubeconfig that is only loaded (nothing connects to it): building a Job asks the hook where it runs."""
    path = tmp_path / "kubeconfig"
    path.write_text("apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster: {server: 'http://127.0.0.1:9'}\n"
                    "contexts:\n- name: c\n  context: {cluster: c, user: u}\ncurrent-context: c\n"
                    "users:\n- name: u\n  user: {token: t}\n")
    return str(path)


def _context() -> dict:
    ti = types.SimpleNamespace(dag_id="score_customers", task_id="score", map_index=3, try_number=2,
                               run_id="scheduled__2026-11-21T00:00:00+00:00")
    return {"ti": ti, "run_id": ti.run_id, "dag": types.SimpleNamespace()}


def _build(settings: dict, kubeconfig: str, shards=(0, 1, 2), replicas: int = 3, finish_siblings: bool = False) -> dict:
    config = KubernetesSettings.parse({**settings, "config_file": kubeconfig})
    name = manifests.job_name("score_customers", "score", "scheduled__2026-11-21T00:00:00+00:00", 3)
    job = manifests.build_job(config, name=name, shards=list(shards), replicas=replicas, plan="sha256:abc",
                              context=_context(), task="score_customers.score[3]/scheduled__2026-11-21",
                              finish_siblings=finish_siblings)
    return manifests.api_dict(job)


def test_the_job_carries_every_setting_and_is_valid(kubeconfig):
    job = _build(FULL, kubeconfig)
    for version in VERSIONS:
        kubernetes_validate.validate(job, version, strict=True)
    spec = job["spec"]
    assert job["apiVersion"] == "batch/v1" and job["kind"] == "Job"
    assert job["metadata"]["namespace"] == "scoring" and job["metadata"]["name"].startswith("job-scoring-score-")
    assert spec["completionMode"] == "Indexed" and spec["completions"] == 3 and spec["parallelism"] == 2
    assert spec["backoffLimitPerIndex"] == 2 and spec["maxFailedIndexes"] == 0 and "backoffLimit" not in spec
    assert spec["activeDeadlineSeconds"] == 7200 and spec["ttlSecondsAfterFinished"] == 600
    assert spec["podFailurePolicy"]["rules"] == [
        {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}]},
        {"action": "FailJob", "onExitCodes": {"containerName": "scoring", "operator": "In", "values": [2]}},
    ]
    # while a retry will come, an index that fails for good does not stop the others (they finish their shards)
    retried = _build(FULL, kubeconfig, finish_siblings=True)
    for version in VERSIONS:
        kubernetes_validate.validate(retried, version, strict=True)
    assert "maxFailedIndexes" not in retried["spec"] and retried["spec"]["backoffLimitPerIndex"] == 2
    assert retried["spec"]["podFailurePolicy"] == spec["podFailurePolicy"]
    pod = spec["template"]["spec"]
    assert pod["restartPolicy"] == "Never" and pod["automountServiceAccountToken"] is False
    assert pod["serviceAccountName"] == "batch-scoring"
    assert pod["nodeSelector"] == {"nvidia.com/gpu.present": "true"} and pod["affinity"] == AFFINITY
    assert pod["tolerations"] == FULL["tolerations"]
    assert pod["imagePullSecrets"] == [{"name": "regcred"}, {"name": "other-registry"}]
    assert pod["volumes"] == [
        {"name": "scoring-job", "configMap": {"name": f"{job['metadata']['name']}-spec"}},
        {"name": "scoring-credentials", "secret": {"secretName": f"{job['metadata']['name']}-credentials",
                                                   "defaultMode": 0o444}},
        {"name": "scratch", "emptyDir": {}},
    ]
    [container] = pod["containers"]
    assert container["name"] == "scoring" and container["image"] == IMAGE
    assert container["imagePullPolicy"] == "IfNotPresent"
    assert container["command"] == ["python", "-m", "airflow_batch_scoring.runtime"]
    assert container["args"] == ["run-shard", "--job", "/var/run/airflow-batch-scoring/job/job.json",
                                 "--secrets-file", "/var/run/airflow-batch-scoring/secrets/secrets.json"]
    assert container["resources"] == {"requests": {"cpu": "1500m", "memory": "4Gi"},
                                      "limits": {"cpu": "3", "memory": "4Gi", "nvidia.com/gpu": "1"}}
    assert {e["name"]: e["value"] for e in container["env"]} == {
        "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "3", "MKL_NUM_THREADS": "3", "OPENBLAS_NUM_THREADS": "3",
        "HTTPS_PROXY": "http://proxy:3128", "TMPDIR": "/tmp", "HOME": "/tmp", "XDG_CACHE_HOME": "/tmp/.cache",
        "PYTHONDONTWRITEBYTECODE": "1"}
    assert container["terminationMessagePolicy"] == "FallbackToLogsOnError"
    assert [m["mountPath"] for m in container["volumeMounts"]] == [manifests.JOB_MOUNT, manifests.SECRETS_MOUNT,
                                                                   "/tmp"]
    labels = job["metadata"]["labels"]
    assert labels["team"] == "risk" and labels["app.kubernetes.io/managed-by"] == "airflow-batch-scoring"
    pod_labels = spec["template"]["metadata"]["labels"]
    assert pod_labels["dag_id"] == "score_customers" and pod_labels["map_index"] == "3" and pod_labels["team"] == "risk"
    annotations = job["metadata"]["annotations"]
    assert annotations["cost-center"] == "1234" and annotations[manifests.ANNOTATION_SHARDS] == "0,1,2"
    assert annotations[manifests.ANNOTATION_PLAN] == "sha256:abc"


def test_a_partial_rerun_maps_completion_indexes_to_its_shards(kubeconfig):
    job = _build({"image": IMAGE}, kubeconfig, shards=(1, 3), replicas=4)
    for version in VERSIONS:
        kubernetes_validate.validate(job, version, strict=True)
    assert job["spec"]["completions"] == 2 and job["spec"]["parallelism"] == 2
    assert job["spec"]["template"]["spec"]["containers"][0]["args"][-2:] == ["--shards", "1,3"]
    assert job["metadata"]["namespace"] == "default" and job["spec"]["backoffLimitPerIndex"] == 0


def test_config_map_and_secret_are_valid_and_only_the_secret_holds_credentials(kubeconfig):
    config = KubernetesSettings.parse({"image": IMAGE, "labels": {"team": "risk"}})
    secrets = {"source": {"key": "AKID", "secret": "very-secret-value"}, "sink": {"connection_string": "Key=abc=="}}
    secret = manifests.api_dict(manifests.build_secret(config, name="job-scoring-x-1", namespace="ns", secrets=secrets))
    config_map = manifests.api_dict(manifests.build_config_map(
        config, name="job-scoring-x-1", namespace="ns", job_json='{"job_id": "x"}', inputs_json="[]"))
    job = _build({"image": IMAGE}, kubeconfig)
    for obj in (secret, config_map):
        for version in VERSIONS:
            kubernetes_validate.validate(obj, version, strict=True)
    assert secret["type"] == "Opaque" and secret["immutable"] is True and config_map["immutable"] is True
    assert json.loads(base64.b64decode(secret["data"]["secrets.json"])) == secrets
    assert config_map["data"] == {"job.json": '{"job_id": "x"}', "inputs.json": "[]"}
    for text in (json.dumps(job), json.dumps(config_map), json.dumps(secret["metadata"])):
        assert "very-secret-value" not in text and "Key=abc==" not in text and "AKID" not in text


def test_a_plan_over_the_configmap_limit_is_refused(kubeconfig):
    config = KubernetesSettings.parse({"image": IMAGE})
    with pytest.raises(ConfigurationError, match="over the 1,000,000 bytes a Kubernetes ConfigMap holds"):
        manifests.build_config_map(config, name="job-x", namespace="ns", job_json="x" * 1_000_001, inputs_json="[]")


def test_job_names_are_stable_per_task_instance_and_valid():
    name = manifests.job_name("dag", "A very_long.Task-ID with spaces and more words than fit", "manual__1", -1)
    assert name == manifests.job_name("dag", "A very_long.Task-ID with spaces and more words than fit", "manual__1", -1)
    assert name != manifests.job_name("dag", "A very_long.Task-ID with spaces and more words than fit", "manual__2", -1)
    assert name != manifests.job_name("dag", "A very_long.Task-ID with spaces and more words than fit", "manual__1", 0)
    assert len(name) <= 52 and name.startswith("job-scoring-a-very-long-task-id")
    assert all(c.isalnum() and c.islower() or c.isdigit() or c == "-" for c in name)


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({}, "kubernetes['image'] is required with runtime='kubernetes'"),
        ({"image": IMAGE, "imagee": "x"}, "Unknown kubernetes setting(s) ['imagee']"),
        ({"image": IMAGE, "resources": {"limit": {"cpu": 1}}}, "Unknown key(s) ['limit'] in kubernetes['resources']"),
        ({"image": IMAGE, "resources": {"limits": {"memory": "4 GB"}}},
         "kubernetes['resources']['limits']['memory'] = '4 GB' is not a Kubernetes quantity"),
        ({"image": IMAGE, "resources": {"requests": {"nvidia.com/gpu": 1}}},
         "an extended resource such as a GPU must be set in 'limits'"),
        ({"image": IMAGE, "tolerations": [{"key": "a", "operator": "Is"}]},
         "kubernetes['tolerations'][0]['operator'] must be 'Exists' or 'Equal'"),
        ({"image": IMAGE, "tolerations": [{"key": "a", "tolerance": 1}]}, "Unknown key(s) ['tolerance']"),
        ({"image": IMAGE, "affinity": {"node_affinity": {}}}, "Unknown key(s) ['node_affinity'] in kubernetes"),
        ({"image": IMAGE, "labels": {"team": "risk & ops"}}, "is not a valid label value"),
        ({"image": IMAGE, "namespace": "Scoring_NS"}, "is not a valid namespace"),
        ({"image": IMAGE, "env_vars": {"JOB_COMPLETION_INDEX": "1"}}, "is set by the runtime itself"),
        ({"image": IMAGE, "backoff_limit": -1}, "kubernetes['backoff_limit'] must be a whole number >= 0"),
        ({"image": IMAGE, "parallelism": "all"}, "kubernetes['parallelism'] must be a whole number >= 1"),
        ({"image": IMAGE, "in_cluster": True, "config_file": "/k"}, "exclude each other"),
        ({"image": IMAGE, "on_finish_action": "delete_pod"}, "kubernetes['on_finish_action'] must be one of"),
        ({"image": IMAGE, "image_pull_policy": "always"}, "kubernetes['image_pull_policy'] must be one of"),
    ],
)
def test_settings_errors_say_what_is_wrong(settings, message):
    with pytest.raises(ConfigurationError) as err:
        KubernetesSettings.parse(settings)
    assert message in str(err.value)


def test_a_misspelt_affinity_field_is_refused_instead_of_dropped(kubeconfig):
    term = {"matchExpresions": [{"key": "zone", "operator": "In", "values": ["a"]}]}
    affinity = {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [term]}}}
    with pytest.raises(ConfigurationError, match="kubernetes\\['affinity'\\] has fields Kubernetes does not know"):
        _build({"image": IMAGE, "affinity": affinity}, kubeconfig)
    affinity = {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerm": []}}}
    with pytest.raises(ConfigurationError, match="cannot be turned into a Job: ValueError: Invalid value for"):
        _build({"image": IMAGE, "affinity": affinity}, kubeconfig)


def test_local_paths_are_refused_with_a_way_out():
    with pytest.raises(ConfigurationError) as err:
        check_locations(("source", parse_data_spec("s3://bucket/in/", "source")),
                        ("sink", parse_data_spec("file:///data/out/", "sink")))
    assert "runtime='kubernetes' needs the sink on an object store the pods can reach" in str(err.value)
    assert "'file:///data/out/' is a path on the Airflow worker" in str(err.value)
    check_locations(("source", parse_data_spec("gs://b/in/", "source")), ("sink", "abfs://c/out/"))


def test_operator_refuses_unknown_settings_and_runtimes_when_the_dag_is_parsed():
    from airflow_batch_scoring.operators import BatchScoringOperator

    with pytest.raises(ConfigurationError, match="Unknown kubernetes setting\\(s\\) \\['namespce'\\]"):
        BatchScoringOperator(task_id="t", model="m", source="s3://b/in/", sink="s3://b/out/", runtime="kubernetes",
                             kubernetes={"image": IMAGE, "namespce": "x"})
    with pytest.raises(ConfigurationError, match="runtime must be one of \\('local', 'kubernetes'\\)"):
        BatchScoringOperator(task_id="t", model="m", source="s3://b/in/", sink="s3://b/out/", runtime="k8s")
    operator = BatchScoringOperator(task_id="t", model="m", source="s3://b/in/", sink="s3://b/out/",
                                    runtime="kubernetes", kubernetes="{{ params.kubernetes }}")
    assert "kubernetes" in operator.template_fields


def test_threads_follow_the_cpu_limit_else_the_request():
    assert KubernetesSettings.parse({"image": IMAGE, "resources": {"limits": {"cpu": "2500m"}}}).threads() == 3
    assert KubernetesSettings.parse({"image": IMAGE, "resources": {"requests": {"cpu": "0.5"}}}).threads() == 1
    assert KubernetesSettings.parse({"image": IMAGE}).threads() == 2  # the default CPU limit
    assert KubernetesSettings.parse({"image": IMAGE, "resources": {"limits": {"cpu": None}}}).threads() == 1


def _pod(job: dict) -> dict:
    return job["spec"]["template"]


def test_the_default_pod_passes_the_restricted_pod_security_standard(kubeconfig):
    job = _build({"image": IMAGE}, kubeconfig)
    for version in VERSIONS:
        kubernetes_validate.validate(job, version, strict=True)
    assert restricted_violations(_pod(job)) == []
    spec = _pod(job)["spec"]
    assert spec["securityContext"] == {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}}
    [container] = spec["containers"]
    assert container["securityContext"] == {
        "allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}, "readOnlyRootFilesystem": True,
        "runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}}
    # the root filesystem is read-only: every write goes to the scratch emptyDir
    env = {e["name"]: e["value"] for e in container["env"]}
    assert env["TMPDIR"] == env["HOME"] == "/tmp" and {"mountPath": "/tmp", "name": "scratch"} in (
        container["volumeMounts"])
    # bounded by default (requests and limits for CPU and memory)
    assert container["resources"] == {"requests": {"cpu": "1", "memory": "2Gi"},
                                      "limits": {"cpu": "2", "memory": "4Gi"}}
    # and every setting together still passes
    assert restricted_violations(_pod(_build(FULL, kubeconfig))) == []


def test_the_restricted_checks_catch_what_the_profile_refuses(kubeconfig):
    """The checks are not vacuous: a pod without the defaults, or with one of them removed, is refused."""
    bare = {"spec": {"containers": [{"name": "scoring", "image": IMAGE}], "volumes": [
        {"name": "data", "hostPath": {"path": "/var/data"}}]}}
    found = restricted_violations(bare)
    assert any("allowPrivilegeEscalation must be false" in f for f in found)
    assert any("runAsNonRoot must be true" in f for f in found)
    assert any("seccompProfile.type must be RuntimeDefault" in f for f in found)
    assert any("capabilities.drop must include ALL" in f for f in found)
    assert any("is a hostPath" in f for f in found)
    weakened = _build({"image": IMAGE, "security_context": {"runAsNonRoot": None},
                       "container_security_context": {"runAsNonRoot": None, "capabilities": {"add": ["SYS_ADMIN"]}}},
                      kubeconfig)
    assert restricted_violations(_pod(weakened)) == [
        "containers[scoring] adds capabilities ['SYS_ADMIN']",
        "containers[scoring]: runAsNonRoot must be true (in the container, or in the pod and not unset here)",
        "containers[scoring].securityContext.capabilities.drop must include ALL",
        "containers[scoring] may add only NET_BIND_SERVICE",
    ]


def test_security_context_and_resources_can_be_overridden(kubeconfig):
    job = _build({"image": IMAGE, "security_context": {"runAsUser": 2000, "runAsGroup": 2000, "fsGroup": 2000},
                  "container_security_context": {"readOnlyRootFilesystem": None},
                  "resources": {"requests": {"memory": "8Gi"}, "limits": {"cpu": None}}}, kubeconfig)
    for version in VERSIONS:
        kubernetes_validate.validate(job, version, strict=True)
    spec = _pod(job)["spec"]
    assert spec["securityContext"] == {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"},
                                       "runAsUser": 2000, "runAsGroup": 2000, "fsGroup": 2000}
    [container] = spec["containers"]
    assert "readOnlyRootFilesystem" not in container["securityContext"]
    assert restricted_violations(_pod(job)) == []  # still restricted: read-only root is not part of the profile
    # a request given alone is also the limit (bounded); a limit set to None is removed; CPU keeps its request
    assert container["resources"] == {"requests": {"memory": "8Gi", "cpu": "1"}, "limits": {"memory": "8Gi"}}
    with pytest.raises(ConfigurationError, match=r"Unknown field\(s\) \['runAsNonroot'\] in "
                                                 r"kubernetes\['container_security_context'\]"):
        KubernetesSettings.parse({"image": IMAGE, "container_security_context": {"runAsNonroot": True}})
