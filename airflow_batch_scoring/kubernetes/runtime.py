"""``BatchScoringOperator(runtime="kubernetes")``: launch (or reattach to) the Indexed Job, wait for it on the worker
or in the triggerer, and commit the output only after every index succeeded.

:class:`KubernetesRuntime` is the operator's :class:`~airflow_batch_scoring.operators.runtimes.ScoringRuntime` for
Kubernetes. ``run`` and ``resume`` (after a deferral) both go through the driver's ``begin_job``/``finish_job``, so
resuming, checks, manifest and publishing are the local runtime's own.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from airflow_batch_scoring.driver.run import JobStart, begin_job, execute_job, finish_job
from airflow_batch_scoring.errors import ConfigurationError, ReplicaError
from airflow_batch_scoring.hooks.data import data_access
from airflow_batch_scoring.io.files import InputFile, normalize_uri, scheme_of
from airflow_batch_scoring.job import ModelSpec, ScoringJob
from airflow_batch_scoring.kubernetes import manifests
from airflow_batch_scoring.kubernetes.launcher import KubernetesLauncher
from airflow_batch_scoring.kubernetes.settings import KubernetesSettings
from airflow_batch_scoring.sinks import open_sink
from airflow_batch_scoring.specs import DataSpec

if TYPE_CHECKING:
    from airflow.sdk import Context

    from airflow_batch_scoring.operators.runtimes import ResolvedTask


def check_locations(*specs: tuple[str, DataSpec | str | None]) -> None:
    """Refuse a local path: pods run on other machines and cannot see the worker's disk.

    :param specs: ``(role, spec or URI)`` pairs (``source``, ``sink``, the staging folder).
    :raises ConfigurationError: naming the location and what to do instead.
    """
    for role, spec in specs:
        uri = data_access(spec).uri(spec) if isinstance(spec, DataSpec) else spec
        if uri is None:  # absent, or a database the pods reach over the network
            continue
        if scheme_of(normalize_uri(uri)) in ("file", "local"):
            raise ConfigurationError(
                f"runtime='kubernetes' needs the {role} on an object store the pods can reach (s3://, gs://, "
                f"abfs://), but {uri!r} is a path on the Airflow worker, which pods on other machines cannot see. "
                "Put the data in a bucket (with its conn_id), or use runtime='local'."
            )


def task_names(context: Context) -> tuple[str, str]:
    """The Job's name for this task instance (the same for every attempt) and a readable ``dag.task[map]/run``."""
    ti = context["ti"]
    map_index = getattr(ti, "map_index", -1)
    name = manifests.job_name(ti.dag_id, ti.task_id, ti.run_id, map_index)
    suffix = f"[{map_index}]" if map_index is not None and map_index >= 0 else ""
    return name, f"{ti.dag_id}.{ti.task_id}{suffix}/{ti.run_id}"


