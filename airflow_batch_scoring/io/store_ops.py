"""Many small store operations at once: one listing instead of one existence check per file, reads and moves run
concurrently on an object store.

A run of 1,000 replicas stages 1,000 parts and 1,000 reports; reading the reports and publishing the parts one request
after another costs a round trip each (and fsspec's generic ``exists``/``mv`` several). These helpers keep the number
of requests near one per file and run them side by side (:data:`STORE_CONCURRENCY` at a time); on the local disk
they run in order (a rename is a system call, and order keeps a failure's effect easy to tell).

Shared with the runtime: never imports Airflow.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from airflow_batch_scoring.io.files import is_local

#: object-store requests (reads, copies, deletes) a driver runs at once.
STORE_CONCURRENCY = 16

_Item = TypeVar("_Item")
_Result = TypeVar("_Result")


def list_files(fs: Any, folder: str) -> dict[str, int]:
    """Every file under ``folder`` (recursively), as ``{path: size}``, in one listing (paged by the store); ``{}``
    when the folder does not exist. Paths are as ``fs`` spells them (``bucket/key`` for a store)."""
    fs.invalidate_cache(folder)
    try:
        found = fs.find(folder, detail=True)
    except FileNotFoundError:
        return {}
    return {path.rstrip("/"): int(info.get("size") or 0) for path, info in found.items()
            if info.get("type") != "directory"}


def read_files(fs: Any, paths: Sequence[str]) -> dict[str, bytes]:
    """The contents of ``paths`` (read concurrently on a store); a path that is gone is left out."""
    if not paths:
        return {}
    found = fs.cat(list(paths), on_error="omit")
    return {path.rstrip("/"): data for path, data in found.items()} if isinstance(found, dict) else {}


def map_files(fs: Any, items: Sequence[_Item], read: Callable[[_Item], _Result]) -> list[_Result]:
    """``[read(item) for item in items]``, in that order: :data:`STORE_CONCURRENCY` at a time on a store (e.g. the
    footers of 10,000 Parquet files), in order on the local disk. The first failure (in item order) is raised."""
    if is_local(fs) or len(items) < 2:
        return [read(item) for item in items]
    with ThreadPoolExecutor(min(STORE_CONCURRENCY, len(items)), thread_name_prefix="store-op") as pool:
        return list(pool.map(read, items))


def move_files(fs: Any, moves: Sequence[tuple[str, str]]) -> int:
    """Move files (``(source, target)`` pairs): renamed one by one on the local disk; on a store, each copied
    server-side (:data:`STORE_CONCURRENCY` at a time), then the sources deleted in bulk requests (S3 deletes 1,000
    keys a request). A move cut short leaves its source in place: moving again finishes it.

    :returns: the number of moves completed.
    :raises StepsFailed: wrapping the first failure, with the number of moves completed (copied and deleted).
    """
    if is_local(fs):

        def rename(pair: tuple[str, str]) -> None:
            fs.makedirs(pair[1].rsplit("/", 1)[0], exist_ok=True)
            fs.mv(*pair)

        return for_each(fs, moves, rename)
    try:
        for_each(fs, moves, lambda pair: fs.cp_file(*pair))
    except StepsFailed as failed:
        raise StepsFailed(0, failed.error) from failed.error  # copied, not moved: their sources are still there
    remove_files(fs, [source for source, _ in moves])
    return len(moves)


def remove_files(fs: Any, paths: Sequence[str]) -> int:
    """Delete files: one by one on the local disk, in bulk requests on a store.

    :returns: the number of files deleted.
    :raises StepsFailed: wrapping the first failure, with the number of files known to be deleted.
    """
    if is_local(fs):
        return for_each(fs, paths, fs.rm_file)
    if not paths:
        return 0
    try:
        fs.rm(list(paths))
    except Exception as err:
        raise StepsFailed(0, err) from err
    return len(paths)


def for_each(fs: Any, items: Iterable[_Item], step: Callable[[_Item], None]) -> int:
    """Run ``step`` on every item: in order on the local disk, :data:`STORE_CONCURRENCY` at a time on a store.

    After the first failure no new step starts; the steps already running finish, and the failure is raised.

    :returns: the number of steps that completed.
    :raises StepsFailed: wrapping the first failure, with the number of steps that completed.
    """
    items = list(items)
    done = 0
    if is_local(fs) or len(items) < 2:
        for item in items:
            try:
                step(item)
            except Exception as err:
                raise StepsFailed(done, err) from err
            done += 1
        return done
    lock = threading.Lock()
    failures: list[Exception] = []

    def run(item: _Item) -> None:
        nonlocal done
        if failures:
            return
        try:
            step(item)
        except Exception as err:
            with lock:
                failures.append(err)
            return
        with lock:
            done += 1

    with ThreadPoolExecutor(min(STORE_CONCURRENCY, len(items)), thread_name_prefix="store-op") as pool:
        for _ in pool.map(run, items):
            pass
    if failures:
        raise StepsFailed(done, failures[0]) from failures[0]
    return done


class StepsFailed(Exception):
    """A step of :func:`for_each` failed.

    :ivar done: the steps that completed (before and beside the failed one).
    :ivar error: the first failure.
    """

    def __init__(self, done: int, error: Exception):
        super().__init__(f"{type(error).__name__}: {error}")
        self.done, self.error = done, error
