"""Which ``models:/`` references the provider reads, and when the REST client answers instead of MlflowClient."""

from __future__ import annotations

import base64
import sys

import pytest

from airflow_batch_scoring.errors import ModelError
from airflow_batch_scoring.flavors import mlflow_rest
from airflow_batch_scoring.flavors.mlflow_registry import ModelReference, parse_reference
from airflow_batch_scoring.flavors.mlflow_rest import SWITCH, RestRegistry


@pytest.mark.parametrize(
    ("uri", "expected"),
    [
        ("models:/churn@champion", ModelReference("models:/churn@champion", "churn", alias="champion")),
        ("models:/churn/12", ModelReference("models:/churn/12", "churn", version="12")),
        ("models:/churn/12/", ModelReference("models:/churn/12/", "churn", version="12")),
        ("models:/churn/Latest", ModelReference("models:/churn/Latest", "churn")),
        ("models:/churn/Production", ModelReference("models:/churn/Production", "churn", stage="Production")),
    ],
)
def test_references(uri: str, expected: ModelReference):
    assert parse_reference(uri) == expected


@pytest.mark.parametrize("uri", ["models:/churn", "models:/churn/1/2", "models:/@x", "models:/a@", "models:/ /1"])
def test_unreadable_references_say_what_is_read(uri: str):
    with pytest.raises(ModelError, match="use models:/<name>/<version>, models:/<name>@<alias>") as raised:
        parse_reference(uri)
    assert not raised.value.retryable


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI", "MLFLOW_TRACKING_TOKEN", "MLFLOW_TRACKING_USERNAME",
                 "MLFLOW_TRACKING_PASSWORD", "MLFLOW_TRACKING_AUTH", "MLFLOW_TRACKING_AWS_SIGV4", "MLFLOW_WORKSPACE",
                 SWITCH):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", "/nonexistent")  # no ~/.mlflow/credentials
    return monkeypatch


@pytest.mark.parametrize(
    ("tracking", "registry", "answers"),
    [
        ("http://mlflow:5000", None, "http://mlflow:5000"),
        ("https://mlflow.example.com/prefix/", None, "https://mlflow.example.com/prefix"),
        ("sqlite:////tmp/mlflow.db", "https://registry.example.com", "https://registry.example.com"),
        ("https://mlflow.example.com", "databricks-uc", None),
        ("sqlite:////tmp/mlflow.db", None, None),
        ("databricks", None, None),
        ("https://user:secret@mlflow.example.com", None, None),  # credentials in the URI: left to MLflow
        ("file:///tmp/mlruns", None, None),
    ],
)
def test_rest_answers_for_http_servers_only(clean_env, tracking: str, registry: str | None, answers: str | None):
    found = RestRegistry.for_uris(tracking, registry)
    assert (found.registry_uri if found is not None else None) == answers


@pytest.mark.parametrize(("variable", "value"), [("MLFLOW_TRACKING_AUTH", "my_auth"), ("MLFLOW_WORKSPACE", "team"),
                                                 ("MLFLOW_TRACKING_AWS_SIGV4", "true"), (SWITCH, "0")])
def test_settings_the_rest_client_does_not_copy_leave_it_to_mlflow(clean_env, variable: str, value: str):
    clean_env.setenv(variable, value)
    assert RestRegistry.for_uris("https://mlflow.example.com", None) is None


def test_uris_from_the_environment(clean_env):
    clean_env.setenv("MLFLOW_TRACKING_URI", "http://tracking:5000")
    if "mlflow" in sys.modules:  # mlflow.set_tracking_uri() may have set others: MLflow answers
        assert RestRegistry.for_uris(None, None) is None
        clean_env.delitem(sys.modules, "mlflow")
    found = RestRegistry.for_uris(None, None)
    assert found is not None and (found.registry_uri, found.tracking_uri) == ("http://tracking:5000",) * 2
    clean_env.setenv("MLFLOW_REGISTRY_URI", "sqlite:////tmp/r.db")
    assert RestRegistry.for_uris(None, None) is None


def test_credentials_as_mlflow_sends_them(clean_env):
    assert "Authorization" not in RestRegistry("https://m", None)._headers
    clean_env.setenv("MLFLOW_TRACKING_TOKEN", "tok-123")
    registry = RestRegistry("https://m", None)
    assert registry._headers["Authorization"] == "Bearer tok-123" and "tok-123" not in repr(registry)
    clean_env.setenv("MLFLOW_TRACKING_USERNAME", "u")
    clean_env.setenv("MLFLOW_TRACKING_PASSWORD", "p w")
    assert RestRegistry("https://m", None)._headers["Authorization"] == "Basic " + base64.b64encode(b"u:p w").decode()


@pytest.mark.parametrize(("path", "safe"), [("MLmodel", True), ("data/model.pkl", True), ("../x", False),
                                            ("/etc/passwd", False), ("a//b", False), ("a/./b", False), ("", False)])
def test_listed_paths_stay_inside_the_model_folder(path: str, safe: bool):
    assert mlflow_rest._safe(path) is safe
