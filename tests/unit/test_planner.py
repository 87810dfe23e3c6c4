"""Shard planning: deterministic, balanced, and every byte or row group in exactly one shard."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from fsspec.implementations.local import LocalFileSystem

from airflow_batch_scoring.errors import ConfigurationError, InputError
from airflow_batch_scoring.io.files import InputFile, list_inputs
from airflow_batch_scoring.sources.file_planner import plan_shards
from airflow_batch_scoring.specs import FileSpec


def text_files(sizes):
    return [InputFile(f"file:///d/{i}.csv", size) for i, size in enumerate(sizes)]


def test_text_shards_tile_the_bytes_evenly():
    spec = FileSpec(uri="file:///d/", format="csv")
    files = text_files([1000, 10, 0, 5000])
    plan = plan_shards(spec, files, 3, LocalFileSystem())
    assert plan == plan_shards(spec, files, 3, LocalFileSystem())  # deterministic
    loads = [sum(p.end - p.start for p in shard) for shard in plan]
    assert sum(loads) == 6010 and max(loads) - min(loads) <= 1
    for file in files:
        ranges = sorted((p.start, p.end) for shard in plan for p in shard if p.path == file.uri)
        covered = 0
        for start, end in ranges:
            assert start == covered
            covered = end
        assert covered == file.size


def test_unsplittable_csv_gets_whole_files_balanced():
    spec = FileSpec(uri="file:///d/", format="csv", newlines_in_values=True)
    plan = plan_shards(spec, text_files([50, 40, 30, 20, 10]), 2, LocalFileSystem())
    assert all(p.start == 0 and p.end in (50, 40, 30, 20, 10) for shard in plan for p in shard)
    assert sorted(sum(p.end for p in shard) for shard in plan) == [70, 80]


def test_parquet_shards_by_row_groups(tmp_path):
    for name, rows in (("a", 400), ("b", 100)):
        pq.write_table(pa.table({"x": list(range(rows))}), tmp_path / f"{name}.parquet", row_group_size=100)
    files = list_inputs(tmp_path.as_uri())
    plan = plan_shards(FileSpec(uri=tmp_path.as_uri(), format="parquet"), files, 2, LocalFileSystem())
    groups = sorted((p.path.rsplit("/", 1)[1], g) for shard in plan for p in shard for g in p.row_groups)
    assert groups == [("a.parquet", g) for g in range(4)] + [("b.parquet", 0)]
    assert sorted(sum(p.rows for p in shard) for shard in plan) == [200, 300]


def test_empty_inputs_and_archives_are_refused():
    spec = FileSpec(uri="file:///d/", format="csv")
    with pytest.raises(InputError, match="the input is empty"):
        plan_shards(spec, text_files([0, 0]), 2, LocalFileSystem())
    with pytest.raises(ConfigurationError, match=r"This compression is not supported \(file:///d/a.csv.zip\)"):
        plan_shards(spec, [InputFile("file:///d/a.csv.zip", 10)], 1, LocalFileSystem())


def test_compressed_files_are_whole_pieces_balanced_by_size():
    spec = FileSpec(uri="file:///d/", format="csv")
    files = [InputFile("file:///d/a.csv.gz", 900), InputFile("file:///d/b.csv", 1000),
             InputFile("file:///d/c.csv.bz2", 500), InputFile("file:///d/d.csv.xz", 400)]
    shards = plan_shards(spec, files, 2, LocalFileSystem(), part_size=100)
    compressed = [(p.path, p.start, p.end) for shard in shards for p in shard if not p.path.endswith(".csv")]
    assert sorted(compressed) == [("file:///d/a.csv.gz", 0, -1), ("file:///d/c.csv.bz2", 0, -1),
                                  ("file:///d/d.csv.xz", 0, -1)]
    plain = sorted((p.start, p.end) for shard in shards for p in shard if p.path.endswith(".csv"))
    assert plain == [(0, 500), (500, 1000)]  # the uncompressed file is still cut between the replicas
    size = {f.uri: f.size for f in files}
    loads = [sum(p.end - p.start if p.end >= 0 else size[p.path] for p in shard) for shard in shards]
    assert sum(loads) == 2800 and max(loads) - min(loads) <= 900  # balanced by (compressed) size


def test_listing_skips_markers_and_sorts(tmp_path):
    for name in ("b.csv", "a.csv", "_SUCCESS", ".hidden", "sub/c.csv", "_tmp/d.csv"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("1\n")
    names = [f.uri.rsplit(str(tmp_path), 1)[1] for f in list_inputs(tmp_path.as_uri())]
    assert names == ["/a.csv", "/b.csv", "/sub/c.csv"]


def test_small_input_is_still_shared_by_every_replica():
    spec = FileSpec(uri="file:///d/", format="csv")
    plan = plan_shards(spec, text_files([8_000_000]), 2, LocalFileSystem(), part_size=16 * 1024 * 1024)
    assert [sum(p.end - p.start for p in shard) for shard in plan] == [4_000_000, 4_000_000]
    big = plan_shards(spec, text_files([100 * 2**20]), 3, LocalFileSystem(), part_size=16 * 2**20)
    assert all(p.start % (16 * 2**20) == 0 for shard in big for p in shard)  # large inputs cut on part_size
