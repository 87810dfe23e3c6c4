"""The task execution's credentials: one immutable snapshot, taken once and handed down as it is."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import pytest

from airflow_batch_scoring.runtime.secrets import SECRETS_FILE_ENV, Credentials, read_secrets

SOURCE = {"key": "AKIA-source", "secret": "s3cr3t-source", "client_kwargs": {"region_name": "eu-west-1"}}
SINK = {"sqlalchemy_url": "postgresql://scorer:pa55@db/warehouse"}


def test_a_snapshot_cannot_be_changed_by_whoever_gave_it_or_uses_it():
    given = {"source": json.loads(json.dumps(SOURCE)), "sink": dict(SINK)}
    snapshot = Credentials.of(given)
    given["source"]["secret"] = "changed"
    given["source"]["client_kwargs"]["region_name"] = "changed"
    part = snapshot["source"]
    part["key"] = "changed"
    part["client_kwargs"]["region_name"] = "changed"
    snapshot.get("sink", {})["sqlalchemy_url"] = "changed"
    assert snapshot == {"source": SOURCE, "sink": SINK}
    with pytest.raises(AttributeError, match="snapshot"):
        snapshot._parts = {}  # type: ignore[misc]
    with pytest.raises(TypeError):
        snapshot["sink"] = {}  # type: ignore[index]
    assert Credentials.of(snapshot) is snapshot
    assert Credentials.of(None) == Credentials() == {"source": {}, "sink": {}}
    with pytest.raises(ValueError, match=r"a 'source' and a 'sink' part, not \['model'\]"):
        Credentials.of({"model": {}})


def test_a_snapshot_never_shows_a_secret_and_crosses_processes_only_as_json(tmp_path: Path, monkeypatch):
    snapshot = Credentials(SOURCE, SINK)
    for text in (repr(snapshot), str(snapshot), f"{snapshot!r}"):
        assert "s3cr3t" not in text and "pa55" not in text and "AKIA" not in text
    assert repr(snapshot) == "Credentials(source=<client_kwargs, key, secret>, sink=<sqlalchemy_url>)"
    with pytest.raises(TypeError, match="not pickled"):
        pickle.dumps(snapshot)
    assert json.loads(snapshot.to_json()) == {"source": SOURCE, "sink": SINK}
    assert json.loads(json.dumps(dict(snapshot))) == {"source": SOURCE, "sink": SINK}  # as the launchers send it
    (tmp_path / "secrets.json").write_text(snapshot.to_json())
    monkeypatch.setenv(SECRETS_FILE_ENV, str(tmp_path / "secrets.json"))
    read = read_secrets(from_stdin=False)
    assert isinstance(read, Credentials) and read == snapshot
    monkeypatch.delenv(SECRETS_FILE_ENV)
    assert read_secrets(from_stdin=False) == Credentials()
