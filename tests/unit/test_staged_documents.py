"""Job documents staged on the store when a ConfigMap cannot hold them (runtime/staged_documents.py), on fsspec's
in-memory store."""

from __future__ import annotations

import json
import uuid

import fsspec
import pytest

from airflow_batch_scoring.errors import InputError
from airflow_batch_scoring.job import ModelSpec, Piece, ScoringJob
from airflow_batch_scoring.runtime.staged_documents import STAGED_KEY, read_document, stage_document
from airflow_batch_scoring.specs import FileSpec


def _job(files: int) -> ScoringJob:
    return ScoringJob(
        job_id="big", model=ModelSpec(uri="m", path="memory://m", flavor="sklearn"),
        source=FileSpec(uri="s3://in/", format="csv"), sink=FileSpec(uri="s3://out/", format="csv"),
        staging_uri="memory://out/_temporary/big",
        shards=tuple(tuple(Piece(path=f"s3://in/part-{n:06d}.csv") for n in range(s, files, 100)) for s in range(100)),
    )


def test_a_large_job_round_trips_through_its_pointer():
    staging = f"memory://stage-{uuid.uuid4().hex[:8]}/_temporary/big"
    text = _job(20_000).to_json()
    pointer = stage_document(staging, "job.json", text, None)
    assert len(pointer) < 300 and len(text) > 2_000_000  # what the ConfigMap holds instead of ~2.5 MB
    document = json.loads(pointer)
    assert document[STAGED_KEY] == f"{staging}/_job/job.json.gz" and document["bytes"] == len(text)
    assert len(fsspec.filesystem("memory").cat_file(document[STAGED_KEY].removeprefix("memory://"))) < len(text) / 10
    assert read_document(pointer, None) == text
    assert ScoringJob.from_json(read_document(pointer, None)) == _job(20_000)


def test_a_document_that_is_not_a_pointer_is_itself():
    text = _job(3).to_json()
    assert read_document(text, None) is text
    assert read_document("[]", None) == "[]"


def test_a_staged_document_changed_or_gone_is_refused():
    staging = f"memory://stage-{uuid.uuid4().hex[:8]}/_temporary/big"
    pointer = stage_document(staging, "inputs.json", "[]", None)
    fs = fsspec.filesystem("memory")
    path = json.loads(pointer)[STAGED_KEY].removeprefix("memory://")
    fs.pipe_file(path, fs.cat_file(path) + b"\0")
    with pytest.raises(InputError, match="is not the one the driver wrote"):
        read_document(pointer, None)
    fs.rm_file(path)
    with pytest.raises(InputError, match="does not exist .* retry the task"):
        read_document(pointer, None)
