"""The MLflow connection type (form fields declared in the provider info), its hook, and its masked token."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from airflow_batch_scoring.errors import ConfigurationError
from tests.support.airflow_versions import READS_CONN_FIELDS
from tests.support.registry import TOKEN


def test_connection_type_is_declared_with_conn_fields():
    """The provider info passes Airflow's own schema, and the providers manager reads the form from it (without
    importing the hook, as the UI does)."""
    import airflow
    import jsonschema
    from airflow.providers_manager import ProvidersManager

    from airflow_batch_scoring.get_provider_info import get_provider_info

    schemas = Path(airflow.__file__).parent
    info = get_provider_info()
    jsonschema.validate(info, json.loads((schemas / "provider_info.schema.json").read_text()))
    declared = json.loads((schemas / "provider.yaml.schema.json").read_text())["properties"]["connection-types"]
    jsonschema.validate(info["connection-types"], declared)

    manager = ProvidersManager()
    manager.initialize_providers_list()
    if not READS_CONN_FIELDS:  # Airflow 3.1: no MLflow form fields; the hook reads Host, Password and Extra
        assert manager.hooks["mlflow"].hook_class_name == "airflow_batch_scoring.hooks.mlflow.MlflowHook"
        assert not any(name.startswith("extra__mlflow__") for name in manager.connection_form_widgets)
        return
    manager._load_ui_metadata()  # what the connection form API serves
    widgets = manager._connection_form_widgets
    assert widgets["extra__mlflow__token"].is_sensitive
    assert not widgets["extra__mlflow__tracking_uri"].is_sensitive
    assert "extra__mlflow__registry_uri" in widgets
    assert "password" in manager._field_behaviours["mlflow"]["hidden_fields"]


def test_hook_reads_the_connection_and_masks_the_token(mlflow_connection: str, caplog):
    from airflow.sdk._shared.secrets_masker import redact

    from airflow_batch_scoring.hooks.mlflow import MlflowHook

    settings = MlflowHook(mlflow_connection).get_settings()
    assert settings.tracking_uri == os.environ["MLFLOW_TRACKING_URI"] and settings.token == TOKEN
    assert settings.registry_uri is None
    assert TOKEN not in repr(settings)
    assert redact(f"calling the server with {TOKEN}") == "calling the server with ***"
    with MlflowHook(mlflow_connection).environment():
        assert os.environ["MLFLOW_TRACKING_TOKEN"] == TOKEN
    assert "MLFLOW_TRACKING_TOKEN" not in os.environ
    assert MlflowHook(mlflow_connection).test_connection() == (True, "Connection successfully tested")


def test_host_form_and_missing_connection(monkeypatch: pytest.MonkeyPatch):
    from airflow_batch_scoring.hooks.mlflow import MlflowHook

    monkeypatch.setenv(
        "AIRFLOW_CONN_MLFLOW_HOST",
        json.dumps({"conn_type": "mlflow", "host": "mlflow.internal", "port": 5000, "password": "pw-token-123",
                    "extra": {"scheme": "http", "registry_uri": "http://registry.internal"}}),
    )
    settings = MlflowHook("mlflow_host").get_settings()
    assert settings.tracking_uri == "http://mlflow.internal:5000"
    assert settings.registry_uri == "http://registry.internal" and settings.token == "pw-token-123"
    with pytest.raises(ConfigurationError, match="'mlflow_nope' cannot be read.*Create it"):
        MlflowHook("mlflow_nope").get_settings()
