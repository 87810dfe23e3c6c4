"""The benchmark harness's before/after logic (``benchmarks/harness``): no timing is measured here.

- a change is flagged only beyond the noise the same code showed in the run, never with one run a side;
- rounds re-measure a configuration with too few clean runs, and the comparison's order keeps both sides together.

The second checkout of ``--compare-with`` is tested in ``tests/integration/test_benchmark_checkout.py``.
"""

from __future__ import annotations

import pytest
from harness import noise
from harness.compare import comparison_markdown, spread, summarize_comparison, verdict
from harness.rounds import run_rounds


def run(wall: float, others: float = 0.0, rss: int = 300 << 20) -> dict:
    return {"wall_s": wall, "foreign_cores": others, "replica_peak_rss": [rss], "cpu_s": wall * 1.5}


def test_a_change_is_flagged_only_beyond_the_measured_noise():
    before = spread([3.0, 3.1, 3.2])  # spread 6.5 %
    assert verdict(before, spread([3.15, 3.2, 3.25]), runs=3)["verdict"] == "within noise"  # +3 %
    slower = verdict(before, spread([3.5, 3.55, 3.6]), runs=3)  # +15 %, spread of after 2.8 %
    assert slower["verdict"] == "REGRESSION"
    assert slower["ratio"] == pytest.approx(3.55 / 3.1)
    assert slower["noise"] == pytest.approx(0.2 / 3.1)
    assert verdict(before, spread([2.5, 2.6, 2.7]), runs=3)["verdict"] == "better"
    # a noisy side widens the band: the same +15 % is within a 30 % spread
    assert verdict(spread([2.8, 3.1, 3.73]), spread([3.5, 3.55, 3.6]), runs=3)["verdict"] == "within noise"
    # one run a side measures no noise: no verdict, whatever the change
    assert verdict(spread([3.0]), spread([6.0]), runs=1)["verdict"].startswith("no verdict")


def test_the_comparison_summary_and_table_name_both_revisions_and_the_regressions():
    raw = {
        "engine_lr_r1@before": [run(3.0), run(3.1), run(9.0, others=1.5)],  # the disturbed run is left out
        "engine_lr_r1@after": [run(3.05), run(3.1), run(3.12)],
        "engine_hgb_r1@before": [run(8.0), run(8.1)],
        "engine_hgb_r1@after": [run(9.0, rss=400 << 20), run(9.1, rss=400 << 20)],
    }
    figures = summarize_comparison(raw, ("before", "after"), rounds=2)
    assert figures["engine_lr_r1"]["wall_s"]["before"]["max"] == 3.1
    assert figures["engine_lr_r1"]["wall_s"]["verdict"] == "within noise"
    assert figures["regressions"] == ["engine_hgb_r1 wall_s", "engine_hgb_r1 peak_rss_per_replica"]
    results = {
        "figures": figures,
        "sides": [{"label": "before", "revision": "dbc6b00"}, {"label": "after", "revision": "abc1234"}],
        "config": {"rows": 2_000_000, "rounds": 2},
        "output_checks": {"engine_lr_r1": {"same_ids_in_order": True, "prediction_mismatches": 0}},
    }
    table = comparison_markdown(results)
    assert "before (`dbc6b00`)" in table and "after (`abc1234`)" in table
    assert "| engine_hgb_r1 | 8.00 / **8.05** / 8.10 | 9.00 / **9.05** / 9.10 | 1.124 |" in table
    assert "Regressions beyond noise: engine_hgb_r1 wall_s, engine_hgb_r1 peak_rss_per_replica." in table


def test_rounds_remeasure_disturbed_configurations_and_keep_pairs_together(monkeypatch):
    monkeypatch.setitem(noise.NOISE, "max_wait_s", 0.0)
    noise.set_patience(10)
    walls = {"a@before": iter([run(1, others=1.0), run(1)]), "a@after": iter([run(1), run(1)])}
    configs = [(name, lambda name=name: dict(next(walls[name]))) for name in walls]
    seen: list[list[str]] = []

    def order(round_index, todo):  # as run_comparison does: the partner of a re-measured side comes along
        names = [name for name, _ in todo]
        seen.append(names)
        return [c for c in configs if c[0].split("@")[0] in {n.split("@")[0] for n in names}]

    raw = run_rounds(configs, rounds=1, max_rounds=3, log=lambda text: None, order=order)
    assert seen == [["a@before", "a@after"], ["a@before"]]  # round 2: only the disturbed side was due...
    assert [len(raw[name]) for name in walls] == [2, 2]  # ...and both sides ran again
    assert [r["round"] for r in raw["a@after"]] == [0, 1]
