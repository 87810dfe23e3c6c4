"""``model_environment`` settings, parsed in one place; a model's recorded requirements; the worker mode's warning;
what uv's messages may show; the manifest's image digest."""

from __future__ import annotations

from pathlib import Path

import pytest

from airflow_batch_scoring.driver.manifest import image_digest
from airflow_batch_scoring.environments.builder import _install_failure, environment_key, mask_credentials
from airflow_batch_scoring.environments.requirements import (
    RUNTIME_REQUIREMENTS,
    ModelRequirements,
    drift_warning,
    model_requirements,
)
from airflow_batch_scoring.environments.settings import EnvironmentSettings, default_cache_dir, parse_mode
from airflow_batch_scoring.errors import ConfigurationError, ModelEnvironmentError
from airflow_batch_scoring.operators.runtimes import ResolvedTask
from airflow_batch_scoring.stages import Stage, parse_stages


def test_the_mode_is_worker_or_model_and_anything_else_is_refused():
    assert parse_mode(None) == parse_mode("") == parse_mode(" Worker ") == "worker"
    assert parse_mode("MODEL") == "model"
    with pytest.raises(ConfigurationError, match="model_environment must be 'worker'.*got 'conda'"):
        parse_mode("conda")


def test_settings_parse_requirements_cache_and_timeout(tmp_path: Path):
    listed = EnvironmentSettings.parse(model_environment="model", requirements=["scikit-learn==1.7.2 "],
                                       cache_dir=str(tmp_path), build_timeout="30")
    assert (listed.mode, listed.requirements, listed.cache_dir, listed.build_timeout_s) == (
        "model", ("scikit-learn==1.7.2",), str(tmp_path), 30.0)
    (tmp_path / "req.txt").write_text("numpy==2.3.4\n")
    assert EnvironmentSettings.parse(requirements=str(tmp_path / "req.txt")).requirements == str(tmp_path / "req.txt")
    with pytest.raises(ConfigurationError, match="is not a file"):
        EnvironmentSettings.parse(requirements=str(tmp_path / "missing.txt"))
    with pytest.raises(ConfigurationError, match="list of requirement specifiers"):
        EnvironmentSettings.parse(requirements=[1])
    with pytest.raises(ConfigurationError, match="positive number of seconds"):
        EnvironmentSettings.parse(build_timeout=0)
    env = {"BATCH_SCORING_ENV_CACHE": str(tmp_path / "c"), "BATCH_SCORING_ENV_BUILD_TIMEOUT_S": "12"}
    from_env = EnvironmentSettings.parse(environ=env)
    assert (from_env.cache_dir, from_env.build_timeout_s) == (str(tmp_path / "c"), 12.0)
    assert default_cache_dir({"XDG_CACHE_HOME": "/x"}) == "/x/airflow-batch-scoring/environments"


def test_a_stage_may_set_the_mode_and_the_task_s_own_wins():
    stages = parse_stages({"PROD": {"model_environment": "model"}, "DEV": {}})
    assert stages["PROD"].model_environment == "model" and stages["DEV"].model_environment is None
    with pytest.raises(ConfigurationError, match="Stage 'PROD': model_environment"):
        parse_stages({"PROD": {"model_environment": "venv"}})
    common = dict(model="models:/m", runtime=None, replicas=None, kubernetes=None, try_number=1, retries=0)
    stage = Stage("PROD", "prod", model_environment="model")
    assert ResolvedTask.resolve(stage=stage, **common).environment.mode == "model"
    assert ResolvedTask.resolve(stage=stage, model_environment="worker", **common).environment.mode == "worker"
    with pytest.raises(ConfigurationError, match="kubernetes runtime's replicas run in their image"):
        ResolvedTask.resolve(stage=None, **{**common, "runtime": "kubernetes"}, model_environment="model")


def test_an_mlflow_folder_s_requirements_and_python(tmp_path: Path):
    (tmp_path / "MLmodel").write_text("flavors: {}\n")
    (tmp_path / "requirements.txt").write_text(
        "mlflow==3.17.2\n# a comment\nscikit-learn==1.7.2\nnumpy<2\n-c constraints.txt\n\n")
    (tmp_path / "python_env.yaml").write_text("python: 3.11.7\nbuild_dependencies: [pip]\n")
    found = model_requirements(str(tmp_path))
    assert found is not None and found.python == "3.11.7" and found.python_minor() == "3.11"
    assert found.pins() == {"mlflow": "3.17.2", "scikit-learn": "1.7.2"}
    assert found.names() == ["mlflow", "scikit-learn", "numpy"]
    assert found.install_lines()[:4] == [
        "mlflow-skinny==3.17.2", "scikit-learn==1.7.2", "numpy<2", f"-c {tmp_path / 'constraints.txt'}"]
    assert found.install_lines()[4:] == list(RUNTIME_REQUIREMENTS)
    given = model_requirements(str(tmp_path), ("xgboost==2.1.0",))
    assert given is not None and given.lines == ("xgboost==2.1.0",) and given.origin == "requirements="
    assert model_requirements(str(tmp_path / "model.joblib")) is None


def test_the_key_changes_with_requirements_python_and_provider():
    base = ModelRequirements(("scikit-learn==1.7.2",))
    key = environment_key(base, "3.11", "0.1.0+a")
    assert key == environment_key(ModelRequirements(("scikit-learn==1.7.2",), origin="x"), "3.11", "0.1.0+a")
    assert len({key, environment_key(base, "3.12", "0.1.0+a"), environment_key(base, "3.11", "0.1.0+b"),
                environment_key(ModelRequirements(("scikit-learn==1.7.1",)), "3.11", "0.1.0+a")}) == 4


