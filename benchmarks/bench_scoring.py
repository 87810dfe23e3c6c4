"""Benchmark: batch scoring with the engine (``batch-scoring score``) against a naive pandas pipeline and the limits.

    .venv/bin/python benchmarks/bench_scoring.py            # full run: 2M rows, 3 rounds, plus the 10M-row memory run
    .venv/bin/python benchmarks/bench_scoring.py --quick    # smoke run: 200k rows, 1 round, no 10M run
    .venv/bin/python benchmarks/bench_scoring.py --compare-with dbc6b00   # before/after: the engine of both, 2M rows

What runs (``workloads.py``), each measurement in a fresh child process: the naive pipeline, the predict-only and
read+write limits, the engine CLI with 1 and 2 replicas, the engine's stages alone (profile), the floor, the fixed
costs (1,000 rows) and the memory flatness run (10M rows). The machine may be shared: every run records the CPU other
processes used meanwhile; configurations are measured in interleaved rounds and disturbed ones again until the
``--patience`` deadline; figures are medians of the least disturbed runs (``harness/``).

``--compare-with REV_OR_PATH`` measures only the engine CLI (both models, replicas 1 and 2), of this checkout ("after")
and of another revision or checkout ("before"), interleaved in the same rounds, and flags a change beyond the noise.

Results go to ``benchmarks/results/latest.json`` (``quick.json`` with --quick; ``compare.json`` /
``compare_quick.json`` when comparing) and a Markdown table next to it.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
from typing import Any

from harness.checkout import other_checkout, this_checkout
from harness.compare import comparison_markdown, summarize_comparison
from harness.data import BATCH, DATA, MODELS, generate_data, warm_page_cache
from harness.models import model_info, train_models
from harness.noise import NOISE, set_patience
from harness.provenance import code_state, machine_info
from harness.report import markdown, write_results
from harness.summary import floor_figures, summarize
from suite import per_model, run_big, run_comparison, run_diagnostics, run_scoring_rounds


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add = parser.add_argument
    add("--rows", type=int, default=None, help="rows of the main data set (default 2,000,000)")
    add("--quick", action="store_true", help="smoke run: 200k rows, 1 round (compare: 2), no 10M-row run")
    add("--rounds", type=int, default=None, help="rounds of every measurement (default 3, compare 5; quick 1, 2)")
    add("--big-rows", type=int, default=10_000_000, help="rows of the memory-flatness data set")
    add("--skip-big", action="store_true", help="skip the memory-flatness run")
    add("--skip-naive-big", action="store_true", help="skip the naive pipeline on the big data set")
    add("--keep-big", action="store_true", help="keep the big data file afterwards")
    add("--patience", type=float, default=None,
        help="minutes (from the start) during which disturbed configurations are measured again (default 12; quick 3)")
    add("--max-rounds", type=int, default=8, help="rounds at most, re-measuring disturbed configurations (default 8)")
    add("--no-diagnostics", action="store_true", help="skip the start-up cost diagnostics")
    add("--compare-with", metavar="REV_OR_PATH",
        help="before/after: the engine CLI of this checkout and of a git revision (exported read-only into "
        "benchmarks/data/compare/) or another checkout's directory, interleaved in the same rounds")
    return parser.parse_args()  # fmt: skip


def main() -> int:
    args = parse_args()
    rows = args.rows or (200_000 if args.quick else 2_000_000)
    rounds = args.rounds or {(False, False): 3, (True, False): 1, (False, True): 5, (True, True): 2}[
        (args.quick, bool(args.compare_with))
    ]
    clock = time.perf_counter()

    def log(text: str) -> None:
        print(f"[{time.perf_counter() - clock:7.1f}s] {text}", file=sys.stderr, flush=True)

    patience = args.patience if args.patience is not None else (3.0 if args.quick else 12.0)
    set_patience(patience)
    info, code_at_start = machine_info(), code_state()
    log(f"machine: {info}")
    sides = None
    if args.compare_with:
        sides = (other_checkout(args.compare_with, "before"), this_checkout("after"))
        for side in sides:
            side.compile()
            log(f"{side.label}: {side.revision}, package {side.verify()}")
    data = generate_data(rows, log)
    models = train_models(log)
    out = DATA / "out"
    out.mkdir(parents=True, exist_ok=True)
    warm_page_cache(data)  # every measurement reads from memory
    results: dict[str, Any] = {"created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "machine": info}
    config = {"rows": rows, "rounds": rounds, "batch_size": BATCH, "data_file": str(data),
              "data_bytes": data.stat().st_size, "quick": args.quick}  # fmt: skip
    if sides:
        raw, checks = run_comparison(sides, models, data, rounds, args.max_rounds, log)
        results["sides"] = [{"label": s.label, "revision": s.revision, "root": str(s.root)} for s in sides]
        results["figures"] = summarize_comparison(raw, (sides[0].label, sides[1].label), rounds)
        config.update(models=MODELS, model_info=model_info())
        name, render = ("compare_quick" if args.quick else "compare"), comparison_markdown
    else:
        raw, checks = run_scoring_rounds(models, data, out, rounds, args.max_rounds, log)
        log(f"output checks: {checks}")
        profiles = per_model("profile", models, data, out, log)
        for key, profile in profiles.items():
            log(f"profile {key}: {profile}")
        floors = per_model("floor", models, data, out, log)
        for key, floor in floors.items():
            log(f"floor {key}: {floor_figures(floor, os.cpu_count() or 1)}")
        diagnostics = {} if args.no_diagnostics else run_diagnostics(models, data, out, log)
        skip_big = args.skip_big or args.quick
        if not skip_big:
            raw["big"] = run_big(models["lr"], args.big_rows, not args.skip_naive_big, args.keep_big, out, log)
        config.update(big_rows=None if skip_big else args.big_rows, models=MODELS, model_info=model_info())
        results.update(figures=summarize(raw, rows, rounds), profiles=profiles, floors=floors, diagnostics=diagnostics)
        name, render = ("quick" if args.quick else "latest"), markdown
    shutil.rmtree(out, ignore_errors=True)
    results.update(
        code={"at_start": code_at_start, "at_end": code_state()},
        config=config,
        output_checks=checks,
        raw=raw,
        loadavg_at_end=os.getloadavg(),
        noise_control={k: v for k, v in NOISE.items() if k != "deadline"} | {"patience_min": patience},
        total_benchmark_s=round(time.perf_counter() - clock, 1),
    )
    write_results(name, results, render(results), log)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
