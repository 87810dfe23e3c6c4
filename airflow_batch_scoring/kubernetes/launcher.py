"""The Kubernetes launcher: the replicas of a job as the pods of one Indexed Job.

It has the local launcher's shape (``run(job_path, replicas, secrets, shards)`` and ``kill()``), so the driver runs a
job the same way on both runtimes, plus ``start``/``wait``/``collect`` for the deferrable path. It holds the policy
(what to create, when to reattach or replace, how to judge and explain the Job, what to clean up); every API call is
:class:`~airflow_batch_scoring.hooks.kubernetes.ScoringJobHook`'s (on the cncf-kubernetes provider's
``KubernetesHook``).

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
from typing import TYPE_CHECKING, Any

from airflow_batch_scoring.errors import ReplicaError
from airflow_batch_scoring.job import ScoringJob
from airflow_batch_scoring.kubernetes import manifests, status
from airflow_batch_scoring.kubernetes.settings import KubernetesSettings
from airflow_batch_scoring.runtime.protocol import error_from_marker
from airflow_batch_scoring.runtime.remote_model import is_remote, staged_model_uri, upload_model
from airflow_batch_scoring.runtime.staged_documents import FOLDER, read_document, stage_document

if TYPE_CHECKING:
    from airflow_batch_scoring.hooks.kubernetes import ScoringJobHook

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

    def start_early(self, replicas: int | str, **options: Any) -> None:
        """Nothing to start early: a pod starts once the Job is created (part of the ``Launcher`` protocol)."""

    def prestart(self, model: Any, replicas: int | str, **options: Any) -> None:
        """Nothing to prestart: the pods load the model once the Job is created (part of the ``Launcher`` protocol)."""

    def discard(self) -> None:
        """Nothing prestarted to stop (part of the ``Launcher`` protocol)."""

    # -- the API ----------------------------------------------------------------------------------------------------

    @cached_property
    def hook(self) -> ScoringJobHook:
        """The API calls (:class:`~airflow_batch_scoring.hooks.kubernetes.ScoringJobHook`) on the settings' cluster."""
        from airflow_batch_scoring.hooks.kubernetes import ScoringJobHook

        return ScoringJobHook(
            conn_id=self.settings.kubernetes_conn_id,
            in_cluster=self.settings.in_cluster,
            config_file=self.settings.config_file,
            cluster_context=self.settings.cluster_context,
        )

    def _read_job(self) -> dict[str, Any] | None:
        return self.hook.read_job(self.name, self.namespace)

    def _pods(self, pending: bool = False) -> list[dict[str, Any]]:
        return self.hook.list_job_pods(self.name, self.namespace, pending=pending)

    def _log_tail(self, pod: str) -> str:
        return self.hook.tail_pod_log(pod, self.namespace, manifests.CONTAINER)

    def _delete(self, propagation: str = "Foreground") -> None:
        self.hook.delete_job(self.name, self.namespace, propagation)

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
        with self.hook.explained("build the Job", self.settings.namespace):  # the provider reads the connection
            manifest = manifests.build_job(
                self.settings, name=self.name, shards=shards or [0], replicas=replicas, plan=plan,
                context=self.context, task=self.task, finish_siblings=self.finish_siblings,
            )
        self.namespace = manifest.metadata.namespace
        existing = self._read_job()
        if existing is not None:
            annotations = existing.get("metadata", {}).get("annotations") or {}
            running = status.assess(existing, self._pods(pending=True), manifests.CONTAINER).state == status.RUNNING
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
        self._create(manifest, job.to_json(), secrets, job.staging_uri)
        self.shards, self._started = shards, True
        self.log(
            f"Started Job {self.namespace}/{self.name}: {len(shards)} pod(s) of {self.settings.image} for shard(s) "
            f"{shards}"
        )
        return self.reference()

    def reference(self) -> dict[str, Any]:
        return {"name": self.name, "namespace": self.namespace, "shards": list(self.shards)}

    def _create(self, manifest: Any, job_json: str, secrets: Mapping[str, Any], staging_uri: str | None) -> None:
        """Create the Secret (``secrets``), the ConfigMap (``job_json``, the inputs) and the Job, then make the Job
        their owner; on a failure, delete what this attempt created. A plan over what a ConfigMap holds is staged
        under ``staging_uri`` when it is on an object store."""
        assert self.namespace is not None
        secret = manifests.build_secret(self.settings, name=self.name, namespace=self.namespace, secrets=secrets)
        inputs_json = json.dumps(self.inputs, sort_keys=True)
        size = len(job_json.encode()) + len(inputs_json.encode())
        if size > manifests.CONFIGMAP_LIMIT and staging_uri and is_remote(staging_uri):
            job_json = stage_document(staging_uri, manifests.JOB_KEY, job_json, secrets.get("sink"))
            inputs_json = stage_document(staging_uri, manifests.INPUTS_KEY, inputs_json, secrets.get("sink"))
            self.log(f"The job's plan ({size:,} bytes of JSON) is over what a ConfigMap holds: staged in "
                     f"{staging_uri}/{FOLDER}/ for the pods")
        config_map = manifests.build_config_map(
            self.settings, name=self.name, namespace=self.namespace, job_json=job_json, inputs_json=inputs_json,
        )
        dependents = {"secret": secret.metadata.name, "config_map": config_map.metadata.name}
        self.hook.create_or_replace_secret(secret)
        try:
            self.hook.create_or_replace_config_map(config_map)
            created = self.hook.submit_job(manifest)
        except BaseException:
            self.hook.delete_dependents(namespace=self.namespace, **dependents)
            raise
        try:
            self.hook.own_dependents(manifests.owner_reference(created), namespace=self.namespace, **dependents)
        except BaseException:
            self._delete("Foreground")
            self.hook.delete_dependents(namespace=self.namespace, **dependents)
            raise

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
            assessment = status.assess(job, self._pods(pending=True), manifests.CONTAINER)
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
            self._succeeded(job, pods)
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

    def _succeeded(self, job: dict[str, Any], pods: list[dict[str, Any]]) -> None:
        """Called with the Job's pods once every index succeeded, before the Job is deleted: nothing to read for a
        scoring Job (its replicas' reports are in the staging folder); a training Job reads its pod's result."""

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

    def read_spec(
        self, storage_options: Mapping[str, Any] | None = None
    ) -> tuple[ScoringJob, list[dict[str, Any]]]:
        """The ScoringJob the pods ran and the input listing, from the Job's ConfigMap (or, for a plan over what a
        ConfigMap holds, from the staging folder, with the sink's ``storage_options``)."""
        data = self.hook.read_config_map(manifests.config_map_name(self.name), self.namespace)
        if data is None:
            raise ReplicaError(
                f"The ConfigMap of Job {self.namespace}/{self.name} is gone (the Job was deleted before the task "
                "resumed); nothing was published. Retry the task."
            )
        job = ScoringJob.from_json(read_document(data[manifests.JOB_KEY], storage_options))
        return job, json.loads(read_document(data.get(manifests.INPUTS_KEY) or "[]", storage_options))
