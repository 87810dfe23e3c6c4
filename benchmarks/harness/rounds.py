"""Interleaved rounds: every configuration measured once per round, so that a slow phase of the machine hits all of
them alike; after the planned rounds, the configurations with too few clean runs are measured again until the
patience deadline."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from harness.data import Log
from harness.noise import is_clean, past_deadline, wait_quiet

Run = Callable[[], dict[str, Any]]
Config = tuple[str, Run]


def run_rounds(
    configs: Sequence[Config],
    rounds: int,
    max_rounds: int,
    log: Log,
    after_run: Callable[[str, dict[str, Any]], str] | None = None,
    order: Callable[[int, list[Config]], list[Config]] | None = None,
) -> dict[str, list[dict[str, Any]]]:
    """Measure every configuration once per round, interleaved. After ``rounds`` rounds, and until the patience
    deadline (at most ``max_rounds`` rounds), measure again the configurations with fewer than ``rounds`` clean runs.

    :param configs: (name, run) pairs, measured in this order (or as ``order(round_index, todo)`` arranges them).
    :param after_run: called with each run's name and result; returns the text to log about it.
    :return: every run of every configuration, by name, each tagged with its ``round``.
    """
    raw: dict[str, list[dict[str, Any]]] = {name: [] for name, _ in configs}
    for round_index in range(max(rounds, max_rounds)):
        if round_index < rounds:
            todo = list(configs)
        elif past_deadline():
            break
        else:
            todo = [(name, run) for name, run in configs if sum(map(is_clean, raw[name])) < rounds]
            if not todo:
                break
        if order is not None:
            todo = order(round_index, todo)
        log(f"round {round_index + 1}: {', '.join(name for name, _ in todo)}")
        for name, run in todo:
            waited = wait_quiet()
            r = run()
            r.update(round=round_index, waited_for_quiet_s=round(waited, 1))
            raw[name].append(r)
            text = after_run(name, r) if after_run else f"wall {r['wall_s']:.2f}s"
            log(f"  {name}: {text}; others {r['foreign_cores']:.2f} cores{'' if is_clean(r) else ' (disturbed)'}")
    return raw
