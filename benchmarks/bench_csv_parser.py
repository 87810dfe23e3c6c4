"""Benchmark: the CSV reader's parser, Arrow's against polars' (the fast path of ``io/readers/csv_numeric.py``), in
the whole job, beside the naive pandas and polars scripts, in one interleaved run.

    .venv/bin/python benchmarks/bench_csv_parser.py             # 2M rows, 3 rounds (~6 min quiet)
    .venv/bin/python benchmarks/bench_csv_parser.py --quick     # 200k rows, 1 round (smoke)

The job of ``bench_peers.py`` restricted to CSV (no header) -> CSV: score 2M rows x 20 float64 features + id with
the LogisticRegression (LR) and the HistGradientBoosting (HGB) model, writing (id, prediction). Contenders: naive
pandas and polars (``peers.py``), the engine's CLI with the joblib file at 1 and 2 replicas, once as it runs by
default (with polars installed, a replica turns to polars' parser after its first 48 MiB) and once with
``BATCH_SCORING_CSV_PARSER=arrow``. Every output is
checked in the first round (every id once and in order, every prediction equal to the model's own). Reports wall
seconds and the CPU seconds of the whole process tree (less sensitive to other load on the machine than wall time).
Results: ``benchmarks/results/csv_parser.{json,md}`` (``csv_parser_quick.*`` with --quick). Needs the ``bench`` extra.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import peers
from harness.data import DATA, MODELS, generate_data, warm_page_cache
from harness.measure import run_script
from harness.models import train_models
from harness.noise import least_disturbed, set_patience
from harness.provenance import code_state, machine_info
from harness.report import write_results
from harness.rounds import run_rounds
from workloads import run_engine

PARSERS = {"auto": "default (polars after 48 MiB)", "arrow": "Arrow's parser only"}
PEERS = ("pandas", "polars")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="200k rows, 1 round")
    parser.add_argument("--rows", type=int, default=None, help="rows (default 2,000,000; quick 200,000)")
    parser.add_argument("--rounds", type=int, default=None, help="rounds (default 3; quick 1)")
    parser.add_argument("--patience", type=float, default=0.0, help="minutes to re-measure disturbed runs")
    args = parser.parse_args()
    rows = args.rows or (200_000 if args.quick else 2_000_000)
    rounds = args.rounds or (1 if args.quick else 3)
    clock = time.perf_counter()

    def log(text: str) -> None:
        print(f"[{time.perf_counter() - clock:7.1f}s] {text}", file=sys.stderr, flush=True)

    set_patience(args.patience)
    info, code_at_start = machine_info(), code_state()
    data = generate_data(rows, log)
    models = train_models(log)
    references = {key: peers.reference_predictions(path, data) for key, path in models.items()}
    out = DATA / "out"
    out.mkdir(parents=True, exist_ok=True)
    warm_page_cache(data)
    checks: dict[str, Any] = {}

    def check(name: str, target: Path, model: str) -> None:
        if name not in checks:
            checks[name] = peers.check_output(target, references[model])
            assert checks[name]["ids_in_order"] and checks[name]["prediction_mismatches"] == 0, (name, checks[name])
        if target.is_dir():
            shutil.rmtree(target, ignore_errors=True)
        else:
            target.unlink(missing_ok=True)

    def peer(kind: str, model: str) -> Any:
        def run() -> dict[str, Any]:
            target = out / f"peer-{kind}-{model}.csv"
            result = run_script(Path(peers.__file__), kind, models[model], data, target)
            check(f"{kind}_{model}", target, model)
            return result

        return run

    def engine(parser_name: str, model: str, replicas: int) -> Any:
        def run() -> dict[str, Any]:
            env = {k: v for k, v in os.environ.items() if k != "BATCH_SCORING_CSV_PARSER"}
            if parser_name != "auto":
                env["BATCH_SCORING_CSV_PARSER"] = parser_name
            label = f"engine-{parser_name}-{model}-r{replicas}"
            extra = ["--sink-format", "csv", "--source-format", "csv"]
            result = run_engine(models[model], data, replicas, label, keep=True, env=env, extra_args=extra)
            check(f"engine_{parser_name}_{model}_r{replicas}", Path(result["sink"]), model)
            return result

        return run

    configs = []
    for model in MODELS:
        configs += [(f"{kind}|{model}", peer(kind, model)) for kind in PEERS]
        configs += [
            (f"engine-{name}-r{replicas}|{model}", engine(name, model, replicas))
            for name in PARSERS
            for replicas in (1, 2)
        ]
    raw = run_rounds(
        configs, rounds, rounds, log,
        after_run=lambda name, r: f"wall {r['wall_s']:.2f}s cpu {r['cpu_s']:.2f}s",
        order=lambda index, todo: todo if index % 2 == 0 else list(reversed(todo)),
    )  # fmt: skip
    shutil.rmtree(out, ignore_errors=True)
    figures = {}
    for name, runs in raw.items():
        kept = least_disturbed(runs, rounds)
        figures[name] = {
            "wall_median_s": round(statistics.median(r["wall_s"] for r in kept), 3),
            "cpu_median_s": round(statistics.median(r["cpu_s"] for r in kept), 3),
            "foreign_cores_max": round(max(r["foreign_cores"] for r in kept), 2),
            "runs": len(runs),
        }
    results = {
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": info,
        "load_at_end": os.getloadavg(),
        "config": {"rows": rows, "rounds": rounds, "models": MODELS},
        "figures": figures,
        "output_checks": checks,
        "code": code_at_start,
        "raw": raw,
    }
    write_results("csv_parser_quick" if args.quick else "csv_parser", results, markdown(results), log)
    return 0


def markdown(results: dict[str, Any]) -> str:
    figures = results["figures"]
    head = " | ".join(f"{model.upper()} wall | {model.upper()} CPU" for model in MODELS)
    lines = [
        f"Rows: {results['config']['rows']:,}, CSV -> CSV; medians over {results['config']['rounds']} interleaved "
        "rounds of the whole process tree's wall and CPU seconds; every output checked (ids once and in order, "
        "predictions equal to the model's own).",
        "",
        f"| Contender | {head} | others' cores (max) |",
        "|---|" + "---:|" * (2 * len(MODELS) + 1),
    ]
    rows = [(kind, f"naive {kind}") for kind in PEERS] + [
        (f"engine-{name}-r{replicas}", f"`batch-scoring`, joblib, replicas={replicas}, {label}")
        for name, label in PARSERS.items()
        for replicas in (1, 2)
    ]
    for key, label in rows:
        cells = [figures[f"{key}|{model}"] for model in MODELS]
        values = " | ".join(f"{c['wall_median_s']:.2f} | {c['cpu_median_s']:.2f}" for c in cells)
        others = max(c["foreign_cores_max"] for c in cells)
        lines.append(f"| {label} | {values} | {others:.2f} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    raise SystemExit(main())
