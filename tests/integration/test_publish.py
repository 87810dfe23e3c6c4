"""Publishing: a sink never overlaps its source or sits at a root, publishing removes only what this provider
published (its manifest lists it), the manifest names the published files, and a publish stopped part-way is
finished by the next attempt of the same run."""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path

import fsspec
import joblib
import pytest
from fsspec.implementations.local import LocalFileSystem

from airflow_batch_scoring.artifacts import process_model
from airflow_batch_scoring.driver.prepare import prepare_job
from airflow_batch_scoring.driver.run import execute_job
from airflow_batch_scoring.errors import ConfigurationError
from airflow_batch_scoring.io.locations import check_allowed, normalize_location
from airflow_batch_scoring.options import ScoringOptions
from airflow_batch_scoring.sinks import file_publish
from airflow_batch_scoring.specs import parse_data_spec
from tests.support.fault_models import Doubler, check_exactly_once
from tests.support.helpers import make_frame, read_output, source_spec, write_frame
from tests.support.servers import S3_KEY, S3_SECRET

ROWS = 600


pytestmark = pytest.mark.usefixtures("replicas_import_tests")  # replicas unpickle tests.support.fault_models.Doubler


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory):
    folder = tmp_path_factory.mktemp("publish-model")
    joblib.dump(Doubler(), folder / "doubler.joblib")
    return process_model(str(folder / "doubler.joblib"), str(folder / "processed"))


def build(model, source_uri: str, sink_uri: str, *, job_id: str = "run", attempt: str = "try1", replicas: int = 3,
          storage_options=None, fmt: str = "csv"):
    return prepare_job(
        job_id=job_id,
        attempt=attempt,
        model=model,
        source=parse_data_spec(source_spec(fmt, source_uri), "source"),
        sink=parse_data_spec({"uri": sink_uri}, "sink"),
        storage_options=storage_options,
        options=ScoringOptions.parse(replicas=replicas, batch_size=100, passthrough_columns=["id"]),
    )


