"""Reading an Indexed Job and its pods: is it running, done or failed, and why did each failed index fail.

Pure functions over objects as the Kubernetes API returns them (JSON dictionaries in camelCase), so that the waiting
loop on the worker, the trigger in the triggerer and the tests all judge a Job the same way, whichever client (sync,
asyncio) fetched it.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from airflow_batch_scoring.runtime.protocol import ERROR_MARKER

JOB_NAME_LABEL = "batch.kubernetes.io/job-name"
#: what a poll lists of a Job's pods: only those still pending (an image that cannot be pulled, no node for them),
#: the only pod states :func:`assess` reads that the Job's own status does not carry. A poll of a 1,000-index Job
#: then reads a few pods, not 1,000 (about 3 KiB each); the finished Job's failures read them all, once.
PENDING_PODS = "status.phase=Pending"
CONTROLLER_UID_LABEL = "batch.kubernetes.io/controller-uid"
INDEX_KEY = "batch.kubernetes.io/job-completion-index"
#: Waiting reasons of a container whose image cannot be pulled.
IMAGE_PULL_REASONS = ("ErrImagePull", "ImagePullBackOff", "InvalidImageName", "ErrImageNeverPull")
#: Image pull errors Kubernetes retries by itself (as the cncf-kubernetes provider judges them): not a failure yet.
TRANSIENT_PULL_PATTERNS = (
    "pull qps exceeded", "rate limit", "too many requests", "quota exceeded", "temporarily unavailable", "timeout",
    "account limit", "bad gateway", "service unavailable", "gateway timeout",
)
RUNNING, SUCCEEDED, FAILED = "running", "succeeded", "failed"


def parse_indexes(text: str | None) -> list[int]:
    """``"0,2-4"`` (the Job's ``completedIndexes``/``failedIndexes``) -> ``[0, 2, 3, 4]``."""
    result: list[int] = []
    for part in (text or "").split(","):
        part = part.strip()
        if not part:
            continue
        first, _, last = part.partition("-")
        result.extend(range(int(first), int(last or first) + 1))
    return result


def pod_index(pod: Mapping[str, Any]) -> int | None:
    """The completion index of a pod of an Indexed Job."""
    meta = pod.get("metadata") or {}
    value = (meta.get("annotations") or {}).get(INDEX_KEY) or (meta.get("labels") or {}).get(INDEX_KEY)
    return int(value) if value is not None and str(value).isdigit() else None


def pods_of(job: Mapping[str, Any], pods: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The pods that belong to ``job`` (by owner uid or controller-uid label, else by job-name label)."""
    meta = job.get("metadata") or {}
    uid, name = meta.get("uid"), meta.get("name")
    result = []
    for pod in pods:
        pod_meta = pod.get("metadata") or {}
        labels = pod_meta.get("labels") or {}
        owners = [o.get("uid") for o in pod_meta.get("ownerReferences") or []]
        if uid and (uid in owners or labels.get(CONTROLLER_UID_LABEL) == uid):
            result.append(dict(pod))
        elif not uid and (labels.get(JOB_NAME_LABEL) == name or labels.get("job-name") == name):
            result.append(dict(pod))
    return sorted(result, key=lambda p: ((p.get("metadata") or {}).get("creationTimestamp") or "", _name(p)))


def _name(obj: Mapping[str, Any]) -> str:
    return (obj.get("metadata") or {}).get("name") or "?"


def _container_status(pod: Mapping[str, Any], container: str) -> dict[str, Any]:
    for status in (pod.get("status") or {}).get("containerStatuses") or []:
        if status.get("name") == container:
            return status
    statuses = (pod.get("status") or {}).get("containerStatuses") or []
    return statuses[0] if statuses else {}


def image_pull_problem(pod: Mapping[str, Any], container: str) -> dict[str, str] | None:
    """The waiting state of a container whose image cannot be pulled (not a transient registry error), or ``None``."""
    waiting = (_container_status(pod, container).get("state") or {}).get("waiting") or {}
    reason = waiting.get("reason")
    if reason not in IMAGE_PULL_REASONS:
        return None
    message = waiting.get("message") or ""
    if reason in ("ErrImagePull", "ImagePullBackOff") and any(p in message.lower() for p in TRANSIENT_PULL_PATTERNS):
        return None
    return {"reason": reason, "message": message}


def _condition(job: Mapping[str, Any], kind: str) -> dict[str, Any] | None:
    for condition in (job.get("status") or {}).get("conditions") or []:
        if condition.get("type") == kind and str(condition.get("status")) == "True":
            return condition
    return None


@dataclass
class Assessment:
    """Where a Job stands.

    :param state: ``running``, ``succeeded`` or ``failed``.
    :param summary: one line for the task log (counts, and why pods wait).
    :param reason: why it failed, at Job level (``BackoffLimitExceeded``, ``DeadlineExceeded``, an image pull).
    :param failed: the indexes that failed for good (``failedIndexes``), also while the others still run.
    """

    state: str
    summary: str
    reason: str | None = None
    completed: list[int] = field(default_factory=list)
    failed: list[int] = field(default_factory=list)


@dataclass
class SiblingGrace:
    """Whether to stop waiting for a Job whose other indexes still run after one failed for good.

    The Job is built without ``maxFailedIndexes`` while the task will be retried, so Kubernetes lets the other indexes
    finish their shards; the waiting loop (on the worker or in the triggerer) gives them ``grace_s`` seconds from the
    first look at a failed index, then stops (the task deletes the Job). ``grace_s`` = 0 stops at once.
    """

    grace_s: float
    since: float | None = None

    def stop(self, assessment: Assessment, now: float) -> tuple[bool, str | None]:
        """``(stop waiting, a line for the log or None)`` for a Job judged ``assessment`` at ``now`` (monotonic)."""
        if assessment.state != RUNNING or not assessment.failed:
            return assessment.state != RUNNING, None
        if self.grace_s <= 0:
            return True, f"Index(es) {assessment.failed} failed: stopping the Job"
        if self.since is None:
            self.since = now
            return False, (
                f"Index(es) {assessment.failed} failed; the task will be retried, so the other indexes may finish "
                f"their shards first (up to {self.grace_s:g}s, kubernetes['grace_period_seconds']) for the retry to "
                "reuse"
            )
        if now - self.since >= self.grace_s:
            return True, (
                f"Index(es) {assessment.failed} failed and the {self.grace_s:g}s grace period "
                "(kubernetes['grace_period_seconds']) has passed: stopping the Job"
            )
        return False, None


def assess(job: Mapping[str, Any], pods: Iterable[Mapping[str, Any]], container: str) -> Assessment:
    """Judge a Job from its status and its pods' states."""
    status = job.get("status") or {}
    completions = (job.get("spec") or {}).get("completions") or 0
    completed = parse_indexes(status.get("completedIndexes"))
    failed_indexes = parse_indexes(status.get("failedIndexes"))
    own = pods_of(job, pods)
    counts = (
        f"{len(completed) if completed else status.get('succeeded') or 0}/{completions} index(es) succeeded, "
        f"{status.get('active') or 0} running, {status.get('failed') or 0} failed pod(s)"
    )
    name = _name(job)
    if _condition(job, "Complete") or _condition(job, "SuccessCriteriaMet"):
        return Assessment(SUCCEEDED, f"Job {name} complete: {counts}", completed=completed)
    failed = _condition(job, "Failed") or _condition(job, "FailureTarget")
    if failed:
        reason = f"{failed.get('reason') or 'Failed'}: {failed.get('message') or ''}".strip().rstrip(":")
        return Assessment(FAILED, f"Job {name} failed ({reason}): {counts}", reason=reason, completed=completed,
                          failed=failed_indexes)
    for pod in own:
        problem = image_pull_problem(pod, container)
        if problem:
            return Assessment(
                FAILED, f"Job {name}: pod {_name(pod)} cannot pull its image ({problem['reason']})",
                reason=problem["reason"], completed=completed, failed=failed_indexes,
            )
    waiting = sorted({
        condition.get("message") or condition.get("reason") or "unschedulable"
        for pod in own if (pod.get("status") or {}).get("phase") == "Pending"
        for condition in (pod.get("status") or {}).get("conditions") or []
        if condition.get("type") == "PodScheduled" and condition.get("status") == "False"
    })
    note = f"; pods wait for a node: {waiting[0]}" if waiting else ""
    if failed_indexes:
        note += f"; index(es) {failed_indexes} failed"
    return Assessment(RUNNING, f"Job {name}: {counts}{note}", completed=completed, failed=failed_indexes)


@dataclass
class Failure:
    """Why one index failed.

    :param error: the replica's own error (``{"type": ..., "message": ...}``) when it reported one.
    """

    index: int | None
    shard: int | None
    pod: str
    message: str
    error: dict[str, Any] | None = None


def _limit(pod: Mapping[str, Any], container: str, resource: str) -> str | None:
    for spec in (pod.get("spec") or {}).get("containers") or []:
        if spec.get("name") == container:
            return ((spec.get("resources") or {}).get("limits") or {}).get(resource)
    return None


def _image(pod: Mapping[str, Any], container: str) -> str:
    for spec in (pod.get("spec") or {}).get("containers") or []:
        if spec.get("name") == container:
            return spec.get("image") or "?"
    return _container_status(pod, container).get("image") or "?"


def _marker(log: str) -> dict[str, Any] | None:
    for line in reversed(log.splitlines()):
        if line.startswith(ERROR_MARKER):
            try:
                return json.loads(line[len(ERROR_MARKER) :])
            except ValueError:
                return None
    return None


def describe_pod(
    pod: Mapping[str, Any], container: str, shards: list[int], log_tail: Callable[[str], str], tail_lines: int = 20
) -> Failure:
    """Say why ``pod`` failed: OOMKilled with its memory limit, an image that cannot be pulled, the deadline, or
    a non-zero exit with the replica's own error (or the tail of its log)."""
    name = _name(pod)
    index = pod_index(pod)
    shard = shards[index] if index is not None and index < len(shards) else index
    where = f"index {index} (shard {shard}), pod {name}"
    problem = image_pull_problem(pod, container)
    if problem:
        image = _image(pod, container)
        return Failure(index, shard, name, (
            f"{where}: cannot pull the image {image!r} ({problem['reason']}: {problem['message'] or 'no detail'}). "
            "Check kubernetes['image'] (registry, name and tag, pushed?) and kubernetes['image_pull_secrets'] for "
            "a private registry."
        ))
    status = pod.get("status") or {}
    terminated = (_container_status(pod, container).get("state") or {}).get("terminated") or {}
    if terminated.get("reason") == "OOMKilled":
        limit = _limit(pod, container, "memory")
        if limit:
            text = (
                f"{where}: OOMKilled: the container reached its memory limit of {limit} "
                "(kubernetes['resources']['limits']['memory']). Raise the limit, or lower batch_size."
            )
        else:
            text = (
                f"{where}: OOMKilled: the node ran out of memory (the container has no memory limit). Set "
                "kubernetes['resources'] requests and limits for memory, or lower batch_size."
            )
        return Failure(index, shard, name, text)
    if status.get("reason") == "DeadlineExceeded":
        return Failure(index, shard, name, f"{where}: stopped at the deadline (kubernetes['active_deadline_seconds']).")
    if status.get("reason") and not terminated:
        return Failure(index, shard, name, f"{where}: {status['reason']}: {status.get('message') or ''}".rstrip(": "))
    code = terminated.get("exitCode")
    log = log_tail(name) or terminated.get("message") or ""
    error = _marker(log)
    if error:
        return Failure(index, shard, name, f"{where}: {error.get('type')}: {error.get('message')}", error)
    lines = [line for line in log.splitlines() if not line.startswith(ERROR_MARKER)][-tail_lines:]
    exited = f"exited with code {code}" if code is not None else f"failed ({status.get('phase') or 'unknown'})"
    return Failure(index, shard, name, f"{where}: {exited}. Its last log lines:\n" + "\n".join(lines))


def failures(
    job: Mapping[str, Any],
    pods: Iterable[Mapping[str, Any]],
    container: str,
    shards: list[int],
    log_tail: Callable[[str], str],
) -> list[Failure]:
    """One :class:`Failure` per failed index (its latest failed pod), and one per pod that cannot pull its image."""
    own = pods_of(job, pods)
    status = job.get("status") or {}
    completed = set(parse_indexes(status.get("completedIndexes")))
    latest: dict[int, dict[str, Any]] = {}
    for pod in own:  # oldest first: a later pod of the same index replaces an earlier one
        index = pod_index(pod)
        if index is None or index in completed:
            continue
        if (pod.get("status") or {}).get("phase") == "Failed" or image_pull_problem(pod, container):
            latest[index] = pod
    result = [describe_pod(latest[index], container, shards, log_tail) for index in sorted(latest)]
    for index in sorted(set(parse_indexes(status.get("failedIndexes"))) - set(latest)):
        shard = shards[index] if index < len(shards) else index
        result.append(Failure(index, shard, "?", f"index {index} (shard {shard}) failed; its pods are gone."))
    return result
