"""Benchmark: the engine beside the tools a user would pick instead, in one interleaved run.

    .venv/bin/python benchmarks/bench_peers.py            # 2M rows, 3 rounds (~15 min)
    .venv/bin/python benchmarks/bench_peers.py --quick    # 200k rows, 1 round (~2 min)
    .venv/bin/python benchmarks/bench_peers.py --rows 1000   # short jobs: fixed costs (~5 min)

The same job for every contender: score every row of the data set (2M rows x 20 float64 features + id) with the
LogisticRegression and the HistGradientBoosting model, CSV (no header) -> CSV and Parquet -> Parquet, writing
(id, prediction). Contenders (``peers.py``; each a fresh process, timed from outside with its interpreter start,
imports and model load): naive pandas, polars, DuckDB and the naive ``mlflow.pyfunc`` script; the engine's CLI
(``batch-scoring score``) with the joblib file, the MLflow model folder and the registry's ``models:/name@champion``,
each with 1 and 2 replicas. Needs the ``bench`` extra (polars, duckdb).

Every output is checked in the first round: every id once and in order, every prediction equal to the model's own
``predict`` of the same rows. Results: ``benchmarks/results/peers.{json,md}`` (``peers_quick.*`` with --quick,
``peers_<rows>.*`` with --rows).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import peers
from harness.data import BATCH, DATA, MODELS, generate_data, warm_page_cache
from harness.measure import run_script
from harness.models import model_info, train_models
from harness.noise import NOISE, least_disturbed, set_patience
from harness.provenance import code_state, machine_info
from harness.report import write_results
from harness.rounds import run_rounds
from workloads import run_engine

PEER_LABELS = {
    "pandas": "naive pandas (read -> predict -> write)",
    "polars": "polars (same, polars I/O)",
    "duckdb": "DuckDB (read -> Arrow -> predict -> Arrow write)",
    "pyfunc": "naive `mlflow.pyfunc` + pandas",
}
ENGINE_LABELS = {"joblib": "joblib file", "mlflow": "MLflow model folder", "registry": "`models:/name@champion`"}


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add = parser.add_argument
    add("--rows", type=int, default=None, help="rows of the data set (default 2,000,000; quick 200,000)")
    add("--quick", action="store_true", help="200k rows, 1 round")
    add("--rounds", type=int, default=None, help="rounds (default 3; quick 1)")
    add("--patience", type=float, default=None, help="minutes to re-measure disturbed runs (default 20; quick 3)")
    add("--max-rounds", type=int, default=6, help="rounds at most, with re-measurements (default 6)")
    return parser.parse_args()


def main() -> int:
    args = parse_args()
    rows = args.rows or (200_000 if args.quick else 2_000_000)
    rounds = args.rounds or (1 if args.quick else 3)
    clock = time.perf_counter()

    def log(text: str) -> None:
        print(f"[{time.perf_counter() - clock:7.1f}s] {text}", file=sys.stderr, flush=True)

    set_patience(args.patience if args.patience is not None else (3.0 if args.quick else 20.0))
    info, code_at_start = machine_info(), code_state()
    log(f"machine: {info}")
    inputs = {"csv": generate_data(rows, log)}
    inputs["parquet"] = peers.parquet_input(inputs["csv"], log)
    joblib_models = train_models(log)
    mlflow_models = peers.mlflow_models(joblib_models, log)
    references = {key: peers.reference_predictions(path, inputs["csv"]) for key, path in joblib_models.items()}
    out = DATA / "out"
    out.mkdir(parents=True, exist_ok=True)
    for path in inputs.values():
        warm_page_cache(path)
    env = dict(os.environ, MLFLOW_TRACKING_URI=peers.registry_uri(), MLFLOW_DISABLE_TELEMETRY="true")
    checks: dict[str, Any] = {}

    def peer(kind: str, model: str, fmt: str) -> Any:
        def run() -> dict[str, Any]:
            target = out / f"peer-{kind}-{model}.{fmt}"
            model_path = mlflow_models[model]["folder"] if kind == "pyfunc" else joblib_models[model]
            result = run_script(Path(peers.__file__), kind, model_path, inputs[fmt], target, env=env)
            result["peak_rss_max"] = result["peak_rss"]
            _check(f"{kind}_{model}_{fmt}", target, model)
            return result

        return run

    def engine(source: str, model: str, fmt: str, replicas: int) -> Any:
        def run() -> dict[str, Any]:
            reference = {"joblib": joblib_models[model]}.get(source) or mlflow_models[model][
                "folder" if source == "mlflow" else "uri"
            ]
            label = f"engine-{source}-{model}-{fmt}-r{replicas}"
            extra = ["--sink-format", fmt, "--source-format", fmt]
            result = run_engine(reference, inputs[fmt], replicas, label, keep=True, env=env, extra_args=extra)
            result["peak_rss_max"] = max(p["vm_hwm"] for p in result["processes"])
            _check(f"engine_{source}_{model}_{fmt}_r{replicas}", Path(result["sink"]), model)
            shutil.rmtree(result["sink"], ignore_errors=True)
            return result

        return run

    def _check(name: str, target: Path, model: str) -> None:
        if name not in checks:  # the first run of each configuration
            checks[name] = peers.check_output(target, references[model])
            assert checks[name]["ids_in_order"] and checks[name]["prediction_mismatches"] == 0, (name, checks[name])
        if target.is_dir():
            shutil.rmtree(target, ignore_errors=True)
        else:
            target.unlink(missing_ok=True)

    configs = []
    for model in MODELS:
        for fmt in ("csv", "parquet"):
            configs += [(f"{kind}|{model}|{fmt}", peer(kind, model, fmt)) for kind in peers.PEERS]
            configs += [
                (f"engine-{source}-r{replicas}|{model}|{fmt}", engine(source, model, fmt, replicas))
                for source in ENGINE_LABELS
                for replicas in (1, 2)
            ]
    raw = run_rounds(
        configs, rounds, args.max_rounds, log,
        after_run=lambda name, r: f"wall {r['wall_s']:.2f}s peak {r['peak_rss_max'] / 2**20:.0f} MiB",
        order=lambda index, todo: todo if index % 2 == 0 else list(reversed(todo)),
    )  # fmt: skip
    log(f"output checks: {checks}")
    shutil.rmtree(out, ignore_errors=True)
    figures = summarize(raw, rounds)
    results = {
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": info,
        "config": {"rows": rows, "rounds": rounds, "batch_size": BATCH, "models": MODELS, "model_info": model_info()},
        "figures": figures,
        "output_checks": checks,
        "raw": {name: [_slim(r) for r in runs] for name, runs in raw.items()},
        "code": {"at_start": code_at_start, "at_end": code_state()},
        "noise_control": {k: v for k, v in NOISE.items() if k != "deadline"},
        "total_benchmark_s": round(time.perf_counter() - clock, 1),
    }
    name = "peers_quick" if args.quick else ("peers" if args.rows is None else f"peers_{rows}")
    write_results(name, results, markdown(results), log)
    return 0


def _slim(run: dict[str, Any]) -> dict[str, Any]:
    """A run without the bulky parts (process lists, output text)."""
    return {k: v for k, v in run.items() if k not in ("processes", "stdout", "stderr", "shards")}


def summarize(raw: dict[str, list[dict[str, Any]]], rounds: int) -> dict[str, Any]:
    """Per configuration: the median wall time and the largest peak RSS over its ``rounds`` least disturbed runs."""
    import statistics

    figures = {}
    for name, runs in raw.items():
        kept = least_disturbed(runs, rounds)
        walls = sorted(r["wall_s"] for r in kept)
        figures[name] = {
            "wall_median_s": round(statistics.median(walls), 3),
            "wall_min_s": round(walls[0], 3),
            "wall_max_s": round(walls[-1], 3),
            "peak_rss_max": max(r["peak_rss_max"] for r in kept),
            "runs": len(runs),
            "foreign_cores_max": round(max(r["foreign_cores"] for r in kept), 2),
        }
    return figures


def markdown(results: dict[str, Any]) -> str:
    """The table: contenders x (model, format) median wall seconds, peak RSS; then the engine's targets."""
    figures = results["figures"]
    columns = [(model, fmt) for model in MODELS for fmt in ("csv", "parquet")]
    head = " | ".join(f"{model.upper()} {'CSV' if fmt == 'csv' else 'Parquet'}" for model, fmt in columns)
    lines = [
        f"Rows: {results['config']['rows']:,}; median wall seconds of the whole process over the "
        f"{results['config']['rounds']} least disturbed of each configuration's runs (interleaved rounds); peak RSS "
        "of the largest process, the largest over those runs. Every output checked: every id once and in order, "
        "every prediction equal to the model's own.",
        "",
        f"| Contender | {head} | Peak RSS (max) |",
        "|---|" + "---:|" * (len(columns) + 1),
    ]
    rows = [(kind, PEER_LABELS[kind]) for kind in peers.PEERS] + [
        (f"engine-{source}-r{replicas}", f"`batch-scoring`, {label}, replicas={replicas}")
        for source, label in ENGINE_LABELS.items()
        for replicas in (1, 2)
    ]
    for key, label in rows:
        cells = [figures[f"{key}|{model}|{fmt}"] for model, fmt in columns]
        walls = " | ".join(f"{c['wall_median_s']:.2f}" for c in cells)
        rss = max(c["peak_rss_max"] for c in cells) / 2**30
        lines.append(f"| {label} | {walls} | {rss:.2f} GiB |")
    lines += ["", "| Target | " + head + " |", "|---|" + "---:|" * len(columns)]

    def wall(key: str, model: str, fmt: str) -> float:
        return figures[f"{key}|{model}|{fmt}"]["wall_median_s"]

    for replicas in (1, 2):
        for source in ("mlflow", "registry"):
            ratios = [wall(f"engine-{source}-r{replicas}", m, f) / wall(f"engine-joblib-r{replicas}", m, f)
                      for m, f in columns]  # fmt: skip
            lines.append(
                f"| {ENGINE_LABELS[source]} / joblib file, replicas={replicas} (target <= 1.10) | "
                + " | ".join(f"{r:.2f}" for r in ratios) + " |"
            )
    for replicas in (1, 2):
        fastest = [min(wall(kind, m, f) for kind in peers.PEERS) for m, f in columns]
        engine_walls = [wall(f"engine-joblib-r{replicas}", m, f) for m, f in columns]
        ratios = [mine / best for mine, best in zip(engine_walls, fastest, strict=True)]
        lines.append(
            f"| engine (joblib) / fastest peer, replicas={replicas} (target < 1) | "
            + " | ".join(f"{r:.2f}" for r in ratios) + " |"
        )
        ratios = [wall(f"engine-mlflow-r{replicas}", m, f) / wall("pyfunc", m, f) for m, f in columns]
        lines.append(
            f"| engine (MLflow folder) / naive `mlflow.pyfunc`, replicas={replicas} (target < 1) | "
            + " | ".join(f"{r:.2f}" for r in ratios) + " |"
        )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    raise SystemExit(main())
