"""``model_environment="model"``: replicas score in an environment built with uv from the model's recorded
requirements (a scikit-learn other than the worker's), cached and built once; the worker mode's warning; bad
requirements.

The environment is built once for the module (two concurrent runs against an empty cache); uv installs from its
cache (CI reaches the package index through it).
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import sklearn

from airflow_batch_scoring.environments import prepare_environment
from airflow_batch_scoring.environments.builder import BUILDS_LOG
from airflow_batch_scoring.environments.settings import EnvironmentSettings
from airflow_batch_scoring.errors import ModelEnvironmentError
from airflow_batch_scoring.job import ModelSpec
from tests.support.helpers import FEATURES, make_frame, read_output, write_frame

BIN = Path(sys.executable).parent
#: the scikit-learn the model records: not the worker's (it has a cp311 wheel and loads the worker's pickle).
RECORDED = "1.7.2"


@dataclass
class Built:
    """The module's model, input and cache, and the two concurrent runs that built the environment."""

    model: Path
    source: Path
    frame: pd.DataFrame
    cache: Path
    runs: list[subprocess.CompletedProcess[str]]
    sinks: list[Path]


def _score(built_model: Path, source: Path, sink: Path, cache: Path, *extra: str) -> list[str]:
    return [
        str(BIN / "batch-scoring"), "score", "--model", str(built_model), "--source", source.as_uri(),
        "--sink", sink.as_uri(), "--sink-format", "parquet", "--passthrough", "id", "--replicas", "2",
        "--probabilities", "--model-environment", "model", "--environment-cache-dir", str(cache), *extra,
    ]


def _train_in(folder: Path, train: pd.DataFrame) -> Path:
    """A LogisticRegression trained and pickled by scikit-learn RECORDED itself (a throw-away uv environment): a
    model the worker's scikit-learn is not meant to load."""
    from airflow_batch_scoring.environments.builder import find_uv

    data, pickled = folder / "train.csv", folder / "model.pkl"
    train.to_csv(data, index=False)
    script = (
        "import cloudpickle, pandas as pd; from sklearn.linear_model import LogisticRegression\n"
        f"frame = pd.read_csv({str(data)!r})\n"
        f"model = LogisticRegression(max_iter=1000).fit(frame[{FEATURES!r}], frame['label'])\n"
        f"cloudpickle.dump(model, open({str(pickled)!r}, 'wb'))\n"
    )
    subprocess.run(
        [find_uv(), "run", "--no-project", "--python", f"{sys.version_info.major}.{sys.version_info.minor}",
         "--with", f"scikit-learn=={RECORDED}", "--with", "cloudpickle", "--with", "pandas", "python", "-c", script],
        check=True, capture_output=True, text=True,
    )
    return pickled


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Built:
    import mlflow.sklearn
    import yaml
    from mlflow.models import infer_signature
    from sklearn.linear_model import LogisticRegression

    assert sklearn.__version__ != RECORDED
    folder = tmp_path_factory.mktemp("model-environment")
    train = make_frame(400, seed=71)
    train["label"] = (train["f0"] + train["f4"] / 3 > 0).astype(int)
    # Logged with MLflow (its MLmodel, signature, requirements.txt pinning RECORDED), holding the model that
    # scikit-learn RECORDED trained and pickled.
    placeholder = LogisticRegression().fit(train[FEATURES], train["label"])
    model = folder / "model"
    mlflow.sklearn.save_model(
        placeholder, str(model), serialization_format="cloudpickle", pip_requirements=[f"scikit-learn=={RECORDED}"],
        signature=infer_signature(train[FEATURES], train["label"]),
    )
    (model / "model.pkl").write_bytes(_train_in(folder, train).read_bytes())
    mlmodel = yaml.safe_load((model / "MLmodel").read_text())
    mlmodel["flavors"]["sklearn"]["sklearn_version"] = RECORDED
    (model / "MLmodel").write_text(yaml.safe_dump(mlmodel))
    frame = make_frame(600, seed=72)
    source = folder / "in.csv"
    write_frame(frame, source, "csv_header")
    cache = folder / "cache"
    sinks = [folder / "out-a", folder / "out-b"]
    processes = [
        subprocess.Popen(_score(model, source, sink, cache), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True)
        for sink in sinks
    ]
    runs = []
    for process in processes:
        stdout, stderr = process.communicate(timeout=600)
        runs.append(subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr))
    return Built(model, source, frame, cache, runs, sinks)


def _builds(cache: Path) -> list[str]:
    return (cache / BUILDS_LOG).read_text().splitlines()


