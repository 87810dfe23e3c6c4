"""The runtime image's contents without Docker: its pinned requirements install into a fresh virtual environment
(no Airflow in it), the package's wheel installs without dependencies, as the Dockerfile does, and the image's
entrypoint scores a shard from a job and a secrets file, as a pod does, against the real S3 server."""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import pyarrow.csv as pa_csv
import pytest

from tests.support.helpers import FEATURES, Models, make_frame, write_frame
from tests.support.scoring import check_predictions
from tests.support.servers import S3_KEY, S3_SECRET

ROOT = Path(__file__).resolve().parents[2]
RUNTIME_MODULES = [
    "airflow_batch_scoring.runtime.cli", "airflow_batch_scoring.runtime.engine", "airflow_batch_scoring.flavors",
    "airflow_batch_scoring.runtime.verified", "airflow_batch_scoring.runtime.remote_model",
    "airflow_batch_scoring.io.readers", "airflow_batch_scoring.io.bad_rows.quarantine",
    "airflow_batch_scoring.io.writers", "airflow_batch_scoring.io.files", "airflow_batch_scoring.sources.files",
    "airflow_batch_scoring.sources.sql", "airflow_batch_scoring.sinks.files", "airflow_batch_scoring.sinks.sql",
    "s3fs", "gcsfs", "adlfs", "mlflow.sklearn", "mlflow.pyfunc", "skops.io", "onnxruntime", "sqlalchemy",
]


