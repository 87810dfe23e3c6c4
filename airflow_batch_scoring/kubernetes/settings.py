"""The pod settings of the Kubernetes runtime: the ``kubernetes={...}`` mapping of ``BatchScoringOperator``.

One small dataclass, parsed and checked here, so that anything that configures a run (an operator argument, a stage)
supplies the same settings and gets the same errors. This module holds the project's own rules (the default
resources and security contexts, the reserved environment variables, the CPU -> threads mapping); the Kubernetes value
grammar is :mod:`airflow_batch_scoring.kubernetes.grammar`. It never imports Airflow or the Kubernetes client; the
manifests are built in :mod:`airflow_batch_scoring.kubernetes.manifests`.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from airflow_batch_scoring.coercion import to_optional_bool, to_optional_int
from airflow_batch_scoring.errors import ConfigurationError
from airflow_batch_scoring.kubernetes import grammar
from airflow_batch_scoring.kubernetes.grammar import check_label_key

ON_FINISH_ACTIONS = ("delete_succeeded_job", "delete_job", "keep_job")
#: Environment variables the runtime sets itself in every pod.
RESERVED_ENV = ("JOB_COMPLETION_INDEX", "BATCH_SCORING_SECRETS_FILE", "BATCH_SCORING_SHARDS")
#: How the task reaches and waits for the cluster: ``BatchScoringOperator`` arguments (as in ``KubernetesJobOperator``),
#: not pod settings; ``kubernetes={...}`` refuses them. (A stage's ``kubernetes`` may still set them.)
TASK_ARGUMENTS = ("deferrable", "kubernetes_conn_id", "poll_interval")

#: Requests and limits of a replica that sets none for ``cpu`` or ``memory``: a pod never runs unbounded by accident.
DEFAULT_RESOURCES = {"requests": {"cpu": "1", "memory": "2Gi"}, "limits": {"cpu": "2", "memory": "4Gi"}}
#: The pod's securityContext by default: what the ``restricted`` Pod Security Standard requires of a pod.
DEFAULT_POD_SECURITY_CONTEXT: dict[str, Any] = {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}}
#: The container's securityContext by default: no privilege escalation, no capabilities, a read-only root filesystem
#: (the runtime writes only to the scratch ``emptyDir`` mounted at ``/tmp``).
DEFAULT_CONTAINER_SECURITY_CONTEXT: dict[str, Any] = {
    "allowPrivilegeEscalation": False,
    "capabilities": {"drop": ["ALL"]},
    "readOnlyRootFilesystem": True,
    "runAsNonRoot": True,
    "seccompProfile": {"type": "RuntimeDefault"},
}
POD_SECURITY_FIELDS = (
    "appArmorProfile", "fsGroup", "fsGroupChangePolicy", "runAsGroup", "runAsNonRoot", "runAsUser",
    "seLinuxChangePolicy", "seLinuxOptions", "seccompProfile", "supplementalGroups", "supplementalGroupsPolicy",
    "sysctls", "windowsOptions",
)
CONTAINER_SECURITY_FIELDS = (
    "allowPrivilegeEscalation", "appArmorProfile", "capabilities", "privileged", "procMount",
    "readOnlyRootFilesystem", "runAsGroup", "runAsNonRoot", "runAsUser", "seLinuxOptions", "seccompProfile",
    "windowsOptions",
)

_CPU_UNITS = {"n": 1e-9, "u": 1e-6, "m": 1e-3, "": 1.0, "k": 1e3}


def _resources(value: Any) -> dict[str, dict[str, str]] | None:
    """The container's resources: the user's, and for ``cpu`` and ``memory`` the defaults.

    A resource named neither in ``requests`` nor in ``limits`` gets :data:`DEFAULT_RESOURCES`; one given only a
    request is limited to that request; ``None`` removes a default (``{'limits': {'cpu': None}}``: no CPU limit).
    """
    resources = grammar.mapping(value, "kubernetes['resources']")
    unknown = sorted(set(resources) - {"requests", "limits"})
    if unknown:
        raise ConfigurationError(
            f"Unknown key(s) {unknown} in kubernetes['resources']: use 'requests' and 'limits', e.g. "
            "{'requests': {'cpu': '1', 'memory': '2Gi'}, 'limits': {'memory': '2Gi', 'nvidia.com/gpu': 1}}."
        )
    result: dict[str, dict[str, str]] = {"requests": {}, "limits": {}}
    for kind in ("requests", "limits"):
        for resource, amount in grammar.mapping(resources.get(kind), f"kubernetes['resources'][{kind!r}]").items():
            check_label_key(resource, f"kubernetes['resources']['{kind}']")
            if amount is not None:
                result[kind][resource] = grammar.quantity(amount, f"kubernetes['resources']['{kind}'][{resource!r}]")
    given = {kind: grammar.mapping(resources.get(kind), kind) for kind in ("requests", "limits")}
    for resource in DEFAULT_RESOURCES["requests"]:
        if resource not in given["requests"] and resource not in result["limits"]:
            result["requests"][resource] = DEFAULT_RESOURCES["requests"][resource]  # (a limit alone is the request)
        if resource not in given["limits"]:
            # bounded: by the request given alone, else by the default; a limit set to None is the user's choice
            request = result["requests"].get(resource) if resource in given["requests"] else None
            result["limits"][resource] = request or DEFAULT_RESOURCES["limits"][resource]
    for resource in result.get("requests", {}):
        if "/" in resource and not resource.startswith("kubernetes.io/") and resource not in result.get("limits", {}):
            raise ConfigurationError(
                f"kubernetes['resources']['requests'][{resource!r}]: an extended resource such as a GPU must be set "
                f"in 'limits' (Kubernetes requests it as much as its limit), e.g. {{'limits': {{{resource!r}: 1}}}}."
            )
    return {kind: entries for kind, entries in result.items() if entries} or None


def _security_context(value: Any, name: str, defaults: Mapping[str, Any], known: tuple[str, ...]) -> dict[str, Any]:
    """``defaults`` with the user's fields over them (``None`` removes a default field).

    :raises ConfigurationError: for a field a securityContext does not have (a misspelt one would be dropped).
    """
    given = grammar.mapping(value, grammar.where(name))
    unknown = sorted(set(given) - set(known))
    if unknown:
        raise ConfigurationError(
            f"Unknown field(s) {unknown} in {grammar.where(name)}: the fields are {list(known)}, written as in a pod "
            "manifest (camelCase)."
        )
    merged = {**defaults, **given}
    return {key: item for key, item in merged.items() if item is not None}


def _env_vars(value: Any) -> dict[str, str]:
    """A mapping of names to values, or a list of ``V1EnvVar`` (``{'name': ..., 'value': ...}``) with plain values."""
    if isinstance(value, (list, tuple)):
        value = dict(_env_var(i, item) for i, item in enumerate(value))
    result = {}
    for name, item in grammar.mapping(value, "kubernetes['env_vars']").items():
        grammar.env_name(name, "kubernetes['env_vars']")
        if name in RESERVED_ENV:
            raise ConfigurationError(
                f"kubernetes['env_vars'][{name!r}] is set by the runtime itself; leave it out."
            )
        result[name] = "" if item is None else str(item)
    return result


def _env_var(index: int, item: Any) -> tuple[Any, Any]:
    what = f"kubernetes['env_vars'][{index}]"
    entry = grammar.mapping(item, what)
    if set(entry) - {"name", "value"} or "name" not in entry:
        raise ConfigurationError(
            f"{what} = {item!r}: give a name and a plain value (V1EnvVar(name=..., value=...)); a value read from "
            "another object (valueFrom) is not supported: the runtime's credentials come from its own mounted Secret."
        )
    return entry["name"], entry.get("value")


def check_task_arguments(value: Any) -> None:
    """Refuse, in ``kubernetes={...}``, what is an operator argument now (:data:`TASK_ARGUMENTS`).

    :raises ConfigurationError: naming the argument to pass instead.
    """
    if not isinstance(value, Mapping):
        return
    for key in TASK_ARGUMENTS:
        if key in value:
            raise ConfigurationError(
                f"kubernetes[{key!r}] is not a pod setting: pass {key}={value[key]!r} to BatchScoringOperator itself "
                f"(as for KubernetesJobOperator), and leave it out of kubernetes={{...}}."
            )


@dataclass
class KubernetesSettings:
    """Where and how the replicas of a scoring job run on Kubernetes.

    Where ``KubernetesJobOperator`` takes the Kubernetes client's models, so does ``kubernetes={...}``: ``resources``
    (``V1ResourceRequirements``), ``security_context`` (``V1PodSecurityContext``), ``container_security_context``
    (``V1SecurityContext``), ``tolerations`` (``V1Toleration`` items), ``affinity`` (``V1Affinity``),
    ``image_pull_secrets`` (``V1LocalObjectReference`` items) and ``env_vars`` (``V1EnvVar`` items with a value), as
    well as their pod-manifest form (camelCase mappings). Either way they are kept, checked and merged with the
    defaults as the API's JSON, and sent as the client's models.

    :param image: the runtime image (built from ``runtime_image/``), e.g. ``registry.example.com/scoring:0.1.0``.
    :param namespace: the namespace of the Job, its Secret and ConfigMap; default: the connection's, else the
        worker's own (in a cluster), else ``default``.
    :param image_pull_policy: ``Always``, ``IfNotPresent`` or ``Never``; default: Kubernetes' own.
    :param resources: container ``requests`` and ``limits``: ``cpu``, ``memory``, GPUs (``nvidia.com/gpu``) ...;
        ``cpu`` and ``memory`` default to :data:`DEFAULT_RESOURCES` (a request given alone is also the limit; ``None``
        removes a default).
    :param security_context: the pod's ``securityContext`` fields (camelCase, as in a pod manifest), over
        :data:`DEFAULT_POD_SECURITY_CONTEXT` (``runAsNonRoot``, seccomp ``RuntimeDefault``); ``None`` removes one.
    :param container_security_context: the container's ``securityContext`` fields, over
        :data:`DEFAULT_CONTAINER_SECURITY_CONTEXT` (no privilege escalation, capabilities dropped, read-only root
        filesystem); ``None`` removes one.
    :param node_selector: node labels the pods must run on.
    :param tolerations: tolerations, as in a pod manifest.
    :param affinity: affinity, as in a pod manifest (``nodeAffinity``, ``podAffinity``, ``podAntiAffinity``).
    :param service_account_name: the pods' service account (the pods need no Kubernetes API access).
    :param labels: extra labels of the Job, its pods, Secret and ConfigMap.
    :param annotations: extra annotations of the Job and its pods.
    :param image_pull_secrets: names of Secrets for pulling the image from a private registry.
    :param env_vars: extra (non-secret) environment variables of the container, e.g. a proxy.
    :param active_deadline_seconds: the Job fails when it runs longer than this.
    :param ttl_seconds_after_finished: Kubernetes deletes a finished Job (and its Secret) this long after it ended.
    :param backoff_limit: retries of one failed index inside the Job (``backoffLimitPerIndex``); a user error (bad
        input, exit code 2) is never retried.
    :param parallelism: indexes running at once (default: all).
    :param grace_period_seconds: when an index fails for a reason a retry can change (a killed pod, OOM, a store
        outage) and Airflow will retry the task, how long the other indexes may take to finish their shards (which
        the retry then reuses) before the Job is deleted; 0 stops them at once. On the last try, and for a user error
        (exit code 2), the Job stops at once.
    :param kubernetes_conn_id: the Airflow connection of the cluster (``kubernetes`` type): the operator's argument.
    :param in_cluster: use the worker pod's service account (overrides the connection's setting).
    :param config_file: a kubeconfig file (overrides the connection's setting).
    :param cluster_context: the kubeconfig context to use.
    :param poll_interval: seconds between two looks at the Job: the operator's argument.
    :param on_finish_action: ``delete_succeeded_job`` (keep a failed Job for inspection until its TTL),
        ``delete_job`` or ``keep_job``.
    """

    image: str
    namespace: str | None = None
    image_pull_policy: str | None = None
    resources: dict[str, dict[str, str]] | None = field(default_factory=lambda: _resources(None))
    security_context: dict[str, Any] = field(default_factory=lambda: dict(DEFAULT_POD_SECURITY_CONTEXT))
    container_security_context: dict[str, Any] = field(
        default_factory=lambda: dict(DEFAULT_CONTAINER_SECURITY_CONTEXT)
    )
    node_selector: dict[str, str] = field(default_factory=dict)
    tolerations: list[dict[str, Any]] = field(default_factory=list)
    affinity: dict[str, Any] | None = None
    service_account_name: str | None = None
    labels: dict[str, str] = field(default_factory=dict)
    annotations: dict[str, str] = field(default_factory=dict)
    image_pull_secrets: list[str] = field(default_factory=list)
    env_vars: dict[str, str] = field(default_factory=dict)
    active_deadline_seconds: int | None = None
    ttl_seconds_after_finished: int | None = 86400
    backoff_limit: int = 0
    parallelism: int | None = None
    grace_period_seconds: int = 300
    kubernetes_conn_id: str | None = "kubernetes_default"
    in_cluster: bool | None = None
    config_file: str | None = None
    cluster_context: str | None = None
    poll_interval: float = 10.0
    on_finish_action: str = "delete_succeeded_job"

    @classmethod
    def keys(cls) -> list[str]:
        """The keys of ``kubernetes={...}``: the pod settings (not the operator's :data:`TASK_ARGUMENTS`)."""
        return [f.name for f in fields(cls) if f.name not in TASK_ARGUMENTS]

    @classmethod
    def check_keys(cls, value: Any) -> None:
        """Refuse unknown keys early (when the operator is created), before templates are rendered.

        :raises ConfigurationError: naming the unknown keys and listing the known ones.
        """
        if value is None or isinstance(value, (KubernetesSettings, str)):
            return
        if not isinstance(value, Mapping):
            raise ConfigurationError(f"kubernetes must be a mapping of settings, got {type(value).__name__}.")
        check_task_arguments(value)
        unknown = sorted(set(value) - set(cls.keys()))
        if unknown:
            raise ConfigurationError(f"Unknown kubernetes setting(s) {unknown}: the settings are {sorted(cls.keys())}.")

    @classmethod
    def parse(
        cls,
        value: KubernetesSettings | Mapping[str, Any] | None,
        *,
        kubernetes_conn_id: str | None = "kubernetes_default",
        poll_interval: float = 10.0,
    ) -> KubernetesSettings:
        """Check every pod setting and build the settings.

        :param kubernetes_conn_id: the operator's ``kubernetes_conn_id``.
        :param poll_interval: the operator's ``poll_interval`` (seconds, > 0).

        :raises ConfigurationError: naming the setting that is wrong and how to fix it.
        """
        if isinstance(value, KubernetesSettings):
            return value
        if value is None:
            value = {}
        cls.check_keys(value)
        value = {key: grammar.plain(item) for key, item in value.items()}  # the client's models as the API's JSON
        image = grammar.string(value.get("image"), "image")
        if not image:
            raise ConfigurationError(
                "kubernetes['image'] is required with runtime='kubernetes': the scoring runtime image built from "
                "runtime_image/ and pushed to a registry the cluster pulls from, e.g. "
                "'registry.example.com/batch-scoring-runtime:0.1.0' (see README 'Kubernetes runtime')."
            )
        namespace = grammar.dns_label(grammar.string(value.get("namespace"), "namespace"), "kubernetes['namespace']")
        policy = grammar.string(value.get("image_pull_policy"), "image_pull_policy")
        if policy and policy not in grammar.PULL_POLICIES:
            raise ConfigurationError(
                f"kubernetes['image_pull_policy'] must be one of {grammar.PULL_POLICIES}, got {policy!r}."
            )
        account = grammar.dns_subdomain(
            grammar.string(value.get("service_account_name"), "service_account_name"),
            "kubernetes['service_account_name']",
        )
        node_selector = {}
        for key, item in grammar.mapping(value.get("node_selector"), "kubernetes['node_selector']").items():
            check_label_key(key, "kubernetes['node_selector']")
            node_selector[key] = str(item)
        if not (poll_interval > 0 and math.isfinite(poll_interval)):
            raise ConfigurationError(f"poll_interval must be a positive number of seconds, got {poll_interval!r}.")
        action = grammar.string(value.get("on_finish_action"), "on_finish_action") or "delete_succeeded_job"
        if action not in ON_FINISH_ACTIONS:
            raise ConfigurationError(
                f"kubernetes['on_finish_action'] must be one of {ON_FINISH_ACTIONS}, got {action!r}."
            )
        in_cluster = to_optional_bool(value.get("in_cluster"), "kubernetes['in_cluster']")
        config_file = grammar.string(value.get("config_file"), "config_file")
        if in_cluster and config_file:
            raise ConfigurationError(
                "kubernetes['in_cluster'] and kubernetes['config_file'] exclude each other: set one of them."
            )
        given: Mapping[str, Any] = value

        def whole(key: str, minimum: int, default: int | None = None) -> int | None:
            return to_optional_int(given.get(key, default), grammar.where(key), minimum)

        ttl = whole("ttl_seconds_after_finished", 0, 86400)
        return cls(
            image=image,
            namespace=namespace,
            image_pull_policy=policy,
            resources=_resources(value.get("resources")),
            security_context=_security_context(
                value.get("security_context"), "security_context", DEFAULT_POD_SECURITY_CONTEXT, POD_SECURITY_FIELDS
            ),
            container_security_context=_security_context(
                value.get("container_security_context"), "container_security_context",
                DEFAULT_CONTAINER_SECURITY_CONTEXT, CONTAINER_SECURITY_FIELDS,
            ),
            node_selector=node_selector,
            tolerations=grammar.tolerations(value.get("tolerations")),
            affinity=grammar.affinity(value.get("affinity")),
            service_account_name=account,
            labels=grammar.label_map(value.get("labels"), "labels"),
            annotations=grammar.annotation_map(value.get("annotations"), "annotations"),
            image_pull_secrets=grammar.pull_secrets(value.get("image_pull_secrets")),
            env_vars=_env_vars(value.get("env_vars")),
            active_deadline_seconds=whole("active_deadline_seconds", 1),
            ttl_seconds_after_finished=ttl,
            backoff_limit=whole("backoff_limit", 0) or 0,
            parallelism=whole("parallelism", 1),
            grace_period_seconds=whole("grace_period_seconds", 0, 300) or 0,
            kubernetes_conn_id=kubernetes_conn_id or None,
            in_cluster=in_cluster,
            config_file=config_file,
            cluster_context=grammar.string(value.get("cluster_context"), "cluster_context"),
            poll_interval=poll_interval,
            on_finish_action=action,
        )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def threads(self) -> int | None:
        """Compute threads per pod: the container's CPU limit (else its request), rounded up; ``None`` when unset.

        OpenMP and BLAS size their pools by the node's cores, not the container's CPU quota; this keeps a pod from
        oversubscribing its share.
        """
        for kind in ("limits", "requests"):
            amount = (self.resources or {}).get(kind, {}).get("cpu")
            if amount:
                match = re.match(r"^([0-9.]+(?:[eE][+-]?[0-9]+)?)([numk]?)$", amount)
                if match:
                    return max(1, math.ceil(float(match.group(1)) * _CPU_UNITS[match.group(2)]))
        return None
