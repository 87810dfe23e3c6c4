"""How a replica reports its error to whoever launched it (a local process, a Kubernetes pod).

On failure a replica prints one line ``BATCH_SCORING_ERROR {"type": ..., "message": ..., "retryable": ...}`` (see
:mod:`airflow_batch_scoring.runtime.cli`). The launcher reads it from the process's output or the pod's log and
re-raises the error with :func:`error_from_marker`. Both sides import this module, never each other.
"""

from __future__ import annotations

import json

from airflow_batch_scoring import errors

#: the prefix of the line a failed replica prints, followed by the error as JSON.
ERROR_MARKER = "BATCH_SCORING_ERROR "


def error_from_marker(payload: str) -> Exception:
    """Rebuild the exception a replica reported (same class when it is one of ours, and whether a retry can help).

    :param payload: the JSON after :data:`ERROR_MARKER`.
    """
    data = json.loads(payload)
    cls = getattr(errors, data.get("type", ""), None)
    if not (isinstance(cls, type) and issubclass(cls, errors.BatchScoringError)):
        cls = errors.ReplicaError
    error = cls.__new__(cls)
    Exception.__init__(error, data.get("message", "the replica failed"))
    if isinstance(data.get("retryable"), bool):  # what the replica knew (a store it could not reach, say)
        error.retryable = data["retryable"]
    return error
