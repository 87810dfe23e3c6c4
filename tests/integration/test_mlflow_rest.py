"""``models:/`` on a real ``mlflow server`` through its REST API (no MLflow in the driver): the same versions, files,
digests and errors as MlflowClient, the credentials MLflow would send and never shown."""

from __future__ import annotations

import base64
import json
import logging
import subprocess
import sys
import textwrap
from dataclasses import replace
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from airflow_batch_scoring.artifacts.process import process_model
from airflow_batch_scoring.errors import ModelError
from airflow_batch_scoring.flavors import flavor_named
from airflow_batch_scoring.flavors.mlflow import _ClientRegistry, resolve_registry_uri
from airflow_batch_scoring.flavors.mlflow_registry import parse_reference, resolve_reference
from airflow_batch_scoring.flavors.mlflow_rest import SWITCH, RestRegistry
from tests.support.helpers import FEATURES, make_frame
from tests.support.mlflow_server import MODEL, RegisteredOnServer, Relay, register_on_server

SECRET = "rest-token-Qx81vLm"


@pytest.fixture(scope="module")
def served(mlflow_server, tmp_path_factory: pytest.TempPathFactory) -> RegisteredOnServer:
    return register_on_server(mlflow_server.endpoint, tmp_path_factory.mktemp("served"))


def test_references_resolve_to_the_versions_mlflowclient_gives(served: RegisteredOnServer):
    url = served.url
    rest = RestRegistry.for_uris(url, None)
    assert rest is not None
    expected = {"@champion": "1", "/1": "1", "/2": "2", "/latest": "2", "/None": "2"}
    for suffix, version in expected.items():
        reference = parse_reference(f"models:/{MODEL}{suffix}")
        through_rest = resolve_reference(reference, rest, url)
        through_client = resolve_reference(reference, _ClientRegistry(url, None), url)
        assert through_rest == through_client, suffix
        assert through_rest[1] == version and through_rest[2] == f"models:/{MODEL}/{version}"
    assert through_rest[3]["source"].startswith("models:/m-")  # version 2 is a logged model; version 1 a run's


def test_downloaded_model_equals_the_mlflow_path(served: RegisteredOnServer, tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch):
    rows = make_frame(50, seed=3)[FEATURES]
    for reference in (f"models:/{MODEL}@champion", f"models:/{MODEL}/2"):  # runs:/ and mlflow-artifacts:/ sources
        rest = process_model(reference, str(tmp_path / "rest"), tracking_uri=served.url)
        monkeypatch.setenv(SWITCH, "0")
        client = process_model(reference, str(tmp_path / "client"), tracking_uri=served.url)
        monkeypatch.delenv(SWITCH)
        assert rest.digest == client.digest and rest.digest
        assert Path(rest.path).name == Path(client.path).name
        assert replace(rest, path=client.path) == client
        assert not list(Path(rest.path).parent.glob("*.partial-*"))
        predictor = flavor_named(rest.flavor).load(rest, probabilities=False, output_schema=None)
        predicted = predictor.predict(pa.Table.from_pandas(rows, preserve_index=False))
        assert np.array_equal(predicted.column("prediction").to_numpy(), served.estimator.predict(rows))


@pytest.mark.parametrize("reference", [f"models:/{MODEL}@nope", "models:/no-such-model@champion",
                                       f"models:/{MODEL}/9", "models:/no-such-model/latest",
                                       f"models:/{MODEL}/Production"])
def test_a_missing_model_gives_the_same_error(served: RegisteredOnServer, reference: str,
                                              monkeypatch: pytest.MonkeyPatch):
    messages = []
    for switch in ("1", "0"):
        monkeypatch.setenv(SWITCH, switch)
        with pytest.raises(ModelError) as raised:
            resolve_registry_uri(reference, served.url)
        assert not raised.value.retryable
        messages.append(str(raised.value))
    assert messages[0] == messages[1]
    assert reference in messages[0]
    assert "Check the name" in messages[0] or "has no version in stage 'Production'" in messages[0]


def test_no_mlflow_import_and_the_credentials_mlflow_sends(served: RegisteredOnServer, tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch, caplog):
    relay = Relay(served.url).start()
    try:
        script = textwrap.dedent(f"""
            import json, sys
            from airflow_batch_scoring.artifacts.process import process_model
            from airflow_batch_scoring.errors import ModelError
            spec = process_model("models:/{MODEL}@champion", sys.argv[1], tracking_uri="{relay.url}")
            try:
                process_model("models:/{MODEL}@nope", sys.argv[1], tracking_uri="{relay.url}")
            except ModelError as err:
                error = str(err)
            print(json.dumps({{"digest": spec.digest, "error": error, "mlflow": "mlflow" in sys.modules}}))
        """)
        env = {"PATH": "/usr/bin:/bin", "MLFLOW_TRACKING_TOKEN": SECRET, "MLFLOW_DISABLE_TELEMETRY": "true",
               "HOME": str(tmp_path), "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
        done = subprocess.run([sys.executable, "-c", script, str(tmp_path / "model")], env=env, capture_output=True,
                              text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        result = json.loads(done.stdout)
        assert result["mlflow"] is False and result["digest"].startswith("sha256:")
        assert "no alias 'nope'" in result["error"]
        assert SECRET not in done.stdout + done.stderr
        assert relay.seen and all(auth == f"Bearer {SECRET}" for _, _, auth in relay.seen)
        assert any(path.startswith("/api/2.0/mlflow-artifacts/artifacts/") for _, path, _ in relay.seen)

        # basic auth wins over the token, as in MLflow: the same header from both clients
        monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", SECRET)
        monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "scorer")
        monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", SECRET)
        relay.seen.clear()
        rest = RestRegistry.for_uris(relay.url, None)
        assert rest is not None
        with caplog.at_level(logging.DEBUG):
            rest.version(MODEL, "1")
            _ClientRegistry(relay.url, None).version(MODEL, "1")
            with pytest.raises(ModelError) as raised:
                resolve_registry_uri(f"models:/{MODEL}@nope", relay.url)
        basic = "Basic " + base64.b64encode(f"scorer:{SECRET}".encode()).decode()
        assert [auth for _, _, auth in relay.seen[:2]] == [basic, basic]
        assert SECRET not in str(raised.value) and SECRET not in caplog.text and SECRET not in repr(rest)
    finally:
        relay.stop()
