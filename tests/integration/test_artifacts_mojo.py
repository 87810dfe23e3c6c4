"""H2O-3 MOJO artifacts scored by Java with the genmodel classes: outputs equal PredictCsv's own on the same rows.

The MOJO fixture (tests/fixtures/gbm_binomial.zip) was made once with h2o==3.46.0.7 by tests/fixtures/make_mojo.py.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from airflow_batch_scoring.artifacts import process_model
from airflow_batch_scoring.errors import ModelError
from tests.support.artifacts import MOJO_FIXTURE, MOJO_TRAIN, score_spec

if shutil.which("java") is None:
    pytest.skip("H2O MOJO scoring needs java", allow_module_level=True)


@pytest.fixture(scope="module")
def jar() -> str:
    from airflow_batch_scoring.flavors.mojo import genmodel_jar

    try:
        return genmodel_jar()
    except ModelError as err:
        pytest.skip(str(err))


def _frame() -> pd.DataFrame:
    frame = pd.read_csv(MOJO_TRAIN).drop(columns=["label"])
    frame.loc[3, "x2"] = np.nan  # a missing value
    frame.loc[5, "color"] = "purple"  # a level the model never saw
    frame.insert(0, "id", np.arange(len(frame), dtype=np.int64))
    return frame


def _predict_csv(jar: str, frame: pd.DataFrame, folder: Path) -> pd.DataFrame:
    """H2O's own scoring of ``frame``'s rows, in one PredictCsv run."""
    folder.mkdir(parents=True, exist_ok=True)
    frame.drop(columns=["id"]).to_csv(folder / "in.csv", index=False)
    subprocess.run(
        ["java", "-cp", jar, "hex.genmodel.tools.PredictCsv", "--mojo", str(MOJO_FIXTURE), "--input",
         str(folder / "in.csv"), "--output", str(folder / "out.csv"), "--decimal"],
        check=True, capture_output=True,
    )
    return pd.read_csv(folder / "out.csv", dtype={"predict": str})


def test_mojo_schema_and_metadata(tmp_path: Path):
    spec = process_model(MOJO_FIXTURE.as_uri(), str(tmp_path / "t"), copy=True, require_input_schema=True)
    assert spec.artifact_type == "h2o3/mojo" and spec.flavor == "mojo"
    assert spec.input_schema == [
        {"name": "x1", "type": "Float64"},
        {"name": "x2", "type": "Float64"},
        {"name": "x3", "type": "Float64"},
        {"name": "color", "type": "String"},
    ]
    assert spec.source_metadata["category"] == "Binomial" and spec.source_metadata["classes"] == ["no", "yes"]
    assert spec.source_metadata["h2o_version"] == "3.46.0.7" and spec.source_metadata["response"] == "label"


def test_mojo_predictions_equal_predict_csv(jar: str, tmp_path: Path):
    spec = process_model(str(MOJO_FIXTURE), str(tmp_path / "t"), artifact_type="H2O3/MOJO")
    frame = _frame()
    out, summary = score_spec(spec, frame, tmp_path / "w", replicas=2, batch_size=150, predict_probabilities=True)
    assert summary["rows_out"] == len(frame)
    expected = _predict_csv(jar, frame, tmp_path / "h2o")
    assert out["prediction"].tolist() == expected["predict"].tolist()
    for label in ("no", "yes"):
        np.testing.assert_array_equal(out[f"probability_{label}"].to_numpy(), expected[label].to_numpy())


def test_zip_that_is_not_a_mojo(tmp_path: Path):
    import zipfile

    fake = tmp_path / "model.zip"
    with zipfile.ZipFile(fake, "w") as archive:
        archive.writestr("hello.txt", "hi")
    with pytest.raises(ModelError, match="Cannot tell the artifact type"):
        process_model(str(fake), str(tmp_path / "t"))
    with pytest.raises(ModelError, match="not a readable H2O MOJO"):
        process_model(str(fake), str(tmp_path / "t"), artifact_type="h2o3/mojo")
