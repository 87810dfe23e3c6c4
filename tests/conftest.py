"""Test session set-up: an isolated Airflow home and metadata DB, a real MLflow registry, models and data.

Environment variables are set at import time, before Airflow or any cloud SDK is imported, so that nothing reaches
for a cloud (instance metadata, telemetry) and nothing touches the developer's own Airflow or MLflow state.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SESSION_DIR = Path(tempfile.mkdtemp(prefix="batch-scoring-tests-"))

os.environ.update(
    {
        "AWS_EC2_METADATA_DISABLED": "true",
        "NO_GCE_CHECK": "true",
        "MLFLOW_DISABLE_TELEMETRY": "true",
        "DO_NOT_TRACK": "true",
        "AIRFLOW_HOME": str(SESSION_DIR / "airflow"),
        "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "tests" / "dags"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
        "MLFLOW_TRACKING_URI": f"sqlite:///{SESSION_DIR / 'mlflow.db'}",
        "BATCH_SCORING_PROGRESS_S": "0",
        "GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT": "false",
    }
)
os.environ.pop("MLFLOW_REGISTRY_URI", None)
sys.path.insert(0, str(ROOT / "tests"))

from helpers import Models, train_models  # noqa: E402
from servers import (  # noqa: E402
    S3_KEY,
    S3_SECRET,
    azurite_connection_string,
    start_azurite,
    start_fake_gcs,
    start_seaweedfs,
)


@pytest.fixture(scope="session")
def session_dir() -> Path:
    return SESSION_DIR


@pytest.fixture(scope="session")
def airflow_db() -> None:
    """Migrate the test Airflow metadata DB once (``dag.test()`` needs it)."""
    subprocess.run(
        [str(Path(sys.executable).parent / "airflow"), "db", "migrate"],
        check=True,
        capture_output=True,
        env=os.environ.copy(),
    )


@pytest.fixture(scope="session")
def models(tmp_path_factory: pytest.TempPathFactory) -> Models:
    """A classifier and a regressor, as joblib files and in the real MLflow registry (SQLite store)."""
    return train_models(tmp_path_factory.mktemp("models"))


@pytest.fixture(scope="session")
def seaweedfs():
    """SeaweedFS's S3 API on loopback (plain S3 and MinIO-style connections both point at it)."""
    server = start_seaweedfs(SESSION_DIR / "seaweedfs")
    yield server
    server.stop()


@pytest.fixture(scope="session")
def azurite():
    server = start_azurite(SESSION_DIR / "azurite")
    yield server
    server.stop()


@pytest.fixture(scope="session")
def fake_gcs():
    server = start_fake_gcs(SESSION_DIR / "fake-gcs")
    yield server
    server.stop()


@pytest.fixture(scope="session")
def postgres():
    """A real PostgreSQL (initdb into a temporary folder, 127.0.0.1, a free port), stopped by pg_ctl at the end."""
    from servers import postgres_bin, start_postgres

    if postgres_bin() is None:
        pytest.skip("PostgreSQL is not installed (no /usr/lib/postgresql/*/bin/initdb): apt-get install -y postgresql")
    server = start_postgres()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def s3_bucket(seaweedfs) -> str:
    import boto3

    client = boto3.client("s3", endpoint_url=seaweedfs.endpoint, aws_access_key_id=S3_KEY,
                          aws_secret_access_key=S3_SECRET, region_name="us-east-1")
    client.create_bucket(Bucket="scoring")
    return "scoring"


@pytest.fixture(scope="session")
def azure_container(azurite) -> str:
    from azure.storage.blob import BlobServiceClient

    BlobServiceClient.from_connection_string(azurite_connection_string(azurite)).create_container("scoring")
    return "scoring"


@pytest.fixture(scope="session")
def gcs_bucket(fake_gcs) -> str:
    import urllib.request

    request = urllib.request.Request(
        f"{fake_gcs.endpoint}/storage/v1/b?project=test", data=json.dumps({"name": "scoring"}).encode(),
        headers={"Content-Type": "application/json"}, method="POST",
    )
    urllib.request.urlopen(request).read()
    return "scoring"
