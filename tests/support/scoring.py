"""Score through the real driver and local replicas, and check the output against the model's own predictions."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from airflow_batch_scoring.artifacts import process_model
from airflow_batch_scoring.driver.prepare import prepare_job
from airflow_batch_scoring.driver.run import execute_job
from airflow_batch_scoring.options import ScoringOptions
from airflow_batch_scoring.specs import parse_data_spec
from tests.support.helpers import FEATURES


def score(
    models_or_uri: str,
    source: dict,
    sink: dict,
    work: Path,
    **kwargs,
) -> dict:
    model = process_model(models_or_uri, str(work / "model-download"))
    kwargs.setdefault("part_size", 4096)  # small test files are still split between replicas
    job, files = prepare_job(
        job_id=f"test-{work.name}",
        model=model,
        source=parse_data_spec(source, "source"),
        sink=parse_data_spec(sink, "sink"),
        options=ScoringOptions.parse(**kwargs),
    )
    return execute_job(job, files, log=lambda line: None)


def check_predictions(frame, output, estimator, prediction="prediction") -> None:
    """Every input id exactly once, and each prediction equal to the model's own on that row."""
    out = output.to_pandas()
    out["id"] = out["id"].astype("int64")  # (a CSV or JSON lines source carries a passthrough id as its text)
    out = out.sort_values("id").reset_index(drop=True)
    assert out["id"].tolist() == sorted(frame["id"].tolist())
    expected = estimator.predict(frame.sort_values("id")[FEATURES])
    if expected.dtype.kind == "f":
        np.testing.assert_array_equal(out[prediction].to_numpy(dtype=np.float64), expected)
    else:
        assert out[prediction].astype(str).tolist() == expected.astype(str).tolist()
