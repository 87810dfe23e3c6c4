"""A real ``mlflow server`` on loopback (SQLite store, artifacts served by the server: ``mlflow-artifacts:/``), a
model registered on it without touching the process's MLflow settings, and a recording HTTP relay in front of it.

tests/conftest.py starts the server once a session (fixture ``mlflow_server``).
"""

from __future__ import annotations

import http.server
import os
import sys
import threading
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.support.servers import Server, _start, free_port

BIN = Path(sys.executable).parent
MODEL = "rest-model"


def start_mlflow_server(folder: Path) -> Server:
    """``mlflow server`` with one worker on a free port of 127.0.0.1; its own store, artifacts served by it."""
    folder.mkdir(parents=True, exist_ok=True)
    port = free_port()
    command = [
        str(BIN / "mlflow"), "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
        "--backend-store-uri", f"sqlite:///{folder / 'mlflow.db'}",
        "--artifacts-destination", str(folder / "artifacts"),
    ]
    # Without MLflow 3's job runner: seven huey consumer processes the registry does not need (slower start and stop).
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_TRACKING")}
    env["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] = "false"
    return _start("mlflow", command, folder, f"http://127.0.0.1:{port}/health", env=env)


@dataclass
class RegisteredOnServer:
    """``MODEL`` on the server: version 1 from a run's artifacts (``runs:/`` source), version 2 a logged model
    (``models:/m-...``, MLflow 3's default), ``@champion`` on version 1; and the fitted estimator."""

    url: str
    estimator: Any


def register_on_server(url: str, folder: Path) -> RegisteredOnServer:
    """Register ``MODEL`` twice through an explicit client (never ``mlflow.set_tracking_uri``: the session's other
    tests use the SQLite registry of ``MLFLOW_TRACKING_URI``)."""
    import mlflow
    from mlflow.models import infer_signature
    from sklearn.ensemble import HistGradientBoostingRegressor

    from tests.support.helpers import FEATURES, make_frame

    train = make_frame(500, seed=7)
    x, y = train[FEATURES], train["f0"] * 2 - train["f1"]
    estimator = HistGradientBoostingRegressor(max_iter=5, random_state=0).fit(x, y)
    saved = folder / "model"
    mlflow.sklearn.save_model(estimator, str(saved), signature=infer_signature(x, estimator.predict(x)),
                              serialization_format="cloudpickle", pip_requirements=["scikit-learn"])
    client = mlflow.MlflowClient(tracking_uri=url, registry_uri=url)
    experiment = client.create_experiment("rest-tests")
    run = client.create_run(experiment)
    client.log_artifacts(run.info.run_id, str(saved), "model")
    client.set_terminated(run.info.run_id)
    client.create_registered_model(MODEL)
    client.create_model_version(MODEL, f"runs:/{run.info.run_id}/model", run.info.run_id)
    logged = client.create_logged_model(experiment, name="model")
    client.log_model_artifacts(logged.model_id, str(saved))
    client.finalize_logged_model(logged.model_id, "READY")
    client.create_model_version(MODEL, f"models:/{logged.model_id}", model_id=logged.model_id)
    client.set_registered_model_alias(MODEL, "champion", "1")
    return RegisteredOnServer(url, estimator)


@dataclass
class Relay:
    """An HTTP relay to ``upstream`` that records each request's method, path and ``Authorization`` header."""

    upstream: str
    seen: list[tuple[str, str, str | None]] = field(default_factory=list)
    server: http.server.ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def start(self) -> Relay:
        relay = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def _forward(self) -> None:
                relay.seen.append((self.command, self.path, self.headers.get("Authorization")))
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                headers = {k: v for k, v in self.headers.items() if k.lower() in ("content-type", "accept")}
                request = urllib.request.Request(relay.upstream + self.path, data=body, headers=headers,
                                                 method=self.command)
                try:
                    with urllib.request.urlopen(request, timeout=30) as answer:
                        status, payload, kind = answer.status, answer.read(), answer.headers.get("Content-Type")
                except urllib.error.HTTPError as err:
                    status, payload, kind = err.code, err.read(), err.headers.get("Content-Type")
                self.send_response(status)
                self.send_header("Content-Type", kind or "application/octet-stream")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_POST = _forward

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
