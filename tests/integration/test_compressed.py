"""Compressed text inputs (.gz, .bz2, .xz): each file is read whole as a stream by one replica, every row once."""

from __future__ import annotations

import bz2
import gzip
import json
import lzma
from pathlib import Path

import pandas as pd
import pytest

from airflow_batch_scoring.artifacts import process_model
from airflow_batch_scoring.driver.prepare import prepare_job
from airflow_batch_scoring.driver.run import execute_job
from airflow_batch_scoring.errors import ConfigurationError, InputError
from airflow_batch_scoring.formats import compression_of, infer_format
from airflow_batch_scoring.options import ScoringOptions
from airflow_batch_scoring.sources.file_preflight import preflight
from airflow_batch_scoring.specs import parse_data_spec
from tests.support.helpers import (
    SCHEMA,
    Models,
    assert_nothing_published,
    make_frame,
    read_output,
    source_spec,
    write_frame,
)
from tests.support.scoring import check_predictions, score

OPENERS = {"gz": gzip.open, "bz2": bz2.open, "xz": lzma.open}


def compress(path: Path, suffix: str) -> Path:
    target = path.with_name(f"{path.name}.{suffix}")
    with OPENERS[suffix](target, "wb") as f:
        f.write(path.read_bytes())
    path.unlink()
    return target


def test_suffixes():
    assert infer_format("s3://b/day=1/part-0.csv.gz") == "csv" and compression_of("s3://b/x.csv.gz") == "gzip"
    assert infer_format("file:///d/x.jsonl.bz2") == "jsonl" and compression_of("file:///d/x.jsonl.bz2") == "bz2"
    assert infer_format("file:///d/x.CSV.XZ") == "csv" and compression_of("file:///d/x.CSV.XZ") == "xz"
    assert compression_of("file:///d/x.csv") is None


@pytest.mark.parametrize(("fmt", "replicas"), [("csv", 3), ("csv_header", 2), ("jsonl", 2)])
def test_compressed_files_are_scored_whole_each_by_one_replica(models: Models, tmp_path: Path, fmt: str,
                                                               replicas: int):
    frames = [make_frame(700 + 100 * i, seed=40 + i) for i in range(4)]
    folder = tmp_path / "in"
    uris = []
    for i, (frame, suffix) in enumerate(zip(frames, ["gz", "bz2", "xz", "gz"], strict=True)):
        path = folder / f"part{i}.{'jsonl' if fmt == 'jsonl' else 'csv'}"
        write_frame(frame, path, fmt)
        uris.append(compress(path, suffix).as_uri())
    sink = tmp_path / "out"
    job, files = prepare_job(
        job_id="compressed",
        model=process_model(str(models.regressor_path), str(tmp_path / "model")),
        source=parse_data_spec(source_spec(fmt, folder.as_uri() + "/"), "source"),
        sink=parse_data_spec({"uri": sink.as_uri(), "format": "parquet"}, "sink"),
        options=ScoringOptions.parse(passthrough_columns=["id"], replicas=replicas, batch_size=256, part_size=4096),
    )
    pieces = [piece for shard in job.shards for piece in shard]
    assert sorted(p.path for p in pieces) == sorted(uris)  # each file whole, in one shard: read from its start
    assert all((p.start, p.end) == (0, -1) for p in pieces)
    summary = execute_job(job, files, log=lambda line: None)
    check_predictions(pd.concat(frames), read_output(sink, "parquet", []), models.regressor)
    assert summary["rows_in"] == summary["rows_out"] == sum(len(f) for f in frames)


def test_a_bad_value_in_a_compressed_file_names_the_file_and_line(models: Models, tmp_path: Path):
    write_frame(make_frame(2000, seed=44), tmp_path / "tmp.csv", "csv")
    lines = (tmp_path / "tmp.csv").read_text().splitlines(keepends=True)
    fields = lines[1499].split(",")
    fields[4] = "oops"  # f3
    lines[1499] = ",".join(fields)
    (tmp_path / "in").mkdir()
    with gzip.open(tmp_path / "in" / "data.csv.gz", "wt") as f:
        f.write("".join(lines))
    with pytest.raises(InputError) as err:
        score(str(models.regressor_path), source_spec("csv", (tmp_path / "in" / "data.csv.gz").as_uri()),
              {"uri": (tmp_path / "out").as_uri()}, tmp_path, passthrough_columns=["id"], batch_size=100)
    message = str(err.value)
    assert "data.csv.gz, line 1500, column 'f3'" in message and "'oops'" in message
    assert_nothing_published(tmp_path / "out")


