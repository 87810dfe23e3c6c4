"""A training job on Kubernetes: one pod (a one-completion Job, built and judged as the scoring Jobs are) runs
``python -m airflow_batch_scoring.runtime train``.

:class:`KubernetesTrainer` is a :data:`~airflow_batch_scoring.training.run.Trainer`: it is the scoring
:class:`~airflow_batch_scoring.kubernetes.launcher.KubernetesLauncher` (the same Secret, ConfigMap, Job, ownership,
polling, failure reports from the pod's own ``BATCH_SCORING_ERROR`` line, deletion) with a TrainingJob in the
ConfigMap, the training secret material (``{"source": ..., "mlflow": {"token": ...}}``) in the Secret, and the
``train`` command in the pod.

The result: the training process prints ``BATCH_SCORING_RESULT {json}`` as its last line (the new version, its run,
rows and digest), the same line a local trainer reads from its child's stdout. Once the Job has succeeded, and before
it is deleted, the launcher reads it from the pod's log (the pod and its log exist as long as the Job does). Reading
the pod's log needs only the API access the launcher already uses for failure reports, and no MLflow access from the
worker; a Job whose result cannot be read fails the task (its version is then the one whose run is named after the
job id). A retry that finds the earlier attempt's Job running or succeeded with the same job waits for it and reads
its result, rather than training (and registering) again.

Never imports Airflow (the hook is imported lazily by the launcher).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping
from typing import Any

from airflow_batch_scoring.errors import ReplicaError
from airflow_batch_scoring.kubernetes import manifests, status
from airflow_batch_scoring.kubernetes.launcher import KubernetesLauncher
from airflow_batch_scoring.kubernetes.settings import KubernetesSettings
from airflow_batch_scoring.training.job import TrainingJob
from airflow_batch_scoring.training.process import RESULT_MARKER


def result_from_log(log: str) -> dict[str, Any] | None:
    """The training process's result: the last ``BATCH_SCORING_RESULT {json}`` line of its log, or ``None``."""
    for line in reversed(log.splitlines()):
        if line.startswith(RESULT_MARKER):
            try:
                return dict(json.loads(line[len(RESULT_MARKER):]))
            except ValueError:
                return None
    return None


class KubernetesTrainer(KubernetesLauncher):
    """Runs a TrainingJob as the one pod of a Job and returns the training process's result.

    :param settings: the Kubernetes settings (image, namespace, resources, ...).
    :param name: the Job's name (:func:`~airflow_batch_scoring.kubernetes.manifests.job_name`, kind ``"training"``).
    :param context: the Airflow task context (pod labels), or ``None``.
    :param task: ``dag.task[map]/run``, recorded on the Job.
    :param log: receives progress lines.
    """

    def __init__(
        self,
        settings: KubernetesSettings,
        *,
        name: str,
        context: Any = None,
        task: str = "",
        log: Callable[[str], None] = print,
    ):
        super().__init__(settings, name=name, context=context, task=task, log=log)
        self.result: dict[str, Any] | None = None

    def __call__(self, job: TrainingJob, secrets: Mapping[str, Any]) -> dict[str, Any]:
        job_json = job.to_json()
        plan = "sha256:" + hashlib.sha256(job_json.encode()).hexdigest()
        with self.hook.explained("build the Job", self.settings.namespace):
            manifest = manifests.build_job(
                self.settings, name=self.name, shards=[0], replicas=1, plan=plan, context=self.context,
                task=self.task, arguments=manifests.training_arguments(),
            )
        self.namespace = manifest.metadata.namespace
        self.result = None
        existing = self._read_job()
        reattached = False
        if existing is not None:
            annotations = existing.get("metadata", {}).get("annotations") or {}
            state = status.assess(existing, self._pods(pending=True), manifests.CONTAINER).state
            if state in (status.RUNNING, status.SUCCEEDED) and annotations.get(manifests.ANNOTATION_PLAN) == plan:
                # an earlier attempt's pod still training this job, or done with it (the attempt died before it
                # read the result): its result, not a second version
                self.log(f"Reattaching to training Job {self.namespace}/{self.name}, started by an earlier attempt "
                         f"({state})")
                reattached = True
            else:
                self.log(f"Deleting the earlier attempt's Job {self.namespace}/{self.name} before starting a new one")
                self._delete_and_wait()
        if not reattached:
            self._create(manifest, job_json, secrets, None)
            self.log(f"Started training Job {self.namespace}/{self.name}: one pod of {self.settings.image}")
        self.shards, self._started = [0], True
        self.wait()  # raises the pod's own error when it failed; reads the result (``_succeeded``) before deleting
        if self.result is None:
            raise ReplicaError(
                f"The training Job {self.namespace}/{self.name} succeeded, but its pod's log has no result line "
                f"({RESULT_MARKER.strip()}); the version it registered is the one whose MLflow run is named "
                f"{job.job_id!r}."
            )
        return self.result

    def _succeeded(self, job: dict[str, Any], pods: list[dict[str, Any]]) -> None:
        """Read the result line from the log of the Job's succeeded pod (before the Job is deleted)."""
        for pod in reversed(status.pods_of(job, pods)):
            if (pod.get("status") or {}).get("phase") == "Succeeded":
                text = self._log_tail(pod["metadata"]["name"])
                self.result = result_from_log(text)
                if self.result is not None:
                    for line in text.splitlines():  # what the training process said (never a secret)
                        if line.strip() and not line.startswith(RESULT_MARKER):
                            self.log(f"[{pod['metadata']['name']}] {line}")
                    return
