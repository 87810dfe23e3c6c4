"""Noise control on a shared machine: wait for a quiet moment before each measurement and redo a measurement that
other processes disturbed, until a deadline (set by the script from its ``--patience``); after it, measure as things
are. A run is *clean* when other processes used at most ``NOISE['max_foreign_cores']`` cores on average during it."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from harness.data import Log
from harness.measure import busy_cpu_s

NOISE = {"deadline": 0.0, "max_wait_s": 15.0, "quiet_cores": 0.2, "max_foreign_cores": 0.3, "attempts": 2}


def set_patience(minutes: float) -> None:
    """Re-measure disturbed runs for ``minutes`` from now, at most."""
    NOISE["deadline"] = time.monotonic() + minutes * 60


def past_deadline() -> bool:
    return time.monotonic() > NOISE["deadline"]


def wait_quiet() -> float:
    """Wait (at most NOISE['max_wait_s'], never past the deadline) for a second in which other processes use less
    than NOISE['quiet_cores'] cores; return the time waited."""
    started = time.perf_counter()
    limit = min(NOISE["max_wait_s"], max(0.0, NOISE["deadline"] - time.monotonic()))
    while time.perf_counter() - started < limit:
        before = busy_cpu_s()
        time.sleep(1.0)
        if busy_cpu_s() - before < NOISE["quiet_cores"]:
            break
    return time.perf_counter() - started


def is_clean(run: dict[str, Any]) -> bool:
    return run["foreign_cores"] <= NOISE["max_foreign_cores"]


def least_disturbed(runs: list[dict[str, Any]], count: int) -> list[dict[str, Any]]:
    """The ``count`` runs during which other processes used the least CPU."""
    return sorted(runs, key=lambda r: r["foreign_cores"])[:count]


def measured(run: Callable[[], dict[str, Any]], label: str, log: Log) -> dict[str, Any]:
    """Run one measurement after a quiet moment; redo it (up to NOISE['attempts'] times, before the deadline) when
    other processes took more than NOISE['max_foreign_cores'] cores on average meanwhile; keep the cleanest."""
    tries = []
    for attempt in range(int(NOISE["attempts"])):
        waited = wait_quiet()
        result = run()
        result["waited_for_quiet_s"] = round(waited, 1)
        tries.append(result)
        if is_clean(result) or past_deadline() or attempt == NOISE["attempts"] - 1:
            break
        log(f"    {label}: other processes used {result['foreign_cores']:.2f} cores meanwhile; measuring again")
    best = min(tries, key=lambda r: r["foreign_cores"])
    best["attempts"] = len(tries)
    return best
