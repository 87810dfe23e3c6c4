"""The TrainingJob crosses the process boundary whole, and the source tag stays under MLflow's limit."""

from __future__ import annotations

import json

from airflow_batch_scoring.job import Piece
from airflow_batch_scoring.specs import parse_data_spec
from airflow_batch_scoring.training.job import TrainingJob, source_tag


def test_the_job_round_trips_through_json():
    job = TrainingJob(
        job_id="j", source=parse_data_spec({"uri": "s3://data/labeled/", "format": "parquet"}, "source"),
        pieces=(Piece("s3://data/labeled/a.parquet", row_groups=(0, 1), rows=10),), label_column="y",
        training="pkg.mod:fit", register_as="churn", data="arrow", training_kwargs={"depth": 3},
        source_record={"uri": "s3://data/labeled/"}, digest="sha256:00",
    )
    assert TrainingJob.from_json(job.to_json()) == job
    reading = job.reading_job()
    assert reading.shards == (job.pieces,) and not reading.schema_check


def test_a_long_listing_is_summarised_in_the_source_tag():
    files = [{"uri": f"s3://data/labeled/part-{i:05d}.parquet", "size": 1000, "version": "x"} for i in range(500)]
    tag = source_tag({"kind": "files", "uri": "s3://data/labeled/", "input": {"files": files}})
    assert len(tag) <= 7500
    record = json.loads(tag)
    assert record["uri"] == "s3://data/labeled/" and record["input"] == {"file_count": 500, "bytes": 500_000}
    short = source_tag({"kind": "files", "uri": "s3://x/", "input": {"files": files[:2]}})
    assert json.loads(short)["input"]["files"] == files[:2]
