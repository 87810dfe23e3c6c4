"""Reading while the model loads: when the input schema is known without the model, the reader starts first.

Runs the engine's ``run_shard`` in this process on jobs planned by the real driver, with the real scikit-learn
files. ``load_verified`` is wrapped (not replaced) to see which threads run while the model loads.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pyarrow.csv as pa_csv
import pytest

from airflow_batch_scoring.artifacts import process_model
from airflow_batch_scoring.driver.prepare import prepare_job
from airflow_batch_scoring.errors import InputError, ModelError
from airflow_batch_scoring.job import ScoringJob
from airflow_batch_scoring.options import ScoringOptions
from airflow_batch_scoring.runtime import engine
from airflow_batch_scoring.runtime.shards import ShardReport
from airflow_batch_scoring.specs import parse_data_spec
from tests.support.helpers import SCHEMA, Models, make_frame, write_frame
from tests.support.scoring import check_predictions

ROWS = 1537


def _job(models: Models, work: Path, source: Path, input_schema: Any, model_file: Path | None = None) -> ScoringJob:
    model_path = model_file or models.path("classifier")
    model = process_model(str(model_path), str(work / "model-download"))
    job, _ = prepare_job(
        job_id=f"test-{work.name}-{'schema' if input_schema else 'model'}",
        model=model,
        source=parse_data_spec({"uri": source.as_uri(), "format": "csv", "header": True}, "source"),
        sink=parse_data_spec({"uri": (work / "out").as_uri(), "header": False}, "sink"),
        options=ScoringOptions.parse(input_schema=input_schema, batch_size=100, passthrough_columns=["id"]),
    )
    return job


@pytest.fixture(autouse=True)
def read_while_loading(monkeypatch: pytest.MonkeyPatch) -> None:
    """The overlap is opt-in (it measured slower on 2 cores); these tests switch it on."""
    monkeypatch.setenv("BATCH_SCORING_READ_WHILE_LOADING", "1")


@pytest.fixture
def spy_load(monkeypatch: pytest.MonkeyPatch) -> list[list[str]]:
    """The names of the live threads each time the engine starts loading the model."""
    seen: list[list[str]] = []
    real = engine.load_verified

    def load_verified(*args: Any, **kwargs: Any) -> Any:
        seen.append(sorted(t.name for t in threading.enumerate()))
        return real(*args, **kwargs)

    monkeypatch.setattr(engine, "load_verified", load_verified)
    return seen


@pytest.mark.parametrize("given_schema", [True, False])
def test_reader_starts_before_the_model_only_when_the_schema_is_known(
    models: Models, tmp_path: Path, spy_load: list[list[str]], given_schema: bool
):
    frame = make_frame(ROWS, seed=3)
    write_frame(frame, tmp_path / "in.csv", "csv_header")
    job = _job(models, tmp_path, tmp_path / "in.csv", SCHEMA if given_schema else None)
    report = engine.run_shard(job, 0, log=lambda line: None)
    assert ("reader-0" in spy_load[0]) is given_schema
    assert "writer-0" not in spy_load[0]
    assert report.rows_in == report.rows_out == ROWS
    assert 0 < report.load_s < report.duration_s
    staged = Path(job.staging_uri.removeprefix("file://")) / report.parts[0]
    output = pa_csv.read_csv(staged, read_options=pa_csv.ReadOptions(column_names=["id", "prediction"]))
    assert output.column("id").to_pylist() == frame["id"].tolist()
    check_predictions(frame, output, models.estimator("classifier"))
    assert not [t for t in threading.enumerate() if t.name in ("reader-0", "writer-0")]


def test_old_reports_without_load_s_still_load():
    document = {"shard": 0, "rows_in": 5, "rows_out": 5, "duration_s": 1.0, "read_s": 0.5}
    assert ShardReport(**document).load_s == 0.0


def _error_of(job: ScoringJob) -> BaseException:
    with pytest.raises((ModelError, InputError)) as caught:
        engine.run_shard(job, 0, log=lambda line: None)
    assert not [t for t in threading.enumerate() if t.name in ("reader-0", "writer-0") and t.is_alive()]
    staging = Path(job.staging_uri.removeprefix("file://"))
    assert not staging.exists() or not [p for p in staging.rglob("*") if p.is_file()]
    return caught.value


def test_model_that_fails_to_load_fails_the_shard_the_same_way(models: Models, tmp_path: Path):
    frame = make_frame(ROWS, seed=4)
    write_frame(frame, tmp_path / "in.csv", "csv_header")
    model_file = tmp_path / "model.joblib"
    model_file.write_bytes(models.path("classifier").read_bytes())
    jobs = [
        _job(models, tmp_path / name, tmp_path / "in.csv", schema, model_file)
        for name, schema in (("a", SCHEMA), ("b", None))
    ]
    assert {job.model.uri for job in jobs} == {str(model_file)}
    model_file.write_bytes(b"not a pickle")  # after processing: the replica's load fails
    with_schema, without = (_error_of(job) for job in jobs)
    assert type(with_schema) is type(without) is ModelError
    assert str(with_schema) == str(without)


def test_reader_that_fails_while_the_model_loads_fails_the_shard_the_same_way(models: Models, tmp_path: Path):
    frame = make_frame(ROWS, seed=5)
    write_frame(frame, tmp_path / "in.csv", "csv_header")
    lines = (tmp_path / "in.csv").read_text().splitlines()
    lines[40] = lines[40].split(",", 1)[0] + ",abc" + "," + lines[40].split(",", 2)[2]
    (tmp_path / "in.csv").write_text("\n".join(lines) + "\n")
    with_schema, without = (
        _error_of(_job(models, tmp_path / name, tmp_path / "in.csv", schema))
        for name, schema in (("a", SCHEMA), ("b", None))
    )
    assert type(with_schema) is type(without) is InputError
    assert str(with_schema) == str(without)