def test_the_worker_warning_names_each_differing_package():
    recorded = ModelRequirements(("scikit-learn==1.5.2", "numpy==2.3.4", "xgboost==2.1.0", "pandas>=2"),
                                 origin="the model's requirements.txt")
    here = {"scikit-learn": "1.9.1", "numpy": "2.3.4"}.get
    warning = drift_warning(recorded, here)
    assert "scikit-learn 1.5.2 recorded, 1.9.1 here" in warning
    assert "xgboost 2.1.0 recorded, not installed here" in warning
    assert "numpy" not in warning and "pandas" not in warning and "model_environment='model'" in warning
    assert drift_warning(ModelRequirements(("numpy==2.3.4",)), here) == ""


def test_uv_s_message_names_the_package_and_never_shows_index_credentials():
    said = ("× No solution found when resolving dependencies:\n  ╰─▶ Because no-such-pkg was not found in the "
            "package registry (https://alice:s3cret@pypi.example.com/simple) and you require no-such-pkg==1.0, "
            "we can conclude that your requirements are unsatisfiable.")
    error = _install_failure(ModelRequirements(("scikit-learn==1.7.2", "no-such-pkg==1.0")), said)
    assert isinstance(error, ModelEnvironmentError) and isinstance(error, ConfigurationError)
    assert not error.retryable
    assert "(no-such-pkg)" in str(error) and "scikit-learn)" not in str(error)
    assert "s3cret" not in str(error) and "alice" not in str(error) and "https://***@pypi.example.com" in str(error)
    assert mask_credentials("--index-url https://u:p@h/simple") == "--index-url https://***@h/simple"


def test_the_manifest_records_an_image_s_digest():
    assert image_digest("registry.example.com/scoring@sha256:abc") == "sha256:abc"
    assert image_digest("registry.example.com/scoring:0.1.0") is None and image_digest(None) is None


def test_the_local_runtime_starts_no_replica_before_a_model_environment_is_known(monkeypatch):
    from unittest import mock

    from airflow_batch_scoring.operators.runtimes import LocalRuntime

    launcher = mock.MagicMock(name="LocalLauncher")
    monkeypatch.setattr("airflow_batch_scoring.operators.runtimes.LocalLauncher", lambda log: launcher)
    task = ResolvedTask(model="m", runtime="local", replicas=2,
                        environment=EnvironmentSettings.parse(model_environment="model"))
    LocalRuntime(task, {}, print).start()  # type: ignore[arg-type]
    launcher.start_early.assert_not_called()


def test_index_credentials_in_requirements_never_reach_the_record(tmp_path: Path, monkeypatch):
    """The environment's description (the manifest's section) masks an index URL's credentials."""
    import json

    from airflow_batch_scoring.environments import builder

    cache = tmp_path / "cache"
    monkeypatch.setattr(builder, "find_uv", lambda: "/bin/false")  # the first step fails: nothing is built
    requirements = ModelRequirements(("--extra-index-url https://bob:t0ken@pypi.example.com/simple", "x==1"))
    with pytest.raises(ModelEnvironmentError) as caught:
        builder.ensure_environment(requirements, EnvironmentSettings.parse(cache_dir=str(cache)), print)
    assert "t0ken" not in str(caught.value)
    assert not [p for p in cache.iterdir() if p.name.endswith(".tmp")]
    failed = next(cache.glob("*.failed.log")).read_text()
    assert "t0ken" not in failed
    assert json.dumps(requirements.lines).count("t0ken") == 1  # (the masking is of what is recorded)


def test_the_manifest_says_where_the_replicas_ran_python():
    from datetime import datetime, timezone

    from airflow_batch_scoring.driver.manifest import build_manifest
    from airflow_batch_scoring.job import ModelSpec, ScoringJob
    from airflow_batch_scoring.specs import FileSpec

    job = ScoringJob(job_id="j", model=ModelSpec(uri="m", path="m", flavor="sklearn"),
                     source=FileSpec(uri="file:///in.csv"), sink=FileSpec(uri="file:///out/"), staging_uri="")

    def section(job: ScoringJob) -> dict:
        manifest = build_manifest(job, [], datetime.now(timezone.utc), "local", input_section={}, output_section={})
        return manifest["environment"]

    from dataclasses import replace

    assert section(job) == {"mode": "worker"}
    assert section(replace(job, runtime_image="r/s@sha256:1")) == {"mode": "image"}
    assert section(replace(job, environment={"mode": "model", "hash": "k"})) == {"mode": "model", "hash": "k"}


def test_a_model_environment_installs_what_the_run_s_stores_need():
    from airflow_batch_scoring.environments import stores_of
    from airflow_batch_scoring.specs import parse_data_spec

    s3 = parse_data_spec({"uri": "s3://in/day/"}, "source")
    local = parse_data_spec({"uri": "file:///tmp/out/"}, "sink")
    table = parse_data_spec({"conn_id": "pg", "table": "scores"}, "sink")
    assert stores_of(s3, local) == ("s3fs",)
    assert stores_of(parse_data_spec({"uri": "gs://in/x.csv"}, "source"), table) == ("gcsfs", "sqlalchemy>=2,<3")
    lines = ModelRequirements(("scikit-learn==1.7.2",), stores=("s3fs",)).install_lines()
    assert lines[-1] == "s3fs" and lines[0] == "scikit-learn==1.7.2"
