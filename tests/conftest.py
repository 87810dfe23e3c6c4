"""Test session set-up for every level: an isolated Airflow home, a real MLflow registry, models, storage servers.

Environment variables are set at import time, before Airflow or any cloud SDK is imported, so that nothing reaches
for a cloud (instance metadata, telemetry) and nothing touches the developer's own Airflow or MLflow state.

The tests live in three levels, one folder each, and every test is marked with its folder's name (``-m unit``):

- ``unit/``: in this process, no server, no Airflow metadata DB, no replica process (``unit/conftest.py`` refuses
  the fixtures that start one); the whole lane takes well under a minute.
- ``integration/``: real stores (SeaweedFS, Azurite, fake GCS, PostgreSQL), the Kubernetes API emulator, the runtime
  image's environment, faults, local replica processes.
- ``system/``: Airflow itself: ``dag.test()`` runs of the operator, the example DAGs, a scheduler, a browser.

Shared code is the ``tests.support`` package; a test module never imports another test module.
"""

from __future__ import annotations

import gc
import json
import os
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
        "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "tests" / "system" / "dags"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
        "MLFLOW_TRACKING_URI": f"sqlite:///{SESSION_DIR / 'mlflow.db'}",
        "BATCH_SCORING_PROGRESS_S": "0",
        "GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT": "false",
    }
)
os.environ.pop("MLFLOW_REGISTRY_URI", None)

from tests.support.helpers import Models, train_models  # noqa: E402
from tests.support.servers import (  # noqa: E402
    BUCKET,
    S3_KEY,
    S3_SECRET,
    azurite_connection_string,
    start_azurite,
    start_fake_gcs,
    start_seaweedfs,
)

#: fixtures the levels share (the servers' fixtures are below)
pytest_plugins = ("tests.support.registry", "tests.support.sql", "tests.support.stores")
LEVELS = ("unit", "integration", "system")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark each test with its level, the folder it is in; a test outside the three folders is an error."""
    tests = ROOT / "tests"
    for item in items:
        level = item.path.relative_to(tests).parts[0] if item.path.is_relative_to(tests) else None
        if level not in LEVELS:
            raise pytest.UsageError(f"{item.nodeid}: put every test in tests/unit, tests/integration or tests/system")
        item.add_marker(getattr(pytest.mark, level))


@pytest.fixture(autouse=True, scope="module")
def _frozen_heap_on_python_310():
    """On Python 3.10, freeze what is alive as each test module starts: pyarrow calls ``gc.get_referrers`` on every
    read there (a workaround for a CPython 3.10 bug), which walks every tracked object, and this process holds
    Airflow, MLflow, the models and the test modules (the unit lane took 4 minutes instead of 40 s). Replicas do the
    same once their model is loaded (:func:`airflow_batch_scoring.runtime.engine.freeze_heap`)."""
    if sys.version_info[:2] == (3, 10):
        gc.collect()
        gc.freeze()
    yield


@pytest.fixture(scope="session")
def session_dir() -> Path:
    return SESSION_DIR


@pytest.fixture
def replicas_import_tests(monkeypatch: pytest.MonkeyPatch) -> None:
    """Put the checkout on the replicas' PYTHONPATH: they unpickle models defined in ``tests.support``."""
    monkeypatch.setenv("PYTHONPATH", str(ROOT))


@pytest.fixture(scope="session")
def models(tmp_path_factory: pytest.TempPathFactory) -> Models:
    """A classifier and a regressor, as joblib files and in the real MLflow registry (SQLite store)."""
    return train_models(tmp_path_factory.mktemp("models"))


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory):
    """A Kubernetes API emulator (kmock, Python 3.11+) whose pods run as local processes: a module's tests share it."""
    from tests.support.kube_cluster import FakeCluster

    fake = FakeCluster(tmp_path_factory.mktemp("kube"))
    yield fake
    fake.stop()


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
    from tests.support.servers import postgres_bin, start_postgres

    if postgres_bin() is None:
        pytest.skip("PostgreSQL is not installed (no /usr/lib/postgresql/*/bin/initdb): apt-get install -y postgresql")
    server = start_postgres()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def mlflow_server():
    """A real ``mlflow server`` (SQLite store, artifacts served as ``mlflow-artifacts:/``) on loopback."""
    from tests.support.mlflow_server import start_mlflow_server

    server = start_mlflow_server(SESSION_DIR / "mlflow-server")
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


@pytest.fixture(scope="session")
def bucket(seaweedfs):
    """The ``kubernetes`` bucket on SeaweedFS: an S3 file system (fsspec) to put inputs and read outputs through."""
    import boto3
    import fsspec

    s3 = boto3.client("s3", endpoint_url=seaweedfs.endpoint, aws_access_key_id=S3_KEY,
                      aws_secret_access_key=S3_SECRET, region_name="us-east-1")
    if BUCKET not in [b["Name"] for b in s3.list_buckets().get("Buckets", [])]:
        s3.create_bucket(Bucket=BUCKET)
    return fsspec.filesystem("s3", key=S3_KEY, secret=S3_SECRET, endpoint_url=seaweedfs.endpoint,
                             skip_instance_cache=True)
