"""Lineage names of SQL tables worked out by asking the real database (PostgreSQL), as the common.sql operators do."""

from __future__ import annotations

import json

import pytest
from openlineage.client.naming.dataset import Postgres

from airflow_batch_scoring.lineage import spec_dataset_name


def test_a_table_without_schema_is_in_the_databases_current_schema(postgres, monkeypatch: pytest.MonkeyPatch):
    """The hook asks the database (PostgresHook: ``SELECT CURRENT_SCHEMA``), as the common.sql operators do."""
    monkeypatch.setenv("AIRFLOW_CONN_LINEAGE_PG", json.dumps(postgres.connection()))
    expected = Postgres("127.0.0.1", str(postgres.port), postgres.database, "public", "churn")
    assert spec_dataset_name({"conn_id": "lineage_pg", "table": "churn"}) == (
        expected.get_namespace(), expected.get_name())
