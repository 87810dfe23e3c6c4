"""Lineage and links: OpenLineage dataset names per the naming spec, the operator's facets on a real manifest, asset
events, the model-version link, and what the provider declares to Airflow (extra links, connection form fields)."""

from __future__ import annotations

import json

import pytest
from openlineage.client.naming.dataset import ABFSS, GCS, S3, LocalFileSystem, Postgres

from airflow_batch_scoring.lineage import ScoringLineage, dataset_name, emit_asset_events, spec_dataset_name
from airflow_batch_scoring.links import ModelVersionLink, model_version_url
from tests.support.airflow_versions import READS_CONN_FIELDS


def spec(naming) -> tuple[str, str]:
    """What the OpenLineage client's own naming helper says."""
    return naming.get_namespace(), naming.get_name()


@pytest.mark.parametrize(
    ("uri", "account", "expected"),
    [
        ("file:///data/in/day=1/customers.csv", None, spec(LocalFileSystem("/data/in/day=1/customers.csv"))),
        ("/data/scores/2026-11-21/", None, spec(LocalFileSystem("/data/scores/2026-11-21"))),
        ("file:///data/in/day=*/part-*.csv", None, spec(LocalFileSystem("/data/in"))),
        ("s3://raw/customers/2026-11-21/", None, spec(S3("raw", "customers/2026-11-21"))),
        ("s3a://raw/customers.csv", None, spec(S3("raw", "customers.csv"))),
        ("s3://raw", None, spec(S3("raw", "/"))),
        ("gs://scores/churn/day=*/part-*.parquet", None, spec(GCS("scores", "churn"))),
        ("gcs://scores/churn/", None, spec(GCS("scores", "churn"))),
        ("abfs://scores/churn/2026/", "acct", spec(ABFSS("scores", "acct", "churn/2026"))),
        ("abfss://scores@acct.dfs.core.windows.net/churn", None, spec(ABFSS("scores", "acct", "churn"))),
        ("wasbs://scores@acct.blob.core.windows.net/churn/x.csv", None, spec(ABFSS("scores", "acct", "churn/x.csv"))),
        ("abfs://scores/churn", None, ("abfs://scores", "churn")),
        ("postgres://db.example.com/analytics/marts/churn", None,
         spec(Postgres("db.example.com", "5432", "analytics", "marts", "churn"))),
        ("postgresql://db:6543/analytics.marts.churn", None,
         spec(Postgres("db", "6543", "analytics", "marts", "churn"))),
    ],
)
def test_dataset_names_follow_the_openlineage_naming_spec(uri: str, account: str | None, expected):
    assert dataset_name(uri, account_name=account) == expected


def test_a_sql_table_is_named_by_its_connections_hook_without_credentials(monkeypatch: pytest.MonkeyPatch):
    """PostgresHook.get_openlineage_database_info gives the namespace and the database, as common.sql names them."""
    monkeypatch.setenv("AIRFLOW_CONN_SCORES_PG", "postgresql://scorer:s3cr3t-pw@db.example.com:5433/analytics")
    name = spec_dataset_name({"conn_id": "scores_pg", "table": "marts.churn"})
    assert name == spec(Postgres("db.example.com", "5433", "analytics", "marts", "churn"))
    assert spec_dataset_name({"conn_id": "scores_pg", "table": "other_db.marts.churn"}) == (
        "postgres://db.example.com:5433", "other_db.marts.churn")
    monkeypatch.setenv("AIRFLOW_CONN_SCORES_PG2", "postgresql://scorer:s3cr3t-pw@db.example.com/analytics")
    assert spec_dataset_name({"conn_id": "scores_pg2", "table": "marts.churn"})[0] == "postgres://db.example.com:5432"
    assert "s3cr3t" not in json.dumps(name)
    assert spec_dataset_name({"conn_id": "scores_pg", "query": "SELECT 1"}) is None
    # A hook without OpenLineage support (sqlite): its type and host, and the table as written.
    monkeypatch.setenv("AIRFLOW_CONN_LOCAL_DB", json.dumps({"conn_type": "sqlite", "host": "/data/scores.db"}))
    assert spec_dataset_name({"conn_id": "local_db", "table": "churn"}) == ("sqlite:///data/scores.db", "churn")


@pytest.mark.parametrize(
    ("model_uri", "registry", "expected"),
    [
        ("models:/churn/3", "http://127.0.0.1:5000", ("http://127.0.0.1:5000", "models:/churn")),
        ("models:/churn@champion", "sqlite:////data/mlflow.db", ("sqlite:////data/mlflow.db", "models:/churn")),
        ("runs:/0a1b/model/", "databricks", ("databricks", "runs:/0a1b/model")),
        ("models:/churn/3", None, ("mlflow", "models:/churn")),
        ("/models/churn.joblib", None, spec(LocalFileSystem("/models/churn.joblib"))),
        ("file:///models/churn-mlflow/", None, spec(LocalFileSystem("/models/churn-mlflow"))),
    ],
)
def test_model_dataset_names(model_uri: str, registry: str | None, expected, monkeypatch: pytest.MonkeyPatch):
    from airflow_batch_scoring.lineage import model_dataset_name

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert model_dataset_name(model_uri, registry) == expected


