"""The TrainingJob crosses the process boundary whole, and the source tag is a source spec a metrics job reads back
(``baseline="training"``)."""

from __future__ import annotations

import json

from airflow_batch_scoring.job import Piece
from airflow_batch_scoring.specs import parse_data_spec
from airflow_batch_scoring.training.job import TrainingJob, training_tags


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


def test_the_source_tag_parses_back_into_the_same_spec():
    from airflow_batch_scoring.metrics.training_baseline import DIGEST_TAG, LABEL_TAG, ROWS_TAG, SOURCE_TAG

    for given in ({"uri": "s3://data/labeled/", "format": "csv", "header": True, "conn_id": "aws_data"},
                  {"uri": "postgresql://scorer@db/sales", "table": "public.labeled", "conn_id": "pg"}):
        spec = parse_data_spec(given, "source")
        tags = training_tags(spec, "sha256:ab", 12, "y")
        assert parse_data_spec(json.loads(tags[SOURCE_TAG]), "source") == spec
        assert (tags[DIGEST_TAG], tags[ROWS_TAG], tags[LABEL_TAG]) == ("sha256:ab", "12", "y")
