"""Many store operations at once (airflow_batch_scoring/io/store_ops.py) on fsspec's in-memory store and the disk."""

from __future__ import annotations

import threading
import uuid
from pathlib import Path

import fsspec
import pytest

from airflow_batch_scoring.io import store_ops
from airflow_batch_scoring.io.store_ops import (
    StepsFailed,
    for_each,
    list_files,
    map_files,
    move_files,
    read_files,
    remove_files,
)


@pytest.fixture
def memory():
    fs = fsspec.filesystem("memory")
    root = f"/store-ops-{uuid.uuid4().hex[:8]}"
    yield fs, root
    if fs.exists(root):
        fs.rm(root, recursive=True)


def test_list_files_lists_every_file_below_a_folder_with_its_size(memory):
    fs, root = memory
    fs.pipe({f"{root}/a.json": b"{}", f"{root}/_errors/part-0.jsonl": b"12345", f"{root}/deep/er/x": b""})
    assert list_files(fs, root) == {f"{root}/a.json": 2, f"{root}/_errors/part-0.jsonl": 5, f"{root}/deep/er/x": 0}
    assert list_files(fs, f"{root}/missing") == {}


def test_read_files_reads_many_and_leaves_out_what_is_gone(memory):
    fs, root = memory
    fs.pipe({f"{root}/{n}.json": str(n).encode() for n in range(40)})
    paths = [f"{root}/{n}.json" for n in range(40)] + [f"{root}/gone.json"]
    assert read_files(fs, paths) == {f"{root}/{n}.json": str(n).encode() for n in range(40)}
    assert read_files(fs, []) == {}


def test_move_files_and_remove_files_on_a_store_and_on_the_disk(memory, tmp_path: Path):
    fs, root = memory
    fs.pipe({f"{root}/_temporary/run/part-{n:05d}.try1.csv": f"{n}\n".encode() for n in range(30)})
    moves = [(f"{root}/_temporary/run/part-{n:05d}.try1.csv", f"{root}/part-{n:05d}.csv") for n in range(30)]
    assert move_files(fs, moves) == 30
    assert list_files(fs, root) == {f"{root}/part-{n:05d}.csv": len(f"{n}\n") for n in range(30)}
    assert remove_files(fs, [f"{root}/part-{n:05d}.csv" for n in range(10)]) == 10
    assert sorted(list_files(fs, root)) == [f"{root}/part-{n:05d}.csv" for n in range(10, 30)]

    local = fsspec.filesystem("file")
    source, target = tmp_path / "staged" / "e.jsonl", tmp_path / "out" / "_errors" / "e.jsonl"
    source.parent.mkdir()
    source.write_text("{}\n")
    assert move_files(local, [(str(source), str(target))]) == 1  # the target's folder is made
    assert target.read_text() == "{}\n" and not source.exists()
    assert remove_files(local, [str(target)]) == 1 and not target.exists()


def test_a_failed_copy_leaves_every_source_in_place(memory):
    """On a store, sources are deleted only once every copy succeeded: moving again finishes the moves."""
    fs, root = memory
    fs.pipe({f"{root}/s/{n}": b"x" for n in range(20)})
    moves = [(f"{root}/s/{n}", f"{root}/t/{n}") for n in range(20)] + [(f"{root}/s/missing", f"{root}/t/missing")]
    with pytest.raises(StepsFailed) as raised:
        move_files(fs, moves)
    assert raised.value.done == 0 and isinstance(raised.value.error, FileNotFoundError)
    assert all(fs.exists(f"{root}/s/{n}") for n in range(20))
    assert move_files(fs, moves[:-1]) == 20 and not fs.exists(f"{root}/s/0") and fs.exists(f"{root}/t/19")


def test_for_each_on_a_store_runs_steps_side_by_side(memory):
    fs, _ = memory
    running, most = [0], [0]
    lock, gate = threading.Lock(), threading.Barrier(store_ops.STORE_CONCURRENCY, timeout=10)

    def step(item: int) -> None:
        with lock:
            running[0] += 1
            most[0] = max(most[0], running[0])
        if item < store_ops.STORE_CONCURRENCY:
            gate.wait()  # the first STORE_CONCURRENCY steps can only pass together
        with lock:
            running[0] -= 1

    assert for_each(fs, range(100), step) == 100
    assert most[0] == store_ops.STORE_CONCURRENCY


def test_for_each_stops_starting_steps_after_a_failure_and_counts_the_others(memory):
    fs, _ = memory
    started: list[int] = []
    lock = threading.Lock()

    def step(item: int) -> None:
        with lock:
            started.append(item)
        if item == 5:
            raise OSError("the store went away")

    with pytest.raises(StepsFailed) as raised:
        for_each(fs, range(1000), step)
    assert isinstance(raised.value.error, OSError) and "the store went away" in str(raised.value)
    assert raised.value.done == len(started) - 1  # every step but the failed one completed
    assert len(started) < 1000  # no new step after the failure (the pool's queue drains without running)


def test_for_each_on_the_disk_runs_in_order_and_stops_at_the_failure(tmp_path: Path):
    local = fsspec.filesystem("file")
    seen: list[int] = []

    def step(item: int) -> None:
        if item == 3:
            raise OSError("disk full")
        seen.append(item)

    with pytest.raises(StepsFailed) as raised:
        for_each(local, range(10), step)
    assert seen == [0, 1, 2] and raised.value.done == 3


def test_map_files_keeps_the_order_and_raises_the_first_failure(memory):
    fs, _ = memory
    gate = threading.Barrier(4, timeout=10)

    def read(item: int) -> int:
        if item < 4:
            gate.wait()  # the first four reads can only finish together: they run side by side
        return item * item

    assert map_files(fs, list(range(50)), read) == [n * n for n in range(50)]

    def broken(item: int) -> int:
        if item in (7, 30):
            raise ValueError(f"footer {item}")
        return item

    with pytest.raises(ValueError, match="footer 7"):
        map_files(fs, list(range(50)), broken)
    assert map_files(fsspec.filesystem("file"), [3, 1, 2], lambda n: -n) == [-3, -1, -2]  # on the disk: in order
