"""Shared by the test_artifacts_*.py modules: score a processed model through real replicas and read it back."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow.parquet as pq

from airflow_batch_scoring.driver.prepare import prepare_job
from airflow_batch_scoring.driver.run import execute_job
from airflow_batch_scoring.job import ModelSpec
from airflow_batch_scoring.options import ScoringOptions
from airflow_batch_scoring.specs import parse_data_spec

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
MOJO_FIXTURE = FIXTURES / "gbm_binomial.zip"
MOJO_TRAIN = FIXTURES / "gbm_train.csv"


def score_spec(
    spec: ModelSpec, frame: pd.DataFrame, work: Path, *, replicas: int = 2, batch_size: int = 128, **kwargs: Any
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Score ``frame`` (Parquet in, Parquet out, ``id`` passed through) with real local replicas.

    :returns: the output sorted by ``id``, and the run's summary.
    """
    source = work / "in" / "data.parquet"
    source.parent.mkdir(parents=True, exist_ok=True)
    frame.to_parquet(source, index=False, row_group_size=max(1, len(frame) // 4))
    sink = work / "out"
    job, files = prepare_job(
        job_id=f"artifacts-{work.name}",
        model=spec,
        source=parse_data_spec({"uri": source.as_uri()}, "source"),
        sink=parse_data_spec({"uri": sink.as_uri(), "format": "parquet"}, "sink"),
        options=ScoringOptions.parse(replicas=replicas, batch_size=batch_size, passthrough_columns=["id"], **kwargs),
    )
    summary = execute_job(job, files, log=lambda line: None)
    parts = sorted(sink.glob("part-*.parquet"))
    out = pd.concat([pq.read_table(p).to_pandas() for p in parts], ignore_index=True)
    out = out.sort_values("id").reset_index(drop=True)
    assert out["id"].tolist() == sorted(frame["id"].tolist()), "every input row appears exactly once"
    return out, summary