def test_preflight_reads_the_head_of_a_compressed_file(models: Models, tmp_path: Path):
    """With the schema known before loading, a bad value near the start fails before any replica starts."""
    write_frame(make_frame(500, seed=45), tmp_path / "tmp.csv", "csv")
    lines = (tmp_path / "tmp.csv").read_text().splitlines(keepends=True)
    lines[9] = lines[9].replace(",", ",x", 1)  # f0 of line 10
    with gzip.open(tmp_path / "data.csv.gz", "wt") as f:
        f.write("".join(lines))
    job, files = prepare_job(
        job_id="preflight",
        model=process_model(str(models.regressor_path), str(tmp_path / "model")),
        source=parse_data_spec(source_spec("csv", (tmp_path / "data.csv.gz").as_uri()), "source"),
        sink=parse_data_spec({"uri": (tmp_path / "out").as_uri()}, "sink"),
        options=ScoringOptions.parse(input_schema=SCHEMA, passthrough_columns=["id"]),
    )
    with pytest.raises(InputError, match=r"data.csv.gz, line 10, column 'f0'"):
        preflight(job, files)


def test_unsupported_compressions_are_refused(models: Models, tmp_path: Path, monkeypatch):
    (tmp_path / "in.csv.zip").write_bytes(b"PK")
    with pytest.raises(ConfigurationError, match=r"not supported \(.*in.csv.zip\): recompress the files as .gz"):
        score(str(models.regressor_path), source_spec("csv", (tmp_path / "in.csv.zip").as_uri()),
              {"uri": (tmp_path / "out").as_uri()}, tmp_path)
    # a runtime without zstandard (the test extra's table formats bring it in here)
    from airflow_batch_scoring.sources import file_planner

    find_spec = file_planner.importlib.util.find_spec
    monkeypatch.setattr(file_planner.importlib.util, "find_spec",
                        lambda name, *args: None if name == "zstandard" else find_spec(name, *args))
    (tmp_path / "in.csv.zst").write_bytes(b"\x28\xb5\x2f\xfd")
    with pytest.raises(ConfigurationError, match="needs the 'zstandard' package"):
        score(str(models.regressor_path), source_spec("csv", (tmp_path / "in.csv.zst").as_uri()),
              {"uri": (tmp_path / "out").as_uri()}, tmp_path)


@pytest.mark.parametrize(("fmt", "header", "compression", "suffix"),
                         [("csv", False, "gzip", "gz"), ("csv", True, "xz", "xz"), ("jsonl", False, "bz2", "bz2")])
def test_compressed_output(models: Models, tmp_path: Path, fmt: str, header: bool, compression: str, suffix: str):
    frame = make_frame(3000, seed=46)
    write_frame(frame, tmp_path / "in.csv", "csv")
    sink = tmp_path / "out"
    score(str(models.regressor_path), source_spec("csv", (tmp_path / "in.csv").as_uri()),
          {"uri": sink.as_uri(), "format": fmt, "header": header, "compression": compression}, tmp_path,
          passthrough_columns=["id"], replicas=3, batch_size=500)
    parts = sorted(p.name for p in sink.iterdir() if p.name.startswith("part-"))
    assert parts == [f"part-{i:05d}.{fmt}.{suffix}" for i in range(3)]
    plain = tmp_path / "plain"
    plain.mkdir()
    for name in parts:
        with OPENERS[suffix](sink / name, "rb") as f:
            (plain / name.removesuffix(f".{suffix}")).write_bytes(f.read())
    names = [] if header or fmt == "jsonl" else ["id", "prediction"]
    check_predictions(frame, read_output(plain, fmt, names, header=header), models.regressor)
    manifest = json.loads((sink / "_manifest.json").read_text())
    assert manifest["output"]["compression"] == compression


def test_compression_settings_are_checked(models: Models, tmp_path: Path):
    write_frame(make_frame(10), tmp_path / "in.csv", "csv")
    source = source_spec("csv", (tmp_path / "in.csv").as_uri())
    with pytest.raises(ConfigurationError, match="Parquet compresses its columns itself"):
        score(str(models.regressor_path), source, {"uri": (tmp_path / "o").as_uri(), "format": "parquet",
                                                   "compression": "gzip"}, tmp_path)
    with pytest.raises(ConfigurationError, match=r"must be gzip, bz2 or xz \(or none\), got 'zip'"):
        parse_data_spec({"uri": "file:///o/", "compression": "zip"}, "sink")
    with pytest.raises(ConfigurationError, match="a source's compression is read from its file names"):
        parse_data_spec({"uri": "file:///i.csv", "compression": "gzip"}, "source")
    assert parse_data_spec({"uri": "file:///o/", "compression": "GZ"}, "sink").compression == "gzip"