@pytest.fixture(scope="module")
def image_env(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh virtual environment with runtime_image/requirements.txt and the package's wheel (no dependencies)."""
    uv = shutil.which("uv") or shutil.which("uv", path=str(Path(sys.executable).parent))
    assert uv, "uv is needed to build the runtime environment (pip install uv)"
    venv = tmp_path_factory.mktemp("runtime-image") / "venv"
    python = venv / "bin" / "python"
    dist = venv.parent / "dist"
    for command in (
        [uv, "venv", "-q", str(venv), "--python", f"{sys.version_info.major}.{sys.version_info.minor}"],
        [uv, "pip", "install", "-q", "--python", str(python), "-r", str(ROOT / "runtime_image" / "requirements.txt")],
        [uv, "build", "-q", "--wheel", "--out-dir", str(dist), str(ROOT)],
    ):
        result = subprocess.run(command, capture_output=True, text=True, timeout=600)
        assert result.returncode == 0, f"{' '.join(command)}: {result.stderr[-3000:]}"
    [wheel] = dist.glob("airflow_batch_scoring-*-py3-none-any.whl")
    command = [uv, "pip", "install", "-q", "--python", str(python), "--no-deps", str(wheel)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, f"{' '.join(command)}: {result.stderr[-3000:]}"
    return python


def _clean_env() -> dict[str, str]:
    keep = ("PATH", "HOME", "TMPDIR", "AWS_EC2_METADATA_DISABLED", "NO_GCE_CHECK", "MLFLOW_DISABLE_TELEMETRY",
            "GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT")
    return {name: os.environ[name] for name in keep if name in os.environ}


def test_the_runtime_imports_nothing_of_airflow(image_env: Path):
    result = subprocess.run([str(image_env), "-c", "import airflow"], capture_output=True, text=True, env=_clean_env())
    assert result.returncode == 1 and "No module named 'airflow'" in result.stderr
    check = (
        "import importlib, sys\n"
        f"for name in {RUNTIME_MODULES!r}:\n"
        "    importlib.import_module(name)\n"
        "print(sorted({m.split('.')[0] for m in sys.modules if m == 'airflow' or m.startswith('airflow.')}))\n"
    )
    result = subprocess.run([str(image_env), "-c", check], capture_output=True, text=True, env=_clean_env())
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip() == "[]"
    help_text = subprocess.run([str(image_env), "-m", "airflow_batch_scoring.runtime", "run-shard", "--help"],
                               capture_output=True, text=True, env=_clean_env())
    assert help_text.returncode == 0 and "--secrets-file" in help_text.stdout and "--shards" in help_text.stdout


def test_the_entrypoint_scores_a_shard_as_a_pod(image_env: Path, bucket, seaweedfs, models: Models,  # noqa: F811
                                                 tmp_path: Path):
    from airflow_batch_scoring.artifacts import process_model
    from airflow_batch_scoring.driver.prepare import prepare_job
    from airflow_batch_scoring.options import ScoringOptions
    from airflow_batch_scoring.runtime.remote_model import upload_model
    from airflow_batch_scoring.runtime.shards import report_name
    from airflow_batch_scoring.specs import parse_data_spec

    prefix = f"{uuid.uuid4().hex[:8]}"
    frame = make_frame(900, seed=71)
    write_frame(frame, tmp_path / "in.csv", "csv")
    bucket.put_file(str(tmp_path / "in.csv"), f"kubernetes/{prefix}/in/data.csv")
    options = {"key": S3_KEY, "secret": S3_SECRET, "endpoint_url": seaweedfs.endpoint}
    secrets = {"source": options, "sink": options}
    model = process_model(f"models:/{models.registry_name}@champion", str(tmp_path / "model"))
    job, _ = prepare_job(
        job_id="image-test",
        model=model,
        source=parse_data_spec({"uri": f"s3://kubernetes/{prefix}/in/", "format": "csv",
                               "columns": ["id", *FEATURES]}, "source"),
        sink=parse_data_spec({"uri": f"s3://kubernetes/{prefix}/out/", "format": "csv"}, "sink"),
        storage_options=secrets,
        options=ScoringOptions.parse(replicas=2, passthrough_columns=["id"]),
    )
    job.model.path = upload_model(model.path, job.staging_uri, options, model.digest)  # an MLflow model folder
    (tmp_path / "job.json").write_text(job.to_json())
    (tmp_path / "secrets.json").write_text(json.dumps(secrets))
    outputs = []
    for index in range(2):  # the two pods of the Indexed Job
        result = subprocess.run(
            [str(image_env), "-m", "airflow_batch_scoring.runtime", "run-shard", "--job", str(tmp_path / "job.json"),
             "--secrets-file", str(tmp_path / "secrets.json")],
            capture_output=True, text=True, env={**_clean_env(), "JOB_COMPLETION_INDEX": str(index)}, timeout=300,
        )
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
        assert f"replica {index + 1}/2: " in result.stdout and S3_SECRET not in result.stdout + result.stderr
        staging = job.staging_uri.removeprefix("s3://")
        report = json.loads(bucket.cat_file(f"{staging}/{report_name(index)}"))
        [part] = report["parts"]
        outputs.append(pa_csv.read_csv(io.BytesIO(bucket.cat_file(f"{staging}/{part}")),
                                       read_options=pa_csv.ReadOptions(column_names=["id", "prediction"])))
    import pyarrow as pa

    check_predictions(frame, pa.concat_tables(outputs), models.classifier)


def test_the_dockerfile_runs_what_the_pods_are_told_to_run():
    from airflow_batch_scoring.kubernetes import manifests

    dockerfile = (ROOT / "runtime_image" / "Dockerfile").read_text()
    assert "FROM python:3.11-slim\n" in dockerfile
    [entrypoint] = [line for line in dockerfile.splitlines() if line.startswith("ENTRYPOINT ")]
    assert json.loads(entrypoint.removeprefix("ENTRYPOINT ")) == manifests.COMMAND
    assert "pip install --compile -r /tmp/requirements.txt" in dockerfile and "--no-deps /tmp/wheels/" in dockerfile
    pinned = [line for line in (ROOT / "runtime_image" / "requirements.txt").read_text().splitlines()
              if line and not line.startswith(("#", " "))]
    assert pinned and all("==" in line for line in pinned)
    direct = [line for line in (ROOT / "runtime_image" / "requirements.in").read_text().splitlines()
              if line and not line.startswith("#")]
    assert set(direct) <= set(pinned), "recompile requirements.txt from requirements.in (see its header)"
    assert not any(line.lower().startswith(("apache-airflow", "airflow")) for line in pinned)


def test_the_image_runs_as_a_numeric_non_root_user():
    """``runAsNonRoot`` (the pods' default) can only verify a numeric user: the image's last USER is one, not 0."""
    users = [line.split()[1] for line in (ROOT / "runtime_image" / "Dockerfile").read_text().splitlines()
             if line.startswith("USER ")]
    assert users and users[-1].isdigit() and int(users[-1]) != 0
