"""Fixtures of the system tests: a migrated Airflow metadata DB, and the test DAGs of ``tests/system/dags``."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def airflow_db() -> None:
    """Migrate the test Airflow metadata DB once (``dag.test()`` needs it)."""
    subprocess.run(
        [str(Path(sys.executable).parent / "airflow"), "db", "migrate"],
        check=True,
        capture_output=True,
        env=os.environ.copy(),
    )


@pytest.fixture(scope="module")
def test_dag(airflow_db):
    """``batch_scoring_test``: every operator argument comes from the run's conf."""
    from tests.system.dags.scoring_test_dag import dag

    return dag