class KubernetesRuntime:
    """The replicas as the pods of one Indexed Job (:class:`KubernetesLauncher`).

    :param task: the resolved task (its ``kubernetes`` pod settings, ``deferrable``, ``kubernetes_conn_id``,
        ``poll_interval``, ``if_exists``, ...).
    :param context: the Airflow task context (the Job's name and labels).
    :param log: receives progress lines.
    """

    name = "kubernetes"

    def __init__(self, task: ResolvedTask, context: Context, log: Callable[[str], None]):
        self.task = task
        self.context = context
        self.log = log
        self.settings = self.settings_of(task)
        self.job_name, self.task_name = task_names(context)
        self.launcher: KubernetesLauncher | None = None

    @staticmethod
    def settings_of(task: ResolvedTask) -> KubernetesSettings:
        """The task's pod settings, with its connection and poll interval."""
        return KubernetesSettings.parse(
            task.kubernetes, kubernetes_conn_id=task.kubernetes_conn_id, poll_interval=task.poll_interval
        )

    @classmethod
    def check_settings(cls, kubernetes: Mapping[str, Any] | None) -> None:
        """Refuse unknown Kubernetes settings when the DAG is parsed."""
        KubernetesSettings.check_keys(kubernetes)

    def check_locations(self, source: DataSpec, sink: DataSpec) -> None:
        check_locations(("source", source), ("sink", sink))

    def start(self) -> None:
        """Nothing to start before the model is resolved: the pods start once the Job is created."""

    def prepare(self, model: ModelSpec, *, probabilities: bool, output_schema: Any) -> None:
        """Nothing to prepare: the pods load the model once the Job runs."""

    def run(self, job: ScoringJob, files: list[InputFile], options: Mapping[str, Any]) -> dict[str, Any]:
        """Score ``job`` on Kubernetes and return the summary; in deferrable mode, defer once the Job runs.

        :raises TaskDeferred: (deferrable) resumed in :meth:`resume` when the Job is done.
        """
        check_locations(("staging folder", job.staging_uri))
        job = replace(job, runtime_image=self.settings.image)  # in the manifest (and the run's fingerprint)
        keep = self.task.keep_on_failure
        launcher = self.launcher = KubernetesLauncher(
            self.settings, name=self.job_name, context=self.context, task=self.task_name,
            inputs=[f.to_dict() for f in files], log=self.log,
            finish_siblings=keep,  # a retry will come: other indexes may finish their shards first
        )
        if not self.task.deferrable:
            return execute_job(
                job, files, storage_options=options, log=self.log, launcher=launcher, if_exists=self.task.if_exists,
                keep_on_failure=keep,
            )
        start = begin_job(job, files, storage_options=options, log=self.log, if_exists=self.task.if_exists,
                          runtime=self.name)
        reference = None
        if start.todo:
            try:
                with tempfile.TemporaryDirectory(prefix="batch-scoring-job-") as folder:
                    job_path = os.path.join(folder, "job.json")
                    with open(job_path, "w") as f:
                        f.write(job.to_json())
                    reference = launcher.start(job_path, job.replicas, secrets=options, shards=start.todo)
            except Exception:
                if not keep:
                    open_sink(job, options.get("sink")).discard()
                raise
        if reference is None:
            return finish_job(job, files, start, storage_options=options, log=self.log, if_exists=self.task.if_exists,
                              keep_on_failure=keep, runtime=self.name)
        from airflow.providers.common.compat.sdk import TaskDeferred

        from airflow_batch_scoring.triggers.kubernetes import ScoringJobTrigger

        raise TaskDeferred(
            trigger=ScoringJobTrigger(
                name=reference["name"],
                namespace=reference["namespace"],
                container=manifests.CONTAINER,
                kubernetes_conn_id=self.settings.kubernetes_conn_id,
                in_cluster=self.settings.in_cluster,
                config_file=self.settings.config_file,
                cluster_context=self.settings.cluster_context,
                poll_interval=self.settings.poll_interval,
                resume={"start": start.to_dict(), "reference": reference, "attempt": job.attempt},
                grace_period_seconds=launcher.grace().grace_s,
            ),
            method_name="execute_complete",
        )

    def resume(self, event: Mapping[str, Any] | None, options: Mapping[str, Any]) -> dict[str, Any]:
        """Resume a deferred task: judge the finished Job (failed indexes and why), then commit the output.

        The trigger's event carries what :meth:`run` left for the resumption: the run's start, the Job's reference
        and the attempt that deferred (it holds the run's lease, even when it reattached to a Job an earlier attempt
        started).
        """
        event = dict(event or {})
        resume = event.get("resume") or {}
        if not resume.get("reference"):
            raise ReplicaError(f"The task resumed without its Kubernetes Job's reference (event {event!r}); retry it.")
        start, reference, attempt = resume["start"], resume["reference"], resume.get("attempt")
        launcher = self.launcher = KubernetesLauncher.reattach(
            self.settings, reference, context=self.context, task=self.task_name, log=self.log
        )
        if event.get("summary"):
            self.log(str(event["summary"]))
        job, inputs = launcher.read_spec(options.get("sink"))
        if attempt:
            job = replace(job, attempt=attempt)
        files = [InputFile(**item) for item in inputs]

        def judge() -> None:
            if event.get("status") == "error":
                raise ReplicaError(
                    f"Waiting for Job {launcher.namespace}/{launcher.name} failed ({event.get('summary')}); nothing "
                    "was published. A retry reattaches to the Job if it is still running."
                )
            launcher.collect()

        return finish_job(
            job, files, JobStart.from_dict(start), storage_options=options, log=self.log,
            if_exists=self.task.if_exists, keep_on_failure=self.task.keep_on_failure, runtime=self.name, launch=judge,
        )

    def kill(self) -> None:
        """Delete the Job (its pods, Secret and ConfigMap go with it)."""
        if self.launcher is not None:
            self.launcher.kill()

    def close(self) -> None:
        """Nothing prestarted to release."""
