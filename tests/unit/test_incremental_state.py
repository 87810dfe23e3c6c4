"""Incremental scoring without a server: the state's name, its two-phase record, new files against a watermark, and
the Delta log read for appends only (a log written here by hand)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from airflow_batch_scoring.errors import ConfigurationError, InputError
from airflow_batch_scoring.io.files import InputFile
from airflow_batch_scoring.io.watermarks import WatermarkStore, state_name
from airflow_batch_scoring.options import ScoringOptions
from airflow_batch_scoring.sources.incremental import delta_new, new_files

pytestmark = pytest.mark.unit


def test_state_name_is_safe_and_one_per_sink():
    name = state_name("my dag.score/x.3", "delta:s3://lake/scores")
    assert name.startswith("my_dag.score_x.3-") and len(name.rsplit("-", 1)[1]) == 12
    assert name == state_name("my dag.score/x.3", "delta:s3://lake/scores")
    assert name != state_name("my dag.score/x.3", "delta:s3://lake/other")


def test_two_phase_promote_drop_and_retry(tmp_path: Path):
    store = WatermarkStore(tmp_path.as_uri() + "/state/", "k-0", None)
    lines: list[str] = []
    assert store.resolve("job-1", lambda p: True, lines.append).since is None  # nothing yet
    store.write_pending("k", "file:///out", {"job_id": "job-1", "since": None, "watermark": {"version": 1}})
    assert store.promote_if("job-2") is None  # another job's pending is not promoted
    assert store.promote_if("job-1")["watermark"] == {"version": 1}
    document = json.loads((tmp_path / "state" / "k-0.json").read_text())
    assert document["committed"]["watermark"] == {"version": 1} and "pending" not in document
    assert [p.name for p in (tmp_path / "state").iterdir()] == ["k-0.json"]  # no temporary file left

    # a pending whose run published (the promote was lost): promoted by the next run
    store.write_pending("k", "file:///out", {"job_id": "job-2", "since": {"version": 1}, "watermark": {"version": 3}})
    resolved = store.resolve("job-3", lambda p: p["job_id"] == "job-2", lines.append)
    assert resolved.since == {"version": 3} and resolved.retry_of is None
    # a pending whose run never published: dropped with a warning, the committed watermark stays
    store.write_pending("k", "file:///out", {"job_id": "job-3", "since": {"version": 3}, "watermark": {"version": 5}})
    assert store.resolve("job-4", lambda p: False, lines.append).since == {"version": 3}
    assert any("WARNING" in line and "job-3" in line for line in lines)
    assert "pending" not in store.read()
    # a retry of the run that wrote the pending (not published yet): it starts from the same watermark again
    store.write_pending("k", "file:///out", {"job_id": "job-4", "since": {"version": 3}, "watermark": {"version": 6}})
    again = store.resolve("job-4", lambda p: False, lines.append)
    assert again.retry_of is not None and again.retry_of["since"] == {"version": 3}

    (tmp_path / "state" / "k-0.json").write_text("not json")
    with pytest.raises(InputError, match="not a state document"):
        store.read()


def test_new_files_against_the_watermark():
    a, b = InputFile("file:///in/a.csv", 10, "1"), InputFile("file:///in/b.csv", 20, "2")
    first = new_files([a], None, "file:///in/")
    assert first.files == [a] and first.counts == {"new_files": 1}
    second = new_files([a, b], first.watermark, "file:///in/")
    assert second.files == [b] and [f["uri"] for f in second.watermark["files"]] == [a.uri, b.uri]
    assert new_files([a, b], second.watermark, "file:///in/").files == []
    with pytest.raises(InputError, match=r"a\.csv.*new name"):
        new_files([InputFile(a.uri, 11, "3"), b], second.watermark, "file:///in/")


def _commit(log: Path, version: int, operation: str, *actions: dict) -> None:
    log.mkdir(parents=True, exist_ok=True)
    lines = [{"commitInfo": {"operation": operation}}, *actions]
    (log / f"{version:020d}.json").write_text("\n".join(json.dumps(a) for a in lines) + "\n")


def test_delta_log_appends_only(tmp_path: Path):
    root, log = tmp_path.as_uri(), tmp_path / "_delta_log"
    _commit(log, 1, "WRITE", {"add": {"path": "a%3D1/p1.parquet", "size": 5, "dataChange": True}})
    _commit(log, 2, "OPTIMIZE", {"remove": {"path": "a%3D1/p1.parquet", "dataChange": False}},
            {"add": {"path": "c.parquet", "size": 9, "dataChange": False}})
    p1 = InputFile(f"{root}/a=1/p1.parquet", 5)
    live = [InputFile(f"{root}/c.parquet", 9)]
    new = delta_new(root, {"version": 0}, 2, live, {f.uri for f in live}, False, None)
    assert [f.uri for f in new.files] == [p1.uri] and new.watermark == {"version": 2}  # compacted later: still read
    assert new.counts == {"new_files": 1, "new_versions": 2}
    with pytest.raises(InputError, match="compacted away"):
        delta_new(root, {"version": 0}, 2, live, {f.uri for f in live}, True, None)
    assert delta_new(root, {"version": 1}, 2, live, {f.uri for f in live}, False, None).files == []
    _commit(log, 3, "DELETE", {"remove": {"path": "c.parquet", "dataChange": True}})
    with pytest.raises(InputError, match=r"version 3 .*\(DELETE\).*appended rows only"):
        delta_new(root, {"version": 2}, 3, [], set(), False, None)
    with pytest.raises(InputError, match="version 4 .*gone"):
        delta_new(root, {"version": 3}, 4, [], set(), False, None)
    with pytest.raises(InputError, match="re-created"):
        delta_new(root, {"version": 9}, 4, [], set(), False, None)


def test_options_need_a_key():
    with pytest.raises(ConfigurationError, match="--incremental-key"):
        ScoringOptions.parse(incremental="true")
    parsed = ScoringOptions.parse(incremental="True", incremental_key="d.t.-1", incremental_state="s3://b/state/")
    assert parsed.incremental and parsed.incremental_key == "d.t.-1"
    assert ScoringOptions.parse(incremental_key="ignored").incremental_key is None


def test_a_sql_source_is_not_incremental():
    from airflow_batch_scoring.sources import open_source
    from airflow_batch_scoring.specs import parse_data_spec

    source = open_source(parse_data_spec({"uri": "sqlite:////tmp/x.db", "table": "events"}, "source"), None)
    with pytest.raises(ConfigurationError, match="incremental scoring reads files, Delta tables or Iceberg"):
        source.restrict_to_new(None)


def test_planned_watermarks_stay_out_of_the_job(tmp_path: Path):
    store = WatermarkStore(tmp_path.as_uri(), "k-0", None)
    store.write_planned("job-1", {"since": None, "watermark": {"files": [{"uri": "a"}]}})
    store.write_planned("job-2", {"since": None, "watermark": {"version": 2}})  # an earlier run's plan is removed
    assert [p.name for p in (tmp_path / "_planned").iterdir()] == ["k-0.job-2.json"]
    assert store.read_planned("job-2")["watermark"] == {"version": 2}
    store.remove_planned("job-2")
    with pytest.raises(InputError, match="is gone"):
        store.read_planned("job-2")


@pytest.mark.unit
@pytest.mark.parametrize(
    ("state", "where"),
    [("s3://lake/in/", "source"), ("s3://lake/in/state/", "source"), ("s3://lake/in/../in/_state", "source"),
     ("s3://lake/scores/state/", "sink"), (None, None), ("s3://lake/state/", None), ("s3://other/in/state/", None),
     ("s3://lake/", None)],
)
def test_the_state_folder_lies_outside_the_source_and_the_sink(state: str | None, where: str | None):
    """Inside the source, its documents would be read as input; inside the sink, published among the output."""
    from airflow_batch_scoring.driver.incremental import _check_state_apart
    from airflow_batch_scoring.specs import FileSpec

    source, sink = FileSpec(uri="s3://lake/in/"), FileSpec(uri="s3://lake/scores/")
    if where is None:
        _check_state_apart(state or "s3://lake/state/", source, sink)
        return
    with pytest.raises(ConfigurationError, match=f"lies in the {where} .*Keep the state in a folder of its own"):
        _check_state_apart(state, source, sink)
