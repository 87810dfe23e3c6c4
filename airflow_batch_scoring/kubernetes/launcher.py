"""The Kubernetes launcher: the replicas of a job as the pods of one Indexed Job.

It has the local launcher's shape (``run(job_path, replicas, secrets, shards)`` and ``kill()``), so the driver runs a
job the same way on both runtimes, plus ``start``/``wait``/``collect`` for the deferrable path. All API calls go
through the cncf-kubernetes provider's ``KubernetesHook``.

Per run, in one namespace: a Secret (the credentials), a ConfigMap (the ScoringJob), then the Job; the Secret and the
ConfigMap are then given an ``ownerReference`` to the Job, so that deleting the Job deletes them. The Job's name is
the same for every attempt of a task instance: a retry that finds it still running the same plan waits for it instead
of starting another; one that finds it finished (or running another plan) deletes it and starts a Job for the shards
that have no report yet.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from dataclasses import replace
from functools import cached_property
from typing import Any

from airflow_batch_scoring.errors import ConfigurationError, ReplicaError
from airflow_batch_scoring.job import ScoringJob
from airflow_batch_scoring.kubernetes import manifests, status
from airflow_batch_scoring.kubernetes.settings import KubernetesSettings
from airflow_batch_scoring.runtime.protocol import error_from_marker
from airflow_batch_scoring.runtime.remote_model import is_remote, staged_model_uri, upload_model

#: How long a retry waits for the previous attempt's Job to be deleted before creating its own.
DELETE_TIMEOUT_S = 300


class KubernetesLauncher:
    """Runs the replicas of a job as an Indexed Job.

    :param settings: the Kubernetes settings.
    :param name: the Job's name (:func:`~airflow_batch_scoring.kubernetes.manifests.job_name`).
    :param context: the Airflow task context (pod labels), or ``None``.
    :param task: ``dag.task[map]/run``, recorded on the Job.
    :param inputs: the input listing, kept in the ConfigMap for a deferred task's commit.
    :param log: receives progress lines.
    """

    runtime = "kubernetes"

    def __init__(
        self,
        settings: KubernetesSettings,
        *,
        name: str,
        context: Any = None,
        task: str = "",
        inputs: list[dict[str, Any]] | None = None,
        log: Callable[[str], None] = print,
        finish_siblings: bool = False,
    ):
        self.settings = settings
        self.name = name
        self.context = context
        self.task = task
        self.inputs = inputs or []
        self.log = log
        self.namespace: str | None = None
        self.shards: list[int] = []
        self._started = False
        #: the task will be retried (the driver sets it): an index failing for a reason a retry can change lets the
        #: others finish their shards, for up to ``settings.grace_period_seconds``, so that the retry reuses them.
        self.finish_siblings = finish_siblings

    @classmethod
    def reattach(
        cls,
        settings: KubernetesSettings,
        reference: Mapping[str, Any],
        *,
        context: Any = None,
        task: str = "",
        log: Callable[[str], None] = print,
    ) -> KubernetesLauncher:
        """The launcher of a Job started earlier (a deferred task resuming on a fresh operator).

        :param reference: what :meth:`start` returned (``name``, ``namespace``, ``shards``).
        """
        launcher = cls(settings, name=str(reference["name"]), context=context, task=task, log=log)
        launcher.namespace = str(reference["namespace"])
        launcher.shards = [int(shard) for shard in reference.get("shards") or []]
        launcher._started = True
        return launcher

    def prestart(self, model: Any, replicas: int | str, **options: Any) -> None:
        """Nothing to prestart: the pods load the model once the Job is created (part of the ``Launcher`` protocol)."""

    def discard(self) -> None:
        """Nothing prestarted to stop (part of the ``Launcher`` protocol)."""

    # -- the API ----------------------------------------------------------------------------------------------------

    @cached_property
    def hook(self) -> Any:
        from airflow.providers.cncf.kubernetes.hooks.kubernetes import KubernetesHook

        return KubernetesHook(
            conn_id=self.settings.kubernetes_conn_id,
            in_cluster=self.settings.in_cluster,
            config_file=self.settings.config_file,
            cluster_context=self.settings.cluster_context,
        )

    def _call(self, what: str, function: Callable[..., Any], *args: Any, quiet: bool = False, **kwargs: Any) -> Any:
        """Call the API; turn a refusal into an error that says what to fix (never echoing a Secret's body)."""
        from kubernetes.client.exceptions import ApiException
        from kubernetes.config.config_exception import ConfigException

        try:
            return function(*args, **kwargs)
        except ConfigException as err:
            raise ConfigurationError(
                f"Cannot configure the Kubernetes client ({err}): set kubernetes['kubernetes_conn_id'] to a "
                "Kubernetes connection (kubeconfig, or in-cluster), or kubernetes['config_file'] or "
                "kubernetes['in_cluster']=True."
            ) from None
        except ApiException as err:
            raise self._explain(what, err, quiet) from None

    def _explain(self, what: str, err: Any, quiet: bool = False) -> Exception:
        """An API refusal as an error that says what to fix; ``quiet`` leaves out the server's message."""
        detail = "" if quiet else _api_message(err)
        where = f"namespace {self.namespace!r}"
        if err.status in (401, 403):
            return ConfigurationError(
                f"The Kubernetes API refused to {what} in {where} ({err.status} {err.reason}{detail}): give the "
                f"identity of connection {self.settings.kubernetes_conn_id!r} the Role in README 'Kubernetes "
                "runtime' (jobs, pods, pods/log, secrets, configmaps)."
            )
        if err.status == 404 and what.startswith("create"):
            return ConfigurationError(
                f"Cannot {what}: {where} does not exist ({err.reason}{detail}). Create it, or set "
                "kubernetes['namespace']."
            )
        if err.status in (400, 422):
            return ConfigurationError(f"Kubernetes refused to {what} ({err.status} {err.reason}{detail}).")
        return err

    def _read_job(self) -> dict[str, Any] | None:
        from kubernetes.client.exceptions import ApiException

        try:
            job = self.hook.batch_v1_client.read_namespaced_job_status(name=self.name, namespace=self.namespace)
        except ApiException as err:
            if err.status == 404:
                return None
            raise self._explain("read the Job", err) from None
        return manifests.api_dict(job)

    def _pods(self) -> list[dict[str, Any]]:
        result = self._call(
            "list the Job's pods", self.hook.core_v1_client.list_namespaced_pod, namespace=self.namespace,
            label_selector=f"{status.JOB_NAME_LABEL}={self.name}",
        )
        return [manifests.api_dict(pod) for pod in result.items or []]

    def _log_tail(self, pod: str) -> str:
        from kubernetes.client.exceptions import ApiException

        try:
            response = self.hook.core_v1_client.read_namespaced_pod_log(
                name=pod, namespace=self.namespace, container=manifests.CONTAINER, tail_lines=200,
                _preload_content=False,
            )
            return response.data.decode("utf-8", errors="replace")
        except (ApiException, OSError):
            return ""

    def _delete(self, propagation: str = "Foreground") -> None:
        from kubernetes.client import models as k8s
        from kubernetes.client.exceptions import ApiException

        try:
            self.hook.batch_v1_client.delete_namespaced_job(
                name=self.name, namespace=self.namespace, body=k8s.V1DeleteOptions(propagation_policy=propagation)
            )
        except ApiException as err:
            if err.status != 404:
                raise self._explain("delete the Job", err) from None

    def _delete_and_wait(self) -> None:
        self._delete("Foreground")
        deadline = time.monotonic() + DELETE_TIMEOUT_S
        while self._read_job() is not None:
            if time.monotonic() > deadline:
                raise ReplicaError(
                    f"The earlier Job {self.namespace}/{self.name} is still being deleted after {DELETE_TIMEOUT_S}s "
                    "(a finalizer or a stuck pod?); delete it (kubectl delete job) and retry."
                )
            time.sleep(min(self.settings.poll_interval, 2.0))

    # -- launching ----------------------------------------------------------------------------------------------------

    def start(
        self,
        job_path: str,
        replicas: int,
        secrets: Mapping[str, Any] | None = None,
        shards: list[int] | None = None,
    ) -> dict[str, Any] | None:
        """Start a Job for ``shards`` (default: all), or reattach to the earlier attempt's Job still running the same
        plan; return a reference (``name``, ``namespace``, ``shards``), or ``None`` when there is nothing to run."""
        secrets = dict(secrets or {})
        with open(job_path) as f:
            job = ScoringJob.from_json(f.read())
        shards = list(range(replicas)) if shards is None else sorted(shards)
        local_model = None
        if not is_remote(job.model.path):
            local_model = job.model.path
            job = replace(job, model=replace(job.model, path=staged_model_uri(job.staging_uri, job.model.path)))
        plan = manifests.plan_digest(job, self.inputs)
        manifest = self._call(
            "build the Job", manifests.build_job, self.settings, name=self.name, shards=shards or [0],
            replicas=replicas, plan=plan, context=self.context, task=self.task, finish_siblings=self.finish_siblings,
        )
        self.namespace = manifest.metadata.namespace
        existing = self._read_job()
        if existing is not None:
            annotations = existing.get("metadata", {}).get("annotations") or {}
            running = status.assess(existing, self._pods(), manifests.CONTAINER).state == status.RUNNING
            theirs = manifests.shard_list(annotations.get(manifests.ANNOTATION_SHARDS))
            if running and annotations.get(manifests.ANNOTATION_PLAN) == plan and set(shards) <= set(theirs):
                self.log(
                    f"Reattaching to Job {self.namespace}/{self.name}, started by an earlier attempt and still "
                    f"running shard(s) {theirs}"
                )
                self.shards, self._started = theirs, True
                return self.reference()
            self.log(f"Deleting the earlier attempt's Job {self.namespace}/{self.name} before starting a new one")
            self._delete_and_wait()
        if not shards:
            return None
        if local_model is not None:
            upload_model(local_model, job.staging_uri, secrets.get("sink"), job.model.digest)
        self._create(manifest, job, secrets)
        self.shards, self._started = shards, True
        self.log(
            f"Started Job {self.namespace}/{self.name}: {len(shards)} pod(s) of {self.settings.image} for shard(s) "
            f"{shards}"
        )
        return self.reference()

    def reference(self) -> dict[str, Any]:
        return {"name": self.name, "namespace": self.namespace, "shards": list(self.shards)}

    def _create(self, manifest: Any, job: ScoringJob, secrets: Mapping[str, Any]) -> None:
        assert self.namespace is not None
        core = self.hook.core_v1_client
        secret = manifests.build_secret(self.settings, name=self.name, namespace=self.namespace, secrets=secrets)
        config_map = manifests.build_config_map(
            self.settings, name=self.name, namespace=self.namespace, job_json=job.to_json(),
            inputs_json=json.dumps(self.inputs, sort_keys=True),
        )
        self._create_or_replace("Secret", secret, core.create_namespaced_secret, core.delete_namespaced_secret)
        try:
            self._create_or_replace(
                "ConfigMap", config_map, core.create_namespaced_config_map, core.delete_namespaced_config_map
            )
            created = manifests.api_dict(self._call("create the Job", self.hook.create_job, manifest))
        except BaseException:
            self._remove_dependents()
            raise
        try:
            owner = {"metadata": {"ownerReferences": [manifests.owner_reference(created)]}}
            self._call("own the Secret", core.patch_namespaced_secret, manifests.secret_name(self.name),
                       self.namespace, owner, quiet=True)
            self._call("own the ConfigMap", core.patch_namespaced_config_map,
                       manifests.config_map_name(self.name), self.namespace, owner)
        except BaseException:
            self._delete("Foreground")
            self._remove_dependents()
            raise

    def _create_or_replace(self, kind: str, body: Any, create: Callable[..., Any], delete: Callable[..., Any]) -> None:
        """Create ``body``; one left by an attempt that died before owning it is replaced (it is immutable)."""
        from kubernetes.client.exceptions import ApiException

        quiet = kind == "Secret"
        try:
            create(namespace=self.namespace, body=body)
        except ApiException as err:
            if err.status != 409:
                raise self._explain(f"create the {kind}", err, quiet) from None
            self._call(f"replace the {kind}", delete, name=body.metadata.name, namespace=self.namespace, quiet=quiet)
            self._call(f"create the {kind}", create, namespace=self.namespace, body=body, quiet=quiet)

    def _remove_dependents(self) -> None:
        from kubernetes.client.exceptions import ApiException

        core = self.hook.core_v1_client
        for delete, name in (
            (core.delete_namespaced_secret, manifests.secret_name(self.name)),
            (core.delete_namespaced_config_map, manifests.config_map_name(self.name)),
        ):
            try:
                delete(name=name, namespace=self.namespace)
            except ApiException:
                pass

    # -- waiting ------------------------------------------------------------------------------------------------------

    def run(
        self,
        job_path: str,
        replicas: int,
        secrets: Mapping[str, Any] | None = None,
        env: Mapping[str, str] | None = None,
        shards: list[int] | None = None,
    ) -> None:
        """Start (or reattach to) the Job and wait until every index succeeded.

        :raises BatchScoringError: naming each failed index and why (the replica's own error when it reported one).
        """
        if self.start(job_path, replicas, secrets=secrets, shards=shards) is not None:
            self.wait()

    def grace(self) -> status.SiblingGrace:
        """How long the other indexes may run on after one failed: the grace period while a retry will come."""
        return status.SiblingGrace(self.settings.grace_period_seconds if self.finish_siblings else 0)

    def wait(self) -> None:
        """Poll the Job until it is done (or an index failed and the others finished or the grace period passed),
        then :meth:`collect` it."""
        last = None
        grace = self.grace()
        while True:
            job = self._read_job()
            if job is None:
                break
            assessment = status.assess(job, self._pods(), manifests.CONTAINER)
            if assessment.summary != last:
                self.log(assessment.summary)
                last = assessment.summary
            stop, note = grace.stop(assessment, time.monotonic())
            if note:
                self.log(note)
            if stop:
                break
            time.sleep(self.settings.poll_interval)
        self.collect()

    def collect(self) -> None:
        """Judge the finished Job: return when every index succeeded, else raise why each failed index failed.

        A succeeded Job is deleted (unless ``on_finish_action='keep_job'``); a failed one is kept for inspection
        (unless ``on_finish_action='delete_job'``), except a Job whose image cannot be pulled, which would never end.
        """
        job = self._read_job()
        if job is None:
            raise ReplicaError(
                f"The Job {self.namespace}/{self.name} was deleted before it finished; nothing was published. "
                "Retry the task (shards that finished are kept while Airflow retries remain)."
            )
        pods = self._pods()
        assessment = status.assess(job, pods, manifests.CONTAINER)
        if not self.shards:
            self.shards = manifests.shard_list(
                (job.get("metadata", {}).get("annotations") or {}).get(manifests.ANNOTATION_SHARDS)
            )
        if assessment.state == status.SUCCEEDED:
            if self.settings.on_finish_action != "keep_job":
                self._delete("Background")
            return
        if assessment.state == status.RUNNING and not assessment.failed:
            raise ReplicaError(f"The Job {self.namespace}/{self.name} is still running ({assessment.summary}).")
        found = status.failures(job, pods, manifests.CONTAINER, self.shards, self._log_tail)
        stuck = any(status.image_pull_problem(pod, manifests.CONTAINER) for pod in status.pods_of(job, pods))
        if assessment.state == status.RUNNING:  # an index failed; the others did not finish within the grace period
            assessment = replace(assessment, reason=f"index(es) {assessment.failed} failed")
            stuck = True  # its running pods are stopped: nothing waits for them any more
        if stuck or self.settings.on_finish_action == "delete_job":
            self._delete("Foreground")
        raise self._error(assessment, found)

    def _error(self, assessment: status.Assessment, found: list[status.Failure]) -> Exception:
        where = f"Kubernetes Job {self.namespace}/{self.name}"
        if len(found) == 1 and found[0].error:
            failure, reported_error = found[0], found[0].error
            message = (
                f"{reported_error['message']} [{where}, index {failure.index} (shard {failure.shard}), pod "
                f"{failure.pod}]; nothing was published."
            )
            return error_from_marker(json.dumps({**reported_error, "message": message}))
        if not found:
            done = set(assessment.completed)
            missing = [s for i, s in enumerate(self.shards) if i not in done]
            return ReplicaError(
                f"The {where} failed ({assessment.reason}); shard(s) {missing} did not finish; nothing was published."
            )
        lines = "\n".join(f"- {f.message}" for f in found)
        error: Exception = ReplicaError(f"The {where} failed ({assessment.reason}); nothing was published:\n{lines}")
        # The error a retry cannot change decides (it would fail again), else the first the replicas reported.
        reported = [f.error for f in found if f.error]
        first = next((e for e in reported if e.get("retryable") is False), reported[0] if reported else None)
        if first is not None:
            error = error_from_marker(json.dumps({**first, "message": str(error)}))
        return error

    def kill(self) -> None:
        """Delete the Job with foreground propagation (its pods, Secret and ConfigMap go with it)."""
        if self._started and self.namespace:
            self.log(f"Deleting Job {self.namespace}/{self.name} (foreground propagation)")
            self._delete("Foreground")

    # -- a deferred task's commit ----------------------------------------------------------------------------------

    def read_spec(self) -> tuple[ScoringJob, list[dict[str, Any]]]:
        """The ScoringJob the pods ran and the input listing, from the Job's ConfigMap."""
        from kubernetes.client.exceptions import ApiException

        try:
            config_map = self.hook.core_v1_client.read_namespaced_config_map(
                name=manifests.config_map_name(self.name), namespace=self.namespace
            )
        except ApiException as err:
            if err.status == 404:
                raise ReplicaError(
                    f"The ConfigMap of Job {self.namespace}/{self.name} is gone (the Job was deleted before the task "
                    "resumed); nothing was published. Retry the task."
                ) from None
            raise
        data = config_map.data or {}
        return ScoringJob.from_json(data[manifests.JOB_KEY]), json.loads(data.get(manifests.INPUTS_KEY) or "[]")


def _api_message(err: Any) -> str:
    try:
        message = json.loads(err.body or "{}").get("message")
    except (TypeError, ValueError):
        message = None
    return f": {message}" if message else ""
