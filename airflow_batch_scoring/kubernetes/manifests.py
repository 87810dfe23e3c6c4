"""The Kubernetes objects of one scoring run, built exactly as they are sent.

- the **Job**: built by the cncf-kubernetes provider's ``KubernetesJobOperator.build_job_request_obj`` (so Airflow's
  pod labels, cluster policies and the connection's namespace apply as for any Kubernetes task), then made an Indexed
  Job with ``completions`` = the shards to score, ``backoffLimitPerIndex`` and a pod failure policy (a user error,
  exit code 2, fails the whole Job at once: ``FailJob`` stops every pod; a pod evicted or preempted does not count as
  a failure). While Airflow will retry the task, ``maxFailedIndexes`` is left unset: an index that fails for another
  reason (a killed pod, OOM, a store outage) does not stop the others, which finish their shards for the retry to
  reuse (the launcher bounds the wait by ``kubernetes['grace_period_seconds']``). On the last try it is ``0``: the
  first index that fails for good stops the Job;
- the **ConfigMap**: the ScoringJob JSON every pod reads (and the input listing, for the commit);
- the **Secret**: the storage credentials, the same mapping a local replica reads on its standard input. It is the
  only object that holds a secret; the pods mount it as a file, never as environment variables.

The ConfigMap and the Secret get an ``ownerReference`` to the Job, so deleting the Job deletes them.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import asdict
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

from airflow_batch_scoring.errors import ConfigurationError
from airflow_batch_scoring.job import ScoringJob
from airflow_batch_scoring.kubernetes.settings import KubernetesSettings

if TYPE_CHECKING:
    from kubernetes.client import models as k8s

CONTAINER = "scoring"
MOUNT_ROOT = "/var/run/airflow-batch-scoring"
JOB_MOUNT = f"{MOUNT_ROOT}/job"
SECRETS_MOUNT = f"{MOUNT_ROOT}/secrets"
#: the scratch emptyDir (the root filesystem is read-only): temporary files, the staged model, caches.
SCRATCH_MOUNT = "/tmp"
JOB_KEY = "job.json"
INPUTS_KEY = "inputs.json"
SECRETS_KEY = "secrets.json"
COMMAND = ["python", "-m", "airflow_batch_scoring.runtime"]
#: The provider's KubernetesJobOperator prefixes every Job name with this.
JOB_PREFIX = "job-"
MANAGED_BY = "airflow-batch-scoring"
LABEL_MANAGED_BY = "app.kubernetes.io/managed-by"
LABEL_RUN = "airflow-batch-scoring/run"
ANNOTATION_PLAN = "airflow-batch-scoring/plan"
ANNOTATION_SHARDS = "airflow-batch-scoring/shards"
ANNOTATION_TASK = "airflow-batch-scoring/task"
#: Kubernetes refuses ConfigMaps over 1 MiB; keep a margin for the metadata.
CONFIGMAP_LIMIT = 1_000_000
_MAX_JOB_NAME = 52  # pods are named <job>-<index>-<5 chars>, and their hostname <job>-<index> must stay within 63


def job_name(dag_id: str, task_id: str, run_id: str, map_index: int | None, kind: str = "scoring") -> str:
    """The Job's name: the same for every attempt of one task instance (so that a retry finds it), unique per
    (DAG, task, map index, run), a valid DNS label; ``kind`` (``"scoring"``, ``"training"``) names the job type."""
    key = "\0".join([dag_id, task_id, str(map_index if map_index is not None else -1), run_id])
    digest = hashlib.sha256(key.encode()).hexdigest()[:10]
    slug = re.sub(r"[^a-z0-9]+", "-", task_id.lower()).strip("-") or "task"
    room = _MAX_JOB_NAME - len(JOB_PREFIX) - len(f"{kind}--") - len(digest)
    return f"{JOB_PREFIX}{kind}-{slug[:room].strip('-')}-{digest}"


def config_map_name(name: str) -> str:
    return f"{name}-spec"


def secret_name(name: str) -> str:
    return f"{name}-credentials"


def plan_digest(job: ScoringJob, inputs: list[dict[str, Any]] | None = None) -> str:
    """Everything that decides what the pods write: the job (the attempt and the model's location left out) and the
    input listing (names, sizes, versions). Two attempts of a run with the same digest can share a running Job."""
    document = asdict(job)
    document.pop("attempt", None)
    document["model"] = {k: v for k, v in document["model"].items() if k != "path"}
    document["inputs"] = list(inputs or [])
    return "sha256:" + hashlib.sha256(json.dumps(document, sort_keys=True, default=str).encode()).hexdigest()


def shard_list(text: str | None) -> list[int]:
    return [int(part) for part in (text or "").split(",") if part.strip()]


def pod_arguments(shards: list[int], replicas: int) -> list[str]:
    """The runtime command line's arguments: the job and secrets files (mounted), and the shards when not all."""
    args = ["run-shard", "--job", f"{JOB_MOUNT}/{JOB_KEY}", "--secrets-file", f"{SECRETS_MOUNT}/{SECRETS_KEY}"]
    if shards != list(range(replicas)):
        args += ["--shards", ",".join(str(s) for s in shards)]
    return args


def training_arguments() -> list[str]:
    """The runtime command line's arguments in a training Job's pod: the TrainingJob and the secrets file (mounted)."""
    return ["train", "--job", f"{JOB_MOUNT}/{JOB_KEY}", "--secrets-file", f"{SECRETS_MOUNT}/{SECRETS_KEY}"]


def _labels(settings: KubernetesSettings, name: str) -> dict[str, str]:
    return {**settings.labels, LABEL_MANAGED_BY: MANAGED_BY, LABEL_RUN: name}


def build_job(
    settings: KubernetesSettings,
    *,
    name: str,
    shards: list[int],
    replicas: int,
    plan: str,
    context: Any,
    task: str,
    finish_siblings: bool = False,
    arguments: list[str] | None = None,
) -> k8s.V1Job:
    """Build the Indexed Job through the cncf-kubernetes provider.

    :param name: the Job's name (from :func:`job_name`).
    :param shards: the shard each completion index scores (all of them, or those a retry re-runs).
    :param plan: :func:`plan_digest` of the job the pods run.
    :param context: the Airflow task context (the provider labels the pods with the task instance).
    :param task: ``dag.task[map index]/run``, recorded as an annotation.
    :param finish_siblings: the task will be retried: an index failing for a reason a retry can change does not stop
        the other indexes (no ``maxFailedIndexes``); otherwise ``maxFailedIndexes: 0`` stops the Job at once.
    :param arguments: the runtime command's arguments (default: :func:`pod_arguments`, scoring ``shards``; a
        training Job passes :func:`training_arguments`).
    :raises ConfigurationError: when the provider refuses a setting (a malformed affinity or toleration).
    """
    from airflow.providers.cncf.kubernetes.operators.job import KubernetesJobOperator
    from kubernetes.client import models as k8s

    if not name.startswith(JOB_PREFIX):
        raise ValueError(f"Job names start with {JOB_PREFIX!r}: {name!r}")
    # The root filesystem is read-only (DEFAULT_CONTAINER_SECURITY_CONTEXT): everything written goes to the scratch
    # emptyDir (tempfile, the staged model, library caches).
    env = {"PYTHONUNBUFFERED": "1", "TMPDIR": SCRATCH_MOUNT, "HOME": SCRATCH_MOUNT,
           "XDG_CACHE_HOME": f"{SCRATCH_MOUNT}/.cache", "PYTHONDONTWRITEBYTECODE": "1"}
    threads = settings.threads()
    if threads:
        env.update({v: str(threads) for v in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")})
    env.update(settings.env_vars)
    volumes = [
        k8s.V1Volume(name="scoring-job", config_map=k8s.V1ConfigMapVolumeSource(name=config_map_name(name))),
        k8s.V1Volume(
            name="scoring-credentials",
            secret=k8s.V1SecretVolumeSource(secret_name=secret_name(name), default_mode=0o444),
        ),
        k8s.V1Volume(name="scratch", empty_dir=k8s.V1EmptyDirVolumeSource()),
    ]
    mounts = [
        k8s.V1VolumeMount(name="scoring-job", mount_path=JOB_MOUNT, read_only=True),
        k8s.V1VolumeMount(name="scoring-credentials", mount_path=SECRETS_MOUNT, read_only=True),
        k8s.V1VolumeMount(name="scratch", mount_path=SCRATCH_MOUNT),
    ]
    annotations = {
        **settings.annotations,
        ANNOTATION_PLAN: plan,
        ANNOTATION_SHARDS: ",".join(str(s) for s in shards),
        ANNOTATION_TASK: task,
    }
    try:
        operator = KubernetesJobOperator(
            task_id="batch_scoring_job",
            name=name[len(JOB_PREFIX) :],
            random_name_suffix=False,
            namespace=settings.namespace,
            image=settings.image,
            image_pull_policy=settings.image_pull_policy,
            cmds=list(COMMAND),
            arguments=list(arguments) if arguments is not None else pod_arguments(shards, replicas),
            env_vars=env,
            container_resources=to_model(settings.resources, "V1ResourceRequirements"),
            security_context=to_model(settings.security_context, "V1PodSecurityContext"),
            container_security_context=to_model(settings.container_security_context, "V1SecurityContext"),
            node_selector=dict(settings.node_selector),
            tolerations=to_model(settings.tolerations, "list[V1Toleration]"),
            affinity=to_model(settings.affinity, "V1Affinity"),
            service_account_name=settings.service_account_name,
            automount_service_account_token=False,
            image_pull_secrets=[k8s.V1LocalObjectReference(name=name) for name in settings.image_pull_secrets] or None,
            labels=_labels(settings, name),
            annotations=annotations,
            volumes=volumes,
            volume_mounts=mounts,
            active_deadline_seconds=settings.active_deadline_seconds,
            ttl_seconds_after_finished=settings.ttl_seconds_after_finished,
            completion_mode="Indexed",
            completions=len(shards),
            parallelism=min(settings.parallelism or len(shards), len(shards)),
            kubernetes_conn_id=settings.kubernetes_conn_id,
            in_cluster=settings.in_cluster,
            config_file=settings.config_file,
            cluster_context=settings.cluster_context,
            base_container_name=CONTAINER,
            termination_message_policy="FallbackToLogsOnError",
            get_logs=False,
            do_xcom_push=False,
        )
        job = operator.build_job_request_obj(context)
    except (TypeError, ValueError, AttributeError) as err:
        raise ConfigurationError(
            f"The Kubernetes settings cannot be turned into a Job: {type(err).__name__}: {err}. Check "
            "kubernetes['affinity'] and kubernetes['tolerations'] (written as in a pod manifest)."
        ) from err
    _check_round_trip(settings, job)
    job.spec.backoff_limit_per_index = settings.backoff_limit
    # https://kubernetes.io/docs/concepts/workloads/controllers/job/#backoff-limit-per-index: without
    # maxFailedIndexes the Job runs every index to its end, then fails (reason FailedIndexes) if any index failed.
    job.spec.max_failed_indexes = None if finish_siblings else 0
    job.spec.pod_failure_policy = k8s.V1PodFailurePolicy(
        rules=[
            # An evicted or preempted pod is replaced without counting as a failure of its index.
            k8s.V1PodFailurePolicyRule(
                action="Ignore",
                on_pod_conditions=[
                    k8s.V1PodFailurePolicyOnPodConditionsPattern(type="DisruptionTarget", status="True")
                ],
            ),
            # The runtime exits 2 on errors a user can cause (bad input, wrong model): retrying cannot help, and the
            # other indexes would fail the same way, so the whole Job fails at once (its running pods are stopped).
            k8s.V1PodFailurePolicyRule(
                action="FailJob",
                on_exit_codes=k8s.V1PodFailurePolicyOnExitCodesRequirement(
                    container_name=CONTAINER, operator="In", values=[2]
                ),
            ),
        ]
    )
    return job


def _check_round_trip(settings: KubernetesSettings, job: k8s.V1Job) -> None:
    """Refuse affinity and toleration fields the client model dropped (a misspelt key would vanish silently)."""
    spec = api_dict(job)["spec"]["template"]["spec"]
    if settings.affinity and _strip(spec.get("affinity")) != _strip(settings.affinity):
        raise ConfigurationError(
            "kubernetes['affinity'] has fields Kubernetes does not know (check their spelling, camelCase as in a pod "
            f"manifest): given {json.dumps(settings.affinity)}, understood {json.dumps(spec.get('affinity'))}."
        )
    if settings.tolerations and _strip(spec.get("tolerations")) != _strip(settings.tolerations):
        raise ConfigurationError(
            f"kubernetes['tolerations'] were not understood: given {json.dumps(settings.tolerations)}, understood "
            f"{json.dumps(spec.get('tolerations'))}."
        )


def _strip(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _strip(v) for k, v in value.items() if v not in (None, [], {})}
    if isinstance(value, (list, tuple)):
        return [_strip(v) for v in value]
    return value


def build_config_map(
    settings: KubernetesSettings, *, name: str, namespace: str, job_json: str, inputs_json: str
) -> k8s.V1ConfigMap:
    """The ConfigMap the pods read the ScoringJob from (immutable).

    :raises ConfigurationError: when the plan is over Kubernetes' 1 MiB ConfigMap limit.
    """
    from kubernetes.client import models as k8s

    size = len(job_json.encode()) + len(inputs_json.encode())
    if size > CONFIGMAP_LIMIT:
        raise ConfigurationError(
            f"The job's plan is {size:,} bytes of JSON, over the {CONFIGMAP_LIMIT:,} bytes a Kubernetes ConfigMap "
            "holds: the input has too many files (or Parquet row groups) for one run. Score it in several runs "
            "(e.g. one per prefix), or merge small input files."
        )
    return k8s.V1ConfigMap(
        api_version="v1",
        kind="ConfigMap",
        metadata=k8s.V1ObjectMeta(name=config_map_name(name), namespace=namespace, labels=_labels(settings, name)),
        data={JOB_KEY: job_json, INPUTS_KEY: inputs_json},
        immutable=True,
    )


def build_secret(
    settings: KubernetesSettings, *, name: str, namespace: str, secrets: Mapping[str, Any]
) -> k8s.V1Secret:
    """The per-run Secret with the storage credentials (immutable; mounted as a file by the pods)."""
    from kubernetes.client import models as k8s

    payload = base64.b64encode(json.dumps(dict(secrets), sort_keys=True).encode()).decode()
    return k8s.V1Secret(
        api_version="v1",
        kind="Secret",
        metadata=k8s.V1ObjectMeta(name=secret_name(name), namespace=namespace, labels=_labels(settings, name)),
        type="Opaque",
        data={SECRETS_KEY: payload},
        immutable=True,
    )


def owner_reference(job: Mapping[str, Any]) -> dict[str, Any]:
    """An ownerReference to the Job (as API JSON): its dependents are deleted with it."""
    meta = job["metadata"]
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "name": meta["name"],
        "uid": meta["uid"],
        "blockOwnerDeletion": True,
        "controller": False,
    }


def to_model(value: Any, kind: str) -> Any:
    """``value`` (the API's JSON) as the Kubernetes client's model ``kind`` (``"V1Affinity"``,
    ``"list[V1Toleration]"``), by the client's own deserialisation; ``None`` for an empty value.

    The client leaves out fields it does not know: :func:`_check_round_trip` refuses a setting that lost one.
    """
    from kubernetes.client import ApiClient

    if not value:
        return None
    return ApiClient().deserialize(SimpleNamespace(data=json.dumps(value)), kind)


def api_dict(obj: Any) -> Any:
    """An object as the API receives it (JSON, camelCase, no empty fields): what is sent, validated, compared."""
    from kubernetes.client import ApiClient

    if isinstance(obj, Mapping):
        return dict(obj)
    return ApiClient().sanitize_for_serialization(obj)
