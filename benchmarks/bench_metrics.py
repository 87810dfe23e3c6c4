"""Benchmark: the metrics job's memory (``batch-scoring metrics``) is flat in the number of rows.

    .venv/bin/python benchmarks/bench_metrics.py            # full run: 2M and 10M labeled rows, replicas 1 and 2
    .venv/bin/python benchmarks/bench_metrics.py --quick    # smoke run: 200k and 1M rows

What runs: a classification with probabilities (the harness's ``LogisticRegression``), two protected attributes,
a baseline (a fixed 1M rows, the same for every size) and the permutation importance (2,000 sampled rows, 5
repeats), with 1 and 2 replicas, on Parquet data generated once into ``benchmarks/data/`` (git-ignored): the
harness's 20 features and label, and two groups drawn from the row's id. Each run is measured from outside
(``harness.measure``): the peak RSS (``VmHWM``) of the command (the driver) and of every replica process (the
baseline's, the labeled rows' and the importance's jobs each start theirs), sampled every 0.1 s. The machine may be
shared: other processes' CPU is recorded; memory is what this benchmark is about.

Results go to ``benchmarks/results/metrics_memory.json`` (``metrics_memory_quick.json`` with --quick) and a Markdown
table next to it; flat means the 10M-row peak within 10 % of the 2M-row peak, for the driver and for each replica.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path
from typing import Any

from harness.data import CHUNK, DATA, FEATURES, Log, chunk, labels
from harness.measure import json_tail, measure
from harness.models import train_models
from harness.provenance import code_state, machine_info
from harness.report import mb, write_results
from workloads import batch_scoring_cli

BASELINE_ROWS = 1_000_000
FLAT = 0.10


def labeled_file(rows: int, offset: int = 0) -> Path:
    return DATA / f"metrics_{rows}_{offset}.parquet"


def generate(rows: int, log: Log, offset: int = 0) -> Path:
    """``rows`` labeled rows (id, f0..f19, label, region, segment) as Parquet, once; ``offset`` chunks skipped
    (another sample of the same distribution, for the baseline)."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = labeled_file(rows, offset)
    if path.exists():
        return path
    DATA.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    tmp = path.with_suffix(".tmp")
    writer = None
    for index in range((rows + CHUNK - 1) // CHUNK):
        ids, x = chunk(offset + index, min(CHUNK, rows - index * CHUNK))
        regions = np.array(["north", "south", "east", "west"])[ids % 4]
        segments = np.array(["a", "b"])[(ids // 7) % 2]
        table = pa.Table.from_arrays(
            [pa.array(ids)] + [pa.array(x[:, i]) for i in range(x.shape[1])]
            + [pa.array(labels(x)), pa.array(regions), pa.array(segments)],
            names=["id", *FEATURES, "label", "region", "segment"],
        )
        if writer is None:
            writer = pq.ParquetWriter(tmp, table.schema)
        writer.write_table(table, row_group_size=250_000)
    assert writer is not None
    writer.close()
    tmp.rename(path)
    log(f"generated {path.name}: {rows:,} rows, {path.stat().st_size / 1e6:,.0f} MB in "
        f"{time.perf_counter() - started:.1f}s")
    return path


def run_metrics(model: Path, data: Path, baseline: Path, replicas: int, label: str) -> dict[str, Any]:
    """Measure one ``batch-scoring metrics`` run: wall time, the driver's and every replica's peak RSS."""
    out = DATA / "out" / label
    shutil.rmtree(out, ignore_errors=True)
    cmd = [
        *batch_scoring_cli(), "metrics",
        "--model", str(model),
        "--source", data.as_uri(),
        "--output", out.as_uri() + "/",
        "--label-column", "label",
        "--task", "classification",
        "--protected-attributes", "region,segment",
        "--baseline", baseline.as_uri(),
        "--replicas", str(replicas),
        "--batch-size", "100000",
    ]  # fmt: skip
    m = measure(cmd)
    summary = json_tail(m["stdout"])
    record = json.loads((out / "metrics.json").read_text())
    manifest_bytes = (out / "scored" / "_manifest.json").stat().st_size
    shutil.rmtree(out, ignore_errors=True)
    replicas_seen = [p for p in m["processes"] if p["role"].startswith("replica-")]
    return {
        "replicas": replicas,
        "rows": summary["rows"],
        "wall_s": round(m["wall_s"], 2),
        "driver_peak_rss": next((p["vm_hwm"] for p in m["processes"] if p["role"] == "main"), None),
        "replica_peak_rss": max((p["vm_hwm"] for p in replicas_seen), default=None),
        "replica_processes": [{"role": p["role"], "peak_rss": p["vm_hwm"], "started_after_s": p["started_after_s"]}
                              for p in replicas_seen],
        "manifest_bytes": manifest_bytes,
        "roc_auc": summary["metrics"].get("roc_auc"),
        "max_psi": summary["metrics"].get("max_psi"),
        "importance_sample_rows": (record.get("importance") or {}).get("sample_rows"),
        "top_feature": (summary["top_features"] or [{}])[0].get("feature"),
        "cpu_s": round(m["cpu_s"], 1),
        "foreign_cores": round(m["foreign_cores"], 2),
        "load_before": m["load_before"],
        "load_after": m["load_after"],
    }


def flatness(runs: list[dict[str, Any]], small: int, big: int) -> dict[str, Any]:
    """The big run's peaks over the small run's, per replica count, for the driver and the replicas."""
    found: dict[str, Any] = {}
    for replicas in sorted({r["replicas"] for r in runs}):
        a = next(r for r in runs if r["replicas"] == replicas and r["rows"] == small)
        b = next(r for r in runs if r["replicas"] == replicas and r["rows"] == big)
        ratios = {key: b[key] / a[key] for key in ("driver_peak_rss", "replica_peak_rss")}
        found[str(replicas)] = {**{k: round(v, 3) for k, v in ratios.items()},
                                "flat": all(abs(v - 1) <= FLAT for v in ratios.values())}
    return found


def markdown(results: dict[str, Any]) -> str:
    lines = [
        "# Metrics job memory (`batch-scoring metrics`)", "",
        f"{results['created']}, {results['machine'].get('cores')} CPUs; classification with probabilities "
        f"(LogisticRegression), 2 protected attributes, a {BASELINE_ROWS:,}-row baseline, permutation importance "
        "(2,000 rows x 5 repeats); peak RSS (VmHWM) per process, measured from outside.", "",
        "| rows | replicas | wall s | driver peak | replica peak (max) | manifest | other cores busy |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results["runs"]:
        lines.append(f"| {r['rows']:,} | {r['replicas']} | {r['wall_s']:.1f} | {mb(r['driver_peak_rss'])} | "
                     f"{mb(r['replica_peak_rss'])} | {r['manifest_bytes'] / 1e3:,.0f} kB | {r['foreign_cores']} |")
    lines += ["", "Big over small (flat: within 10 %):", ""]
    for replicas, f in results["flatness"].items():
        lines.append(f"- replicas {replicas}: driver x{f['driver_peak_rss']}, replica x{f['replica_peak_rss']} "
                     f"-> {'flat' if f['flat'] else 'NOT flat'}")
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="200k and 1M rows")
    parser.add_argument("--sizes", default=None, help="comma-separated row counts (default 2000000,10000000)")
    args = parser.parse_args()
    sizes = [int(s) for s in (args.sizes or ("200000,1000000" if args.quick else "2000000,10000000")).split(",")]
    clock = time.perf_counter()

    def log(text: str) -> None:
        print(f"[{time.perf_counter() - clock:7.1f}s] {text}", file=sys.stderr, flush=True)

    results: dict[str, Any] = {"created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "machine": machine_info(),
                               "code": code_state()}
    model = train_models(log)["lr"]
    baseline = generate(BASELINE_ROWS, log, offset=1000)
    runs = []
    for rows in sizes:
        data = generate(rows, log)
        for replicas in (1, 2):
            run = run_metrics(model, data, baseline, replicas, f"metrics-{rows}-{replicas}")
            log(f"{rows:,} rows, {replicas} replica(s): {run['wall_s']:.1f}s, driver {mb(run['driver_peak_rss'])}, "
                f"replica {mb(run['replica_peak_rss'])}, other cores busy {run['foreign_cores']}")
            runs.append(run)
    results.update(runs=runs, flatness=flatness(runs, sizes[0], sizes[-1]),
                   config={"sizes": sizes, "baseline_rows": BASELINE_ROWS, "model": "lr", "batch_size": 100_000},
                   total_benchmark_s=round(time.perf_counter() - clock, 1))
    write_results("metrics_memory_quick" if args.quick else "metrics_memory", results, markdown(results), log)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
