"""The unit lane stays fast and self-contained: a unit test that asks for a server or the Airflow metadata DB fails
at collection, with where to move it."""

from __future__ import annotations

from pathlib import Path

import pytest

UNIT = Path(__file__).resolve().parent

#: fixtures that start a server or need a process outside this one (defined in tests/conftest.py)
FORBIDDEN = {"seaweedfs", "azurite", "fake_gcs", "postgres", "mlflow_server", "s3_bucket", "azure_container",
             "gcs_bucket", "bucket", "replicas_import_tests"}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if not item.path.is_relative_to(UNIT):
            continue
        used = FORBIDDEN.intersection(getattr(item, "fixturenames", ()))
        if used:
            raise pytest.UsageError(
                f"{item.nodeid} is a unit test but uses {', '.join(sorted(used))}: move it to tests/integration"
            )