def test_a_file_model_is_versioned_by_its_digest():
    from airflow_batch_scoring.lineage import operator_lineage

    summary = {"output_uri": "s3://scores/x/", "model_uri": "/models/churn.joblib", "model_version": None,
               "model_digest": "sha256:" + "cd" * 32}
    lineage = operator_lineage(ScoringLineage.of("s3://raw/in/", "s3://scores/x/", summary))
    source, model = lineage.inputs
    assert (source.namespace, source.name) == spec(S3("raw", "in"))
    assert (model.namespace, model.name) == ("file", "/models/churn.joblib")
    assert model.facets["version"].datasetVersion == summary["model_digest"]
    assert [(o.namespace, o.name) for o in lineage.outputs] == [spec(S3("scores", "x"))]


def test_asset_outlets_carry_the_summary_and_aliases_name_the_output():
    from airflow.sdk import Asset, AssetAlias
    from airflow.sdk.execution_time.context import OutletEventAccessors

    scores, alias = Asset(name="scores", uri="file:///data/scores"), AssetAlias(name="scoring-outputs")
    events = OutletEventAccessors()
    summary = {"output_uri": "s3://scores/churn/2026-11-21/", "manifest_uri": "s3://scores/churn/2026-11-21/"
               "_manifest.json", "rows_in": 10, "rows_out": 10, "parts": 2, "model_uri": "models:/churn/3",
               "model_version": "3", "model_digest": "sha256:ab", "duration_s": 1.5}
    emit_asset_events({"outlet_events": events}, [scores, alias], summary)
    assert events[scores].extra == {k: v for k, v in summary.items() if k != "duration_s"}
    (alias_event,) = events[alias].asset_alias_events
    assert alias_event.dest_asset_key.uri == "s3://scores/churn/2026-11-21"
    assert alias_event.extra["rows_out"] == 10


@pytest.mark.parametrize(
    ("registry", "expected"),
    [
        ("https://mlflow.example.com", "https://mlflow.example.com/#/models/churn%20model/versions/3"),
        ("http://127.0.0.1:5000/", "http://127.0.0.1:5000/#/models/churn%20model/versions/3"),
        ("https://user:pw@mlflow.example.com/prefix/", "https://mlflow.example.com/prefix/#/models/churn%20model/"
                                                        "versions/3"),
        ("sqlite:////data/mlflow.db", None),
        ("databricks", None),
        ("/data/mlruns", None),
        (None, None),
    ],
)
def test_model_version_url(registry: str | None, expected: str | None):
    assert model_version_url(registry, "churn model", 3) == expected


def test_model_version_link_needs_a_registered_version():
    class Spec:
        source_model_name, source_model_version = None, None

    pushed: list = []

    class TI:
        def xcom_push(self, key, value):
            pushed.append((key, value))

    assert ModelVersionLink.persist({"ti": TI()}, Spec(), "https://mlflow.example.com") is None
    Spec.source_model_name, Spec.source_model_version = "churn", "7"
    url = ModelVersionLink.persist({"ti": TI()}, Spec(), "https://mlflow.example.com")
    assert pushed == [(ModelVersionLink.key, url)] and url.endswith("/#/models/churn/versions/7")


def test_provider_declares_links_and_connection_form_fields():
    """What Airflow 3.3 reads from the provider info: extra links, and the MLflow form fields (conn-fields)."""
    from airflow.providers_manager import ProvidersManager

    manager = ProvidersManager()
    links = set(manager.extra_links_class_names)
    assert {"airflow_batch_scoring.links.OutputLocationLink", "airflow_batch_scoring.links.ModelVersionLink"} <= links
    assert manager.hooks["mlflow"].hook_class_name == "airflow_batch_scoring.hooks.mlflow.MlflowHook"
    widgets = manager.connection_form_widgets
    if not READS_CONN_FIELDS:  # Airflow 3.1: no MLflow form fields (see tests/support/airflow_versions.py)
        assert not any(name.startswith("extra__mlflow__") for name in widgets)
        return
    fields = {name: widget for name, widget in widgets.items() if name.startswith("extra__mlflow__")}
    assert {w.field_name for w in fields.values()} == {"tracking_uri", "registry_uri", "token"}
    assert [w.field_name for w in fields.values() if w.is_sensitive] == ["token"]
    assert all(w.field["schema"]["title"] and w.field["description"] for w in fields.values())
    behaviour = manager.field_behaviours["mlflow"]
    assert "password" in behaviour["hidden_fields"]
    assert behaviour["placeholders"]["extra__mlflow__tracking_uri"].startswith("https://")
    assert manager.hooks["mlflow"].hook_class_name == "airflow_batch_scoring.hooks.mlflow.MlflowHook"
