"""Progress lines follow the rows scored, not the bytes the reader consumed ahead of the model.

The reader reads whole blocks (``part_size`` bytes) and the read queue holds batches ahead of the model, so with a
shard of one block the reader has consumed every byte before the first batch is scored.
"""

from __future__ import annotations

import re
from pathlib import Path

import joblib
import pytest
from sklearn.linear_model import LinearRegression

from airflow_batch_scoring.artifacts import process_model
from airflow_batch_scoring.driver.prepare import prepare_job
from airflow_batch_scoring.options import ScoringOptions
from airflow_batch_scoring.runtime import engine
from airflow_batch_scoring.runtime import progress as progress_module
from airflow_batch_scoring.runtime.progress import Progress, ReadMark, scored_fraction
from airflow_batch_scoring.specs import parse_data_spec
from tests.support.helpers import FEATURES, SCHEMA, make_frame, write_frame

ROWS, BATCH = 3000, 100


def test_fraction_counts_rows_scored_when_the_reader_is_ahead(monkeypatch: pytest.MonkeyPatch):
    mark = ReadMark()
    mark.record(2000, 600_000)  # the reader parsed 2,000 rows from the first 600 kB of a 1 MB shard
    assert scored_fraction(0, mark.mark, 1_000_000) == 0
    assert scored_fraction(500, mark.mark, 1_000_000) == pytest.approx(0.15)  # 500 of 2,000 rows: 150 kB of 1 MB
    mark.record(1000, 900_000)  # the next block: 3,000 rows from 900 kB
    assert mark.mark == (3000, 900_000)
    assert scored_fraction(900, mark.mark, 1_000_000) == pytest.approx(0.27)
    assert scored_fraction(3000, mark.mark, 1_000_000) == pytest.approx(0.9)
    assert scored_fraction(10, (0, 0), 1_000_000) is None  # nothing read yet: no share
    assert scored_fraction(10, (5, 100), 0) is None  # no size known (compressed stream, Parquet)

    clock = iter([100.0, 110.0])  # started, then ten seconds in
    monkeypatch.setattr(progress_module.time, "monotonic", lambda: next(clock))
    lines: list[str] = []
    progress = Progress(lines.append, "replica 1/1", None, interval=0)
    progress.update(900, scored_fraction(900, (3000, 1_000_000), 1_000_000))
    assert lines == ["replica 1/1: 900 rows scored, 90 rows/s, 30% done, ETA 23s"]


def test_progress_lines_follow_the_rows_scored(tmp_path: Path):
    """A 3,000-row CSV read as one block (everything consumed at once), scored 100 rows a batch: each progress line
    says the share of the rows scored so far (the bytes read said 100 % from the first batch on)."""
    frame = make_frame(ROWS, seed=7)
    write_frame(frame, tmp_path / "in.csv", "csv_header")
    model_file = tmp_path / "linear.joblib"
    joblib.dump(LinearRegression().fit(frame[FEATURES], frame["f0"]), model_file)
    job, _ = prepare_job(
        job_id=f"progress-{tmp_path.name}",
        model=process_model(str(model_file), str(tmp_path / "model")),
        source=parse_data_spec({"uri": (tmp_path / "in.csv").as_uri(), "format": "csv", "header": True}, "source"),
        sink=parse_data_spec({"uri": (tmp_path / "out").as_uri()}, "sink"),
        options=ScoringOptions.parse(
            input_schema=SCHEMA,
            batch_size=BATCH,
            part_size=16 * 1024 * 1024,
            passthrough_columns=["id"],
        ),
    )
    lines: list[str] = []
    report = engine.run_shard(job, 0, log=lines.append, progress_interval=0)
    assert report.rows_in == report.rows_out == ROWS
    shares = [
        (int(m["rows"].replace(",", "")), int(m["share"]))
        for m in (re.search(r"(?P<rows>[\d,]+) rows scored, .* (?P<share>\d+)% done", line) for line in lines)
        if m
    ]
    assert len(shares) == ROWS // BATCH
    assert [rows for rows, _ in shares] == list(range(BATCH, ROWS + 1, BATCH))
    for rows, share in shares:  # the text rounds to whole percents; rows are spread evenly in the file
        assert abs(share - 100 * rows / ROWS) <= 1.5, (rows, share)
    assert shares[0][1] <= 5
    assert "finished in" in lines[-1]