def tree(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


# --- item 1: a sink that is, holds or lies inside the source -------------------------------------------------------


def test_sink_equal_to_a_spark_style_source_is_refused_and_the_input_survives(model, tmp_path: Path):
    """Before: the run exited 0, and publishing removed every part-* in the sink: the input itself."""
    folder = tmp_path / "data"
    frames = [make_frame(200, seed=s) for s in range(3)]
    for number, frame in enumerate(frames):
        write_frame(frame, folder / f"part-{number:05d}.csv", "csv")
    before = tree(folder)
    with pytest.raises(ConfigurationError, match=r"is the source .* read again by the next run"):
        build(model, folder.as_uri() + "/", folder.as_uri())
    assert tree(folder) == before  # nothing read, nothing written: no _temporary either


@pytest.mark.parametrize("form", [
    "same-with-dots", "sink-inside", "sink-holds-file", "percent-encoded", "symlink", "glob", "bare-path",
])
def test_overlapping_sink_forms_are_refused(model, tmp_path: Path, form: str):
    data = tmp_path / "in"
    write_frame(make_frame(50), data / "day=1" / "a.csv", "csv")
    (tmp_path / "link").symlink_to(data)
    source, sink = {
        "same-with-dots": (data.as_uri(), f"{data.as_uri()}/../in/./"),
        "sink-inside": (data.as_uri(), f"{data.as_uri()}/scores/"),
        "sink-holds-file": ((data / "day=1" / "a.csv").as_uri(), data.as_uri()),
        "percent-encoded": ((data / "day=1").as_uri(), f"{data.as_uri()}/day%3D1/out"),
        "symlink": (data.as_uri(), (tmp_path / "link").as_uri() + "/scores"),
        "glob": (f"{data.as_uri()}/day=*/*.csv", f"{data.as_uri()}/day=2/"),
        "bare-path": (str(data) + "/", str(data) + "//x/.."),
    }[form]
    before = tree(tmp_path)
    with pytest.raises(ConfigurationError, match=r"the source .* Write the output to a folder outside"):
        build(model, source, sink)
    assert tree(tmp_path) == before


def test_a_glob_does_not_reach_a_folder_beside_its_files(model, tmp_path: Path):
    """``in/*.csv`` matches no file of ``in/scores/``; ``in/day=*/*.csv`` would match ``in/day=2/part-00000.csv``."""
    write_frame(make_frame(50), tmp_path / "in" / "a.csv", "csv")
    job, _ = build(model, f"{tmp_path.as_uri()}/in/*.csv", f"{tmp_path.as_uri()}/in/scores/")
    assert job.sink.uri == f"{tmp_path.as_uri()}/in/scores/"
    with pytest.raises(ConfigurationError, match="is the source"):
        build(model, f"{tmp_path.as_uri()}/in/*.csv", f"{tmp_path.as_uri()}/in/")


def test_sink_at_a_root_is_refused(model, tmp_path: Path):
    write_frame(make_frame(50), tmp_path / "in.csv", "csv")
    for sink in ("file:///", "/", f"{tmp_path.as_uri()}/{'../' * len(tmp_path.parts[1:])}"):
        with pytest.raises(ConfigurationError, match="is the root of its filesystem"):
            build(model, (tmp_path / "in.csv").as_uri(), sink)
    with pytest.raises(ConfigurationError, match="climbs above its root"):
        build(model, (tmp_path / "in.csv").as_uri(), "s3://bucket/../other/")


def test_dots_in_the_sink_are_resolved_in_output_uri(model, tmp_path: Path):
    frame = make_frame(ROWS)
    write_frame(frame, tmp_path / "in.csv", "csv")
    job, files = build(model, (tmp_path / "in.csv").as_uri(), f"{tmp_path.as_uri()}/x/../scores/")
    summary = execute_job(job, files, log=lambda line: None)
    assert summary["output_uri"] == f"{tmp_path.as_uri()}/scores/"
    assert not (tmp_path / "x").exists()
    check_exactly_once(frame, read_output(tmp_path / "scores", "csv", ["id", "prediction"]))


def test_overlap_on_s3_is_refused_before_anything_is_written(model, seaweedfs, s3_bucket, tmp_path: Path):
    fs = fsspec.filesystem("s3", key=S3_KEY, secret=S3_SECRET, endpoint_url=seaweedfs.endpoint,
                           skip_instance_cache=True)
    options = {"key": S3_KEY, "secret": S3_SECRET, "endpoint_url": seaweedfs.endpoint}
    prefix = f"{s3_bucket}/overlap-{uuid.uuid4().hex[:8]}"
    write_frame(make_frame(50), tmp_path / "part-00000.csv", "csv")
    fs.put_file(str(tmp_path / "part-00000.csv"), f"{prefix}/in/part-00000.csv")
    storage = {"source": options, "sink": options}
    for sink in (f"s3://{prefix}/in", f"s3a://{prefix}/in/", f"s3://{prefix}/other/../in//", f"s3://{prefix}/in/out/"):
        with pytest.raises(ConfigurationError, match="the source"):
            build(model, f"s3://{prefix}/in/", sink, storage_options=storage)
    with pytest.raises(ConfigurationError, match="holds the source"):
        build(model, f"s3://{prefix}/in/part-00000.csv", f"s3://{prefix}/", storage_options=storage)
    with pytest.raises(ConfigurationError, match="is the root"):
        build(model, f"s3://{prefix}/in/", f"s3://{s3_bucket}/", storage_options=storage)
    fs.invalidate_cache()
    assert fs.find(prefix) == [f"{prefix}/in/part-00000.csv"]
    # a sibling prefix that merely starts with the same letters is not inside the source
    job, _ = build(model, f"s3://{prefix}/in/", f"s3://{prefix}/in-scores/", storage_options=storage)
    assert job.sink.uri == f"s3://{prefix}/in-scores/"


def test_replacing_the_source_table_with_its_scores_is_refused(model, tmp_path: Path):
    import sqlite3

    database = tmp_path / "db.sqlite"
    with sqlite3.connect(database) as connection:
        connection.execute("CREATE TABLE customers (id INTEGER, f0 REAL, f1 REAL, f2 REAL, f3 REAL, f4 REAL)")
        connection.execute("INSERT INTO customers VALUES (1, 1, 2, 3, 4, 5)")
    url = f"sqlite:///{database}"

    def prepare(sink: dict):
        source = parse_data_spec({"uri": url, "table": "customers"}, "source")
        return prepare_job(
            job_id="sql",
            model=model,
            source=source,
            sink=parse_data_spec(sink, "sink"),
            options=ScoringOptions.parse(passthrough_columns=["id"]),
        )

    with pytest.raises(ConfigurationError, match="is the source table and mode='replace'"):
        prepare({"uri": url, "table": "CUSTOMERS", "mode": "replace"})
    job, _ = prepare({"uri": url, "table": "scores", "mode": "replace"})  # another table is fine
    assert str(job.sink.table) == "scores"


# --- item 1: publishing removes only this provider's own output ---------------------------------------------------


def test_a_sink_holding_files_of_another_tool_is_refused_and_kept(model, tmp_path: Path):
    frame = make_frame(ROWS)
    write_frame(frame, tmp_path / "in.csv", "csv")
    sink = tmp_path / "out"
    write_frame(make_frame(10, seed=5), sink / "part-00000.csv", "csv")  # e.g. Spark's output, no manifest of ours
    (sink / "_SUCCESS").write_text("")
    before = tree(sink)
    job, files = build(model, (tmp_path / "in.csv").as_uri(), sink.as_uri())
    with pytest.raises(ConfigurationError, match=r"holds files that no run of this provider published \(_SUCCESS, "
                                                 r"part-00000.csv"):
        execute_job(job, files, log=lambda line: None)
    assert tree(sink) == before


def test_replace_removes_only_the_files_the_previous_manifest_lists(model, tmp_path: Path):
    frame = make_frame(ROWS)
    write_frame(frame, tmp_path / "in.csv", "csv")
    sink = tmp_path / "out"
    job, files = build(model, (tmp_path / "in.csv").as_uri(), sink.as_uri(), job_id="first", replicas=3)
    execute_job(job, files, log=lambda line: None)
    (sink / "README.txt").write_text("not ours")
    job, files = build(model, (tmp_path / "in.csv").as_uri(), sink.as_uri(), job_id="second", replicas=1)
    execute_job(job, files, log=lambda line: None)
    assert sorted(os.listdir(sink)) == ["README.txt", "_SUCCESS", "_manifest.json", "part-00000.csv"]
    assert (sink / "README.txt").read_text() == "not ours"
    check_exactly_once(frame, read_output(sink, "csv", ["id", "prediction"]))

    (sink / "part-00007.csv").write_text("1,2\n")  # a part this provider never published
    job, files = build(model, (tmp_path / "in.csv").as_uri(), sink.as_uri(), job_id="third", replicas=2)
    with pytest.raises(ConfigurationError, match=r"no run of this provider published \(part-00007.csv;"):
        execute_job(job, files, log=lambda line: None)
    assert (sink / "part-00007.csv").read_text() == "1,2\n" and (sink / "_SUCCESS").exists()


def test_an_output_published_before_manifests_listed_files_is_replaced(model, tmp_path: Path):
    """A manifest written by an earlier version lists the shards' staged names only: those are its files."""
    frame = make_frame(ROWS)
    write_frame(frame, tmp_path / "in.csv", "csv")
    sink = tmp_path / "out"
    job, files = build(model, (tmp_path / "in.csv").as_uri(), sink.as_uri(), job_id="old", replicas=3)
    execute_job(job, files, log=lambda line: None)
    manifest = json.loads((sink / "_manifest.json").read_text())
    del manifest["output"]["files"], manifest["bad_rows"]["files"]
    for shard in manifest["shards"]:
        shard["parts"] = [f"part-{shard['shard']:05d}.try1.csv"]
    (sink / "_manifest.json").write_text(json.dumps(manifest))
    job, files = build(model, (tmp_path / "in.csv").as_uri(), sink.as_uri(), job_id="new", replicas=1)
    execute_job(job, files, log=lambda line: None)
    assert sorted(os.listdir(sink)) == ["_SUCCESS", "_manifest.json", "part-00000.csv"]


# --- item 17: the manifest lists the published files -------------------------------------------------------------


def test_manifest_lists_published_files_with_sizes_and_rows(model, tmp_path: Path):
    frame = make_frame(ROWS)
    write_frame(frame, tmp_path / "in.csv", "csv")
    sink = tmp_path / "out"
    job, files = build(model, (tmp_path / "in.csv").as_uri(), sink.as_uri(), attempt="try4", replicas=3)
    execute_job(job, files, log=lambda line: None)
    manifest = json.loads((sink / "_manifest.json").read_text())
    listed = manifest["output"]["files"]
    assert [f["name"] for f in listed] == ["part-00000.csv", "part-00001.csv", "part-00002.csv"]
    for entry in listed:
        part = sink / entry["name"]
        assert entry["uri"] == part.as_uri()
        assert entry["size"] == part.stat().st_size
        assert entry["rows"] == len(part.read_text().splitlines())
    assert sum(f["rows"] for f in listed) == ROWS
    assert [s["parts"] for s in manifest["shards"]] == [["part-00000.csv"], ["part-00001.csv"], ["part-00002.csv"]]
    assert "try4" not in json.dumps(manifest["shards"]) and manifest["bad_rows"]["files"] == []


# --- item 8: a publish stopped part-way is finished by the retry ---------------------------------------------------


def test_a_publish_stopped_part_way_is_finished_by_the_retry(model, tmp_path: Path, failing_moves):
    frame = make_frame(ROWS)
    write_frame(frame, tmp_path / "in.csv", "csv")
    sink = tmp_path / "out"
    job, files = build(model, (tmp_path / "in.csv").as_uri(), sink.as_uri(), job_id="previous", replicas=2)
    execute_job(job, files, log=lambda line: None)  # a previous output, replaced below

    failing_moves(LocalFileSystem, 2)  # the first part moves in, the second fails
    job, files = build(model, (tmp_path / "in.csv").as_uri(), sink.as_uri(), job_id="run-8", replicas=3)
    with pytest.raises(file_publish.PublishError) as raised:
        execute_job(job, files, log=lambda line: None, keep_on_failure=False)
    message = str(raised.value)
    assert "stopped after 5 of 9 step(s) (OSError: the store went away (injected))" in message
    assert "has no _SUCCESS" in message and "--job-id run-8" in message and "Traceback" not in message
    assert sorted(os.listdir(sink)) == ["_temporary", "part-00000.csv"]  # previous output gone, new one half in
    assert (sink / "_temporary" / "run-8" / "_publish.json").exists()  # kept even on the last try

    lines: list[str] = []
    retry, files = build(model, (tmp_path / "in.csv").as_uri(), sink.as_uri(), job_id="run-8", attempt="try2",
                         replicas=3)
    summary = execute_job(retry, files, log=lines.append)
    assert any("Finishing the publish that attempt 'try1' of this run started" in line for line in lines), lines
    assert not any(line.startswith("[replica") for line in lines)  # nothing scored again
    assert sorted(os.listdir(sink)) == [
        "_SUCCESS", "_manifest.json", "part-00000.csv", "part-00001.csv", "part-00002.csv"]
    check_exactly_once(frame, read_output(sink, "csv", ["id", "prediction"]))
    assert summary["rows_out"] == ROWS and summary["parts"] == 3
    manifest = json.loads((sink / "_manifest.json").read_text())
    assert manifest["job_id"] == "run-8" and sum(f["rows"] for f in manifest["output"]["files"]) == ROWS


def test_a_publish_stopped_part_way_on_s3_is_finished_by_the_retry(model, seaweedfs, s3_bucket, tmp_path: Path,
                                                                   failing_moves):
    import s3fs

    options = {"key": S3_KEY, "secret": S3_SECRET, "endpoint_url": seaweedfs.endpoint}
    storage = {"source": {}, "sink": options}
    sink = f"s3://{s3_bucket}/publish-{uuid.uuid4().hex[:8]}/out"
    frame = make_frame(ROWS, seed=3)
    write_frame(frame, tmp_path / "in.csv", "csv")
    job, files = build(model, (tmp_path / "in.csv").as_uri(), sink, job_id="previous", replicas=3,
                       storage_options=storage)
    execute_job(job, files, log=lambda line: None, storage_options=storage)

    failing_moves(s3fs.S3FileSystem, 3, "_cp_file")
    job, files = build(model, (tmp_path / "in.csv").as_uri(), sink, job_id="run-s3", replicas=3,
                       storage_options=storage)
    with pytest.raises(file_publish.PublishError, match=r"stopped after \d+ of 10 step\(s\) \(OSError: the store"):
        execute_job(job, files, log=lambda line: None, storage_options=storage)
    fs = fsspec.filesystem("s3", skip_instance_cache=True, **options)
    path = sink.removeprefix("s3://")
    assert not fs.exists(f"{path}/_SUCCESS") and not fs.exists(f"{path}/_manifest.json")

    retry, files = build(model, (tmp_path / "in.csv").as_uri(), sink, job_id="run-s3", attempt="try2", replicas=3,
                         storage_options=storage)
    execute_job(retry, files, log=lambda line: None, storage_options=storage)
    fs.invalidate_cache()
    names = sorted(p.rsplit("/", 1)[-1] for p in fs.find(path))
    assert names == ["_SUCCESS", "_manifest.json", "part-00000.csv", "part-00001.csv", "part-00002.csv"]
    import io

    import pandas as pd

    output = pd.concat([pd.read_csv(io.BytesIO(fs.cat_file(f"{path}/part-{n:05d}.csv")), names=["id", "prediction"])
                        for n in range(3)])
    import pyarrow as pa

    check_exactly_once(frame, pa.Table.from_pandas(output, preserve_index=False))


def test_cli_job_id_finishes_a_stopped_publish(model, tmp_path: Path, failing_moves, capsys):
    from airflow_batch_scoring.cli import main

    frame = make_frame(ROWS, seed=4)
    write_frame(frame, tmp_path / "in.csv", "csv_header")
    sink = tmp_path / "out"
    argv = ["score", "--model", str(Path(model.path)), "--source", (tmp_path / "in.csv").as_uri(), "--header",
            "--sink", sink.as_uri(), "--replicas", "2", "--passthrough", "id", "--job-id", "nightly"]
    failing_moves(LocalFileSystem, 1)
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "error: Publishing to" in err and "--job-id nightly" in err and "Traceback" not in err
    assert main(argv) == 0
    assert "Finishing the publish" in capsys.readouterr().err
    # (the input has a header line, so the output has one: sink header "auto")
    check_exactly_once(frame, read_output(sink, "csv", ["id", "prediction"], header=True))


# --- item 13: allowed sink prefixes --------------------------------------------------------------------------------


def test_allowed_sink_prefixes_are_compared_after_normalising():
    allowed = ["s3://scores/team-a/", "file:///data/scores"]
    check_allowed(normalize_location("s3://scores/team-a/2026/"), allowed)
    check_allowed("file:///data/scores/day=1/", allowed)
    for outside in ("s3://scores/team-b/", "s3://scores/team-a-old/", "s3://scores/team-a/../team-b/",
                    "file:///data/scores/%2e%2e/secrets/", "file:///data/", "gs://scores/team-a/"):
        with pytest.raises(ConfigurationError, match="outside the locations this task may write to"):
            check_allowed(normalize_location(outside), allowed)


def test_operator_checks_its_allowed_prefixes_at_parse_time():
    from airflow_batch_scoring.operators import BatchScoringOperator

    with pytest.raises(ConfigurationError, match="not a URI or an absolute path"):
        BatchScoringOperator(task_id="bad", model="m", source="s", sink="x", allowed_sink_prefixes=["scores/"])
    with pytest.raises(ConfigurationError, match="give plain folder URIs"):
        BatchScoringOperator(task_id="bad", model="m", source="s", sink="x", allowed_sink_prefixes="s3://b/*/")


def test_another_run_meanwhile_never_mixes_with_a_stopped_publish(model, tmp_path: Path, failing_moves):
    """A stopped publish whose part is in the sink makes another run refuse (naming it); a stopped publish that moved
    nothing yet is dropped, not finished, once another run has published there."""
    frame = make_frame(ROWS, seed=7)
    write_frame(frame, tmp_path / "in.csv", "csv")
    sink = tmp_path / "out"
    source = (tmp_path / "in.csv").as_uri()
    execute_job(*build(model, source, sink.as_uri(), job_id="first", replicas=2), log=lambda line: None)

    calls = failing_moves(LocalFileSystem, 2)
    with pytest.raises(file_publish.PublishError):
        execute_job(*build(model, source, sink.as_uri(), job_id="x"), log=lambda line: None)
    with pytest.raises(ConfigurationError, match=r"output of run\(s\) x, whose publish stopped part-way: retry"):
        execute_job(*build(model, source, sink.as_uri(), job_id="y"), log=lambda line: None)
    execute_job(*build(model, source, sink.as_uri(), job_id="x", attempt="try2"), log=lambda line: None)  # finish

    calls[0] = -10**6  # no more faults
    failing_moves(LocalFileSystem, 1)
    with pytest.raises(file_publish.PublishError):  # removes x's output, moves nothing
        execute_job(*build(model, source, sink.as_uri(), job_id="z", replicas=2), log=lambda line: None)
    execute_job(*build(model, source, sink.as_uri(), job_id="w", replicas=1), log=lambda line: None)
    with pytest.raises(ConfigurationError, match=r"Run 'w' published to .* was dropped"):
        execute_job(*build(model, source, sink.as_uri(), job_id="z", attempt="try2", replicas=2),
                    log=lambda line: None)
    assert sorted(os.listdir(sink)) == ["_SUCCESS", "_manifest.json", "part-00000.csv"]
    assert json.loads((sink / "_manifest.json").read_text())["job_id"] == "w"
    check_exactly_once(frame, read_output(sink, "csv", ["id", "prediction"]))