def _own_predictions(built: Built, python: str) -> pd.DataFrame:
    """The model environment's own ``predict`` and ``predict_proba`` of the input rows (its python, its sklearn)."""
    script = (
        "import sys, cloudpickle, pandas as pd, sklearn\n"
        f"model = cloudpickle.load(open({str(built.model / 'model.pkl')!r}, 'rb'))\n"
        f"frame = pd.read_csv({str(built.source)!r})\n"
        f"x = frame[{FEATURES!r}]\n"
        "out = pd.DataFrame({'id': frame['id'], 'prediction': model.predict(x)})\n"
        "for i, c in enumerate(model.classes_): out[f'probability_{c}'] = model.predict_proba(x)[:, i]\n"
        "out['sklearn'] = sklearn.__version__\n"
        "import json; print(json.dumps(out.to_dict(orient='list')))\n"
    )
    result = subprocess.run([python, "-c", script], capture_output=True, text=True, check=True)
    return pd.DataFrame(json.loads(result.stdout))


def test_concurrent_runs_build_once_and_score_in_the_model_environment(built: Built):
    for run in built.runs:
        assert run.returncode == 0, run.stderr[-3000:]
    assert len(_builds(built.cache)) == 1  # two tasks, one build: the other waited for it and reused it
    assert sum("built meanwhile" in run.stderr or "Reusing" in run.stderr for run in built.runs) == 1
    (key,) = [path.name for path in built.cache.iterdir() if path.is_dir()]
    environment = built.cache / key
    assert (environment / "build.log").read_text().count(f"scikit-learn=={RECORDED}") >= 1
    for sink in built.sinks:
        manifest = json.loads((sink / "_manifest.json").read_text())
        assert manifest["environment"]["mode"] == "model" and manifest["environment"]["hash"] == key
        assert manifest["environment"]["packages"]["scikit-learn"] == RECORDED
        assert "apache-airflow" not in manifest["environment"]["packages"]
        for shard in manifest["shards"]:  # what each replica saw inside its own interpreter
            assert shard["python"]["executable"] == str(environment / "bin" / "python")
            assert shard["python"]["packages"] == {"mlflow": None, "scikit-learn": RECORDED}
    own = _own_predictions(built, str(environment / "bin" / "python"))
    assert set(own["sklearn"]) == {RECORDED}
    own = own.sort_values("id").reset_index(drop=True)
    for sink in built.sinks:
        out = read_output(sink, "parquet").to_pandas()
        out["id"] = out["id"].astype("int64")
        out = out.sort_values("id").reset_index(drop=True)
        assert out["id"].tolist() == sorted(built.frame["id"].tolist())  # every row once
        assert out["label"].astype(int).tolist() == own["prediction"].astype(int).tolist()  # the signature names it
        for column in ("probability_0", "probability_1"):  # a linear model: within its dot product's rounding
            np.testing.assert_allclose(out[column].to_numpy(), own[column].to_numpy(), rtol=1e-12, atol=1e-15)


def test_a_second_run_reuses_the_cached_environment(built: Built, tmp_path: Path):
    before = _builds(built.cache)
    run = subprocess.run(_score(built.model, built.source, tmp_path / "out", built.cache), capture_output=True,
                         text=True)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "Reusing the model environment" in run.stderr and "Building" not in run.stderr
    assert _builds(built.cache) == before  # no second build
    manifest = json.loads((tmp_path / "out" / "_manifest.json").read_text())
    assert manifest["environment"]["packages"]["scikit-learn"] == RECORDED


def test_the_worker_mode_warns_once_naming_the_differing_packages(built: Built):
    lines: list[str] = []
    model = ModelSpec(uri=str(built.model), path=str(built.model), flavor="mlflow")
    prepared = prepare_environment(model, EnvironmentSettings.parse(cache_dir=str(built.cache)), lines.append)
    assert prepared.python == sys.executable and prepared.manifest == {"mode": "worker"}
    (warning,) = lines
    assert f"scikit-learn {RECORDED} recorded, {sklearn.__version__} here" in warning
    assert "mlflow" not in warning  # the same MLflow here: not named


def test_requirements_that_cannot_be_resolved_fail_clearly_and_publish_nothing(built: Built, tmp_path: Path):
    import joblib
    from sklearn.linear_model import LogisticRegression

    model = tmp_path / "model.joblib"  # a bare joblib file: it records no requirements, they are given
    frame = built.frame.head(50)
    joblib.dump(LogisticRegression().fit(frame[FEATURES], frame["f0"] > 0), model)
    sink = tmp_path / "out"
    run = subprocess.run(
        _score(model, built.source, sink, built.cache, "--requirements", "scikit-learn==1.7.2",
               "no-such-package-batch-scoring-xyz==1.0"),
        capture_output=True, text=True,
    )
    assert run.returncode == 2
    assert "no-such-package-batch-scoring-xyz" in run.stderr and "uv said" in run.stderr
    assert "Traceback" not in run.stderr
    assert not sink.exists() or not (sink / "_SUCCESS").exists()
    assert not [path for path in built.cache.iterdir() if path.name.endswith(".tmp")]  # no half environment left


