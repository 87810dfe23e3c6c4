"""Whether a retry can help: what a replica reports keeps it, and an input that is not there yet stays retryable."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from airflow_batch_scoring.errors import InputError, ModelError, ReplicaError, StorageError, is_retryable
from airflow_batch_scoring.runtime.protocol import error_from_marker


def test_what_a_replica_reports_keeps_whether_a_retry_can_help():
    outage = {"type": "StorageError", "message": "a store could not be reached", "retryable": True}
    assert is_retryable(error_from_marker(json.dumps(outage)))
    killed = {"type": "ReplicaError", "message": "MemoryError"}
    assert is_retryable(error_from_marker(json.dumps(killed)))
    bad = {"type": "InputError", "message": "line 3, column 'f2': ...", "retryable": False}
    assert isinstance(error_from_marker(json.dumps(bad)), InputError)
    assert not is_retryable(error_from_marker(json.dumps(bad)))
    # a model that could not be downloaded because the store is down is retried, whatever class reported it
    try:
        try:
            raise ConnectionError("connection refused")
        except ConnectionError as cause:
            raise ModelError("Cannot download the model") from cause
    except ModelError as err:
        assert is_retryable(err)
    assert not is_retryable(ModelError("no such model")) and is_retryable(StorageError("down"))
    assert is_retryable(ReplicaError("killed")) and is_retryable(RuntimeError("unexpected"))


def test_an_input_that_is_not_there_yet_stays_retryable(tmp_path: Path):
    """A file that lands after the task started is something a retry can change (retry_delay waits for it)."""
    from airflow_batch_scoring.io.files import list_inputs

    for uri in ((tmp_path / "later.csv").as_uri(), (tmp_path / "*.csv").as_uri()):
        with pytest.raises(InputError) as err:
            list_inputs(uri)
        assert is_retryable(err.value), uri
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="holds no files") as err:
        list_inputs((tmp_path / "empty").as_uri())
    assert is_retryable(err.value)
