"""The operators' failure boundary: an error a retry cannot change fails the task at once, without its retries."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from airflow.providers.common.compat.sdk import AirflowFailException

from airflow_batch_scoring.errors import BatchScoringError, is_retryable


@contextmanager
def no_retry_for_user_errors() -> Iterator[None]:
    """Turn an error only the user can fix (a setting, the schema, bad input in ``fail`` mode, a bad-row threshold,
    the model; raised here or reported by a replica) into ``AirflowFailException``: Airflow then fails the task
    without retrying it. A store that could not be reached, a lost replica and anything unexpected stay retryable.

    :raises AirflowFailException: with the error's class and message (its cause is chained).
    """
    try:
        yield
    except BatchScoringError as err:
        if is_retryable(err):
            raise
        raise AirflowFailException(
            f"{type(err).__name__}: {err} [not retried: running the task again cannot change this; fix the cause, "
            "then clear the task]"
        ) from err