def _folder(tmp_path: Path, python: str) -> ModelSpec:
    """An MLflow-style folder recording its requirements and Python (nothing else is read before the build)."""
    (tmp_path / "requirements.txt").write_text("scikit-learn==1.7.2\n")
    (tmp_path / "python_env.yaml").write_text(f"python: {python}\n")
    return ModelSpec(uri=str(tmp_path), path=str(tmp_path), flavor="mlflow")


def test_a_python_uv_cannot_provide_fails_clearly(tmp_path: Path):
    settings = EnvironmentSettings.parse(model_environment="model", cache_dir=str(tmp_path / "cache"))
    with pytest.raises(ModelEnvironmentError, match=r"Python 2\.7 \(the model's python_env\.yaml\) is not available"):
        prepare_environment(_folder(tmp_path, "2.7.18"), settings, print)
    assert not (tmp_path / "cache" / BUILDS_LOG).exists()
    assert [p.name for p in (tmp_path / "cache").iterdir() if not p.name.endswith((".lock", ".failed.log"))] == []


def test_a_build_longer_than_its_timeout_fails_clearly(tmp_path: Path):
    settings = EnvironmentSettings.parse(model_environment="model", cache_dir=str(tmp_path / "cache"),
                                         build_timeout="0.001")
    with pytest.raises(ModelEnvironmentError, match="took longer than 0.001s"):
        prepare_environment(_folder(tmp_path, "3.11.7"), settings, print)
    assert [p.name for p in (tmp_path / "cache").iterdir() if not p.name.endswith((".lock", ".failed.log"))] == []


def test_model_requirements_prints_what_an_image_for_the_model_installs(built: Built, capsys: pytest.CaptureFixture):
    from airflow_batch_scoring.cli import main
    from airflow_batch_scoring.environments.requirements import RUNTIME_REQUIREMENTS

    assert main(["model-requirements", "--model", str(built.model)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("# python 3.11")
    assert lines[1:] == ["mlflow-skinny==" + __import__("mlflow").__version__, f"scikit-learn=={RECORDED}",
                         *RUNTIME_REQUIREMENTS]


def test_the_operator_s_local_runtime_runs_its_replicas_in_the_model_environment(built: Built, tmp_path: Path):
    """What ``BatchScoringOperator`` hands its runtime (a resolved task with ``model_environment="model"``): the
    cached environment is picked, the replicas run in it and the manifest records it."""
    from airflow_batch_scoring.artifacts import process_model
    from airflow_batch_scoring.driver.prepare import prepare_job
    from airflow_batch_scoring.operators.runtimes import LocalRuntime, ResolvedTask
    from airflow_batch_scoring.options import ScoringOptions
    from airflow_batch_scoring.specs import parse_data_spec

    lines: list[str] = []
    task = ResolvedTask.resolve(
        model=str(built.model), runtime=None, replicas=1, kubernetes=None, stage=None, try_number=1, retries=0,
        model_environment="model", environment=EnvironmentSettings.parse(cache_dir=str(built.cache)),
    )
    sink = tmp_path / "out"
    source_spec = parse_data_spec({"uri": built.source.as_uri()}, "source")
    sink_spec = parse_data_spec({"uri": sink.as_uri(), "format": "parquet"}, "sink")
    runtime = LocalRuntime(task, {}, lines.append)  # type: ignore[arg-type]
    runtime.check_locations(source_spec, sink_spec)  # local files: nothing to install beside the runtime
    runtime.start()
    model = process_model(str(built.model), str(tmp_path / "model"))
    runtime.prepare(model, probabilities=False, output_schema=None)
    job, files = prepare_job(
        job_id="operator-env", model=model, source=source_spec, sink=sink_spec,
        options=ScoringOptions.parse(replicas=1, passthrough_columns=["id"]),
    )
    try:
        summary = runtime.run(job, files, {"source": {}, "sink": {}})  # type: ignore[arg-type]
    finally:
        runtime.close()
    assert summary["rows_in"] == len(built.frame)
    assert any(line.startswith("Reusing the model environment") for line in lines)
    manifest = json.loads((sink / "_manifest.json").read_text())
    assert manifest["environment"]["packages"]["scikit-learn"] == RECORDED
    assert manifest["shards"][0]["python"]["packages"]["scikit-learn"] == RECORDED
