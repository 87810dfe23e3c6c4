"""The quickstart (docs/quickstart.rst) works as written: its marked code runs, in order, in an empty folder.

Each code block of the quickstart and of README.md carries a ``doc-test`` marker (``tests/support/doc_blocks.py``;
``tests/unit/test_docs.py`` checks that none is missing). Here the quickstart's ``file`` blocks are saved and its
``run`` blocks run as one bash script, in a new folder, with this virtual environment's commands first on ``PATH``
(as after ``pip install`` and ``activate``) and none of the test session's Airflow or MLflow settings: the script's
own ``export`` lines make the Airflow home, the DAGs folder and the MLflow store, as a user's shell would.

Not run: the blocks marked ``skip``, each with its reason: installing the project (``.ci/run`` installs it the same
way before this test runs), ``./scripts/demo`` and ``bash .ci/run`` (CI itself; the demo's DAG is run by
``test_example_dags.py``), and starting Airflow's servers for the UI (``test_scheduler_e2e.py`` starts api-server,
scheduler and dag-processor and presses Trigger in a browser). README.md's DAG is the quickstart's DAG, character for
character (``test_docs.py``), so running the quickstart runs it too.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests.support.doc_blocks import ROOT, rst_blocks, script

QUICKSTART = ROOT / "docs" / "quickstart.rst"


def users_shell() -> dict[str, str]:
    """The environment of a user who installed the provider: its commands on PATH, no Airflow or MLflow settings."""
    # (MLflow sets MLFLOW_EXPERIMENT_ID in the process once a test picks an experiment: not a user's setting)
    test_settings = (
        "AIRFLOW", "MLFLOW_TRACKING", "MLFLOW_REGISTRY", "MLFLOW_EXPERIMENT", "BATCH_SCORING_", "PYTHONPATH"
    )
    env = {key: value for key, value in os.environ.items() if not key.startswith(test_settings)}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    return env


@pytest.fixture(scope="module")
def quickstart(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """Run the quickstart's marked blocks in an empty folder; return the folder and what the script printed."""
    folder = tmp_path_factory.mktemp("quickstart")
    code = script(rst_blocks(QUICKSTART))
    (folder.parent / "quickstart-script.sh").write_text(code)
    done = subprocess.run(["bash", "-c", code], cwd=folder, env=users_shell(), capture_output=True, text=True,
                          timeout=480)
    assert done.returncode == 0, (
        f"the quickstart's code failed (exit {done.returncode}); script: {folder.parent / 'quickstart-script.sh'}\n"
        f"stdout:\n{done.stdout[-4000:]}\nstderr:\n{done.stderr[-4000:]}"
    )
    return folder, done.stdout


def test_quickstart_runs_as_written(quickstart: tuple[Path, str]):
    folder, out = quickstart
    assert "registered models:/iris/1 with the alias champion" in out
    assert "Model models:/iris@champion resolved to models:/iris/1" in out
    assert "Scored 150 rows into file://" in out
    assert "rows      150 in, 150 out" in out  # batch-scoring manifest --summary
    assert "\n150\n" in out  # --field totals.rows_out
    assert "score_iris" in out.split("+ doc-test: quickstart.rst")[-1]  # airflow dags list
    (output,) = (folder / "scores").iterdir()
    names = sorted(path.name for path in output.iterdir())
    assert names == ["_SUCCESS", "_manifest.json", "part-00000.csv", "part-00001.csv"]


def test_quickstart_output_is_the_registered_model_s_predictions(quickstart: tuple[Path, str]):
    """Every row of data/iris.csv exactly once, with the registered model's own prediction and probabilities."""
    import mlflow
    import mlflow.artifacts
    import mlflow.sklearn

    folder, _ = quickstart
    tracking_uri = f"sqlite:///{folder / 'mlflow.db'}"
    client = mlflow.MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
    version = client.get_model_version_by_alias("iris", "champion")
    location = client.get_model_version_download_uri("iris", version.version)
    path = mlflow.artifacts.download_artifacts(artifact_uri=location, dst_path=str(folder / "check"),
                                               tracking_uri=tracking_uri)
    model = mlflow.sklearn.load_model(path)
    (output_folder,) = (folder / "scores").iterdir()
    parts = sorted(output_folder.glob("part-*"))
    output = pd.concat([pd.read_csv(part) for part in parts])
    output = output.sort_values("id").reset_index(drop=True)
    data = pd.read_csv(folder / "data" / "iris.csv")
    assert output["id"].tolist() == data["id"].tolist() == list(range(150))
    features = data.drop(columns="id")
    assert output["prediction"].tolist() == model.predict(features).tolist()
    probabilities = model.predict_proba(features)
    for i, species in enumerate(model.classes_):
        # a linear model: equal within the rounding of its dot product (BLAS rounds by a row's place in the batch)
        np.testing.assert_allclose(output[f"probability_{species}"], probabilities[:, i], rtol=1e-12, atol=1e-15)
