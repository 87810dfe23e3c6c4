"""``BatchScoringOperator(runtime="kubernetes")``: launch (or reattach to) the Indexed Job, wait for it on the worker
or in the triggerer, and commit the output only after every index succeeded.

The operator calls :func:`run` where the local runtime calls ``execute_job``, and :func:`complete` from
``execute_complete`` after a deferral. Both go through the driver's ``begin_job``/``finish_job``, so resuming,
checks, manifest and publishing are the local runtime's own.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from airflow_batch_scoring.driver.run import JobStart, begin_job, execute_job, finish_job
from airflow_batch_scoring.errors import ConfigurationError, ReplicaError
from airflow_batch_scoring.io.files import InputFile, normalize_uri, scheme_of
from airflow_batch_scoring.job import DataSpec, ScoringJob
from airflow_batch_scoring.kubernetes import manifests
from airflow_batch_scoring.kubernetes.launcher import KubernetesLauncher
from airflow_batch_scoring.kubernetes.settings import KubernetesSettings
from airflow_batch_scoring.sinks import open_sink

if TYPE_CHECKING:
    from airflow.sdk import BaseOperator, Context


def check_locations(*specs: tuple[str, DataSpec | str | None]) -> None:
    """Refuse a local path: pods run on other machines and cannot see the worker's disk.

    :param specs: ``(role, spec or URI)`` pairs (``source``, ``sink``, the staging folder).
    :raises ConfigurationError: naming the location and what to do instead.
    """
    for role, spec in specs:
        if spec is None or (isinstance(spec, DataSpec) and getattr(spec, "is_sql", False)):
            continue
        uri = spec.uri if isinstance(spec, DataSpec) else spec
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


def settings_of(operator: BaseOperator) -> KubernetesSettings:
    """The operator's ``kubernetes`` settings; ``deferrable`` defaults to ``[operators] default_deferrable``, as for
    the community operators."""
    settings = KubernetesSettings.parse(operator.kubernetes)
    if not (isinstance(operator.kubernetes, Mapping) and "deferrable" in operator.kubernetes):
        from airflow.sdk.configuration import conf

        settings.deferrable = conf.getboolean("operators", "default_deferrable", fallback=False)
    return settings


def launcher_for(
    operator: BaseOperator, context: Context, settings: KubernetesSettings, inputs: list[dict[str, Any]] | None = None
) -> KubernetesLauncher:
    name, task = task_names(context)
    return KubernetesLauncher(settings, name=name, context=context, task=task, inputs=inputs, log=operator.log.info)


def run(
    operator: BaseOperator,
    context: Context,
    job: ScoringJob,
    files: list[InputFile],
    options: Mapping[str, Any],
    *,
    if_exists: str,
    keep_on_failure: bool,
) -> dict[str, Any]:
    """Score ``job`` on Kubernetes and return the summary; in deferrable mode, defer once the Job runs.

    :raises TaskDeferred: (deferrable) resumed in :func:`complete` when the Job is done.
    """
    settings = settings_of(operator)
    check_locations(("staging folder", job.staging_uri))
    job.runtime_image = settings.image  # recorded in the manifest (and part of the run's fingerprint)
    launcher = launcher_for(operator, context, settings, [f.to_dict() for f in files])
    launcher.finish_siblings = keep_on_failure  # a retry will come: other indexes may finish their shards first
    operator._launcher = launcher
    if not settings.deferrable:
        return execute_job(
            job, files, storage_options=options, log=operator.log.info, launcher=launcher, if_exists=if_exists,
            keep_on_failure=keep_on_failure,
        )
    start = begin_job(job, files, storage_options=options, log=operator.log.info, if_exists=if_exists,
                      runtime=launcher.runtime)
    reference = None
    if start.todo:
        try:
            with tempfile.TemporaryDirectory(prefix="batch-scoring-job-") as folder:
                job_path = os.path.join(folder, "job.json")
                with open(job_path, "w") as f:
                    f.write(job.to_json())
                reference = launcher.start(job_path, job.replicas, secrets=options, shards=start.todo)
        except Exception:
            if not keep_on_failure:
                open_sink(job, options.get("sink")).discard()
            raise
    if reference is None:
        return finish_job(job, files, start, storage_options=options, log=operator.log.info, if_exists=if_exists,
                          keep_on_failure=keep_on_failure, runtime=launcher.runtime)
    from airflow_batch_scoring.triggers.kubernetes import ScoringJobTrigger

    operator.defer(
        trigger=ScoringJobTrigger(
            name=reference["name"],
            namespace=reference["namespace"],
            container=manifests.CONTAINER,
            kubernetes_conn_id=settings.kubernetes_conn_id,
            in_cluster=settings.in_cluster,
            config_file=settings.config_file,
            cluster_context=settings.cluster_context,
            poll_interval=settings.poll_interval,
            resume={"start": start.to_dict(), "reference": reference, "attempt": job.attempt},
            grace_period_seconds=launcher.grace().grace_s,
        ),
        method_name="execute_complete",
    )
    raise AssertionError("defer() returns only by raising TaskDeferred")  # pragma: no cover


def complete(
    operator: BaseOperator,
    context: Context,
    event: Mapping[str, Any] | None,
    options: Mapping[str, Any],
    *,
    if_exists: str,
    keep_on_failure: bool,
) -> dict[str, Any]:
    """Resume a deferred task: judge the finished Job (failed indexes and why), then commit the output.

    The trigger's event carries what :func:`run` left for the resumption: the run's start, the Job's reference and
    the attempt that deferred (it holds the run's lease, even when it reattached to a Job an earlier attempt started).
    """
    event = dict(event or {})
    resume = event.get("resume") or {}
    if not resume.get("reference"):
        raise ReplicaError(f"The task resumed without its Kubernetes Job's reference (event {event!r}); retry it.")
    start, reference, attempt = resume["start"], resume["reference"], resume.get("attempt")
    settings = settings_of(operator)
    launcher = launcher_for(operator, context, settings)
    launcher.name = reference["name"]
    launcher.namespace = reference["namespace"]
    launcher.shards = list(reference.get("shards") or [])
    launcher._started = True
    operator._launcher = launcher
    if event.get("summary"):
        operator.log.info("%s", event["summary"])
    job, inputs = launcher.read_spec()
    if attempt:
        job.attempt = attempt
    files = [InputFile(**item) for item in inputs]

    def judge() -> None:
        if event.get("status") == "error":
            raise ReplicaError(
                f"Waiting for Job {launcher.namespace}/{launcher.name} failed ({event.get('summary')}); nothing was "
                "published. A retry reattaches to the Job if it is still running."
            )
        launcher.collect()

    return finish_job(
        job, files, JobStart.from_dict(start), storage_options=options, log=operator.log.info, if_exists=if_exists,
        keep_on_failure=keep_on_failure, runtime=launcher.runtime, launch=judge,
    )
