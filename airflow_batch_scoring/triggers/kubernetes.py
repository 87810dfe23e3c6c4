"""Deferrable waiting on a scoring Job: the triggerer polls the Job and its pods, the worker resumes to commit.

The cncf-kubernetes provider's ``KubernetesJobTrigger`` waits for a Job's final condition only: a pod whose image
cannot be pulled never fails, so it would wait until the Job's deadline. This trigger judges the Job with the same
rules as the non-deferrable wait (:func:`airflow_batch_scoring.kubernetes.status.assess`), so an image that cannot be
pulled ends the wait at once. It only says *that* the Job is done; the task, resumed on a worker, reads why indexes
failed (pod states and logs) and commits the output. The trigger keeps the polling loop; the API calls are
:class:`~airflow_batch_scoring.hooks.kubernetes.AsyncScoringJobHook`'s.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

from airflow_batch_scoring.kubernetes import status

if TYPE_CHECKING:
    from airflow_batch_scoring.hooks.kubernetes import AsyncScoringJobHook


class ScoringJobTrigger(BaseTrigger):
    """Fire when a scoring Job is complete, failed, or stuck on an image that cannot be pulled.

    :param name: the Job's name.
    :param namespace: the Job's namespace.
    :param container: the scoring container's name in the pods.
    :param kubernetes_conn_id: the Airflow connection of the cluster.
    :param in_cluster: use the in-cluster configuration.
    :param config_file: a kubeconfig file.
    :param cluster_context: the kubeconfig context.
    :param poll_interval: seconds between two looks at the Job.
    :param resume: what the task needs to resume (run start, Job reference, attempt): returned in every event.
    :param grace_period_seconds: after an index failed for good, how long the other indexes may run on to finish their
        shards (the task will be retried); 0 fires at once.
    """

    def __init__(
        self,
        *,
        name: str,
        namespace: str,
        container: str,
        kubernetes_conn_id: str | None = None,
        in_cluster: bool | None = None,
        config_file: str | None = None,
        cluster_context: str | None = None,
        poll_interval: float = 10.0,
        resume: dict[str, Any] | None = None,
        grace_period_seconds: float = 0,
    ):
        super().__init__()
        self.name = name
        self.namespace = namespace
        self.container = container
        self.kubernetes_conn_id = kubernetes_conn_id
        self.in_cluster = in_cluster
        self.config_file = config_file
        self.cluster_context = cluster_context
        self.poll_interval = poll_interval
        self.resume = resume or {}
        self.grace_period_seconds = grace_period_seconds

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "name": self.name,
                "namespace": self.namespace,
                "container": self.container,
                "kubernetes_conn_id": self.kubernetes_conn_id,
                "in_cluster": self.in_cluster,
                "config_file": self.config_file,
                "cluster_context": self.cluster_context,
                "poll_interval": self.poll_interval,
                "resume": self.resume,
                "grace_period_seconds": self.grace_period_seconds,
            },
        )

    @cached_property
    def hook(self) -> AsyncScoringJobHook:
        """The API calls (:class:`~airflow_batch_scoring.hooks.kubernetes.AsyncScoringJobHook`) on the Job's cluster."""
        from airflow_batch_scoring.hooks.kubernetes import AsyncScoringJobHook

        return AsyncScoringJobHook(
            conn_id=self.kubernetes_conn_id,
            in_cluster=self.in_cluster,
            config_file=self.config_file,
            cluster_context=self.cluster_context,
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        last = None
        grace = status.SiblingGrace(self.grace_period_seconds)
        try:
            while True:
                job, pods = await self.hook.read_job_and_pods(self.name, self.namespace)
                if job is None:
                    yield self._event("deleted", f"Job {self.namespace}/{self.name} was deleted")
                    return
                assessment = status.assess(job, pods, self.container)
                if assessment.summary != last:
                    self.log.info("%s", assessment.summary)
                    last = assessment.summary
                stop, note = grace.stop(assessment, time.monotonic())
                if note:
                    self.log.info("%s", note)
                if stop:  # failed with others still running: the resumed task stops them (deletes the Job)
                    yield self._event(status.FAILED if assessment.failed else assessment.state, assessment.summary)
                    return
                await asyncio.sleep(self.poll_interval)
        except Exception as err:  # the task resumes and reports it
            yield self._event("error", f"{type(err).__name__}: {err}")

    def _event(self, state: str, summary: str) -> TriggerEvent:
        return TriggerEvent({"status": state, "name": self.name, "namespace": self.namespace, "summary": summary,
                             "resume": self.resume})

    async def on_kill(self) -> None:
        """The task was killed by a user while deferred: delete the Job with foreground propagation."""
        self.log.info("Deleting Job %s/%s (foreground propagation)", self.namespace, self.name)
        await self.hook.delete_job(self.name, self.namespace, "Foreground")
