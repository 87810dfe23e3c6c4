"""Benchmark (issue 17): scoring the same 2M rows from Parquet files, from a Delta table and from an Iceberg table.

    env -u PYTHONDONTWRITEBYTECODE .venv/bin/python benchmarks/bench_tables.py            # 2M rows, 3 rounds
    env -u PYTHONDONTWRITEBYTECODE .venv/bin/python benchmarks/bench_tables.py --quick    # 200k rows, 1 round

The data set of ``bench_scoring.py`` (an int64 ``id`` and 20 float64 features) is written once as Parquet files
(``--files`` files, 100k-row row groups) into ``benchmarks/data/tables/<rows>/lake/``. The very same files then
become a Delta table (``deltalake.convert_to_deltalake``: a ``_delta_log`` beside them) and an Iceberg table (SQLite
catalog, ``add_files``): the three sources read the same bytes, so what differs is only what each source does
around them (opening the table, pinning a version or snapshot, planning its files).

The engine CLI (``batch-scoring score``) scores each source with both models (LogisticRegression,
HistGradientBoostingClassifier) and 1 and 2 replicas into Parquet files, in interleaved rounds (every configuration
once per round, with the noise control of ``harness/``). Every output is checked against the model's own predictions
on the same rows (every id once, no differing prediction). Results: ``results/tables.json`` (every run) and
``results/tables.md`` (the table), with the load of the machine (``os.getloadavg``) at the start and the end.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import shutil
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from harness.data import BATCH, CHUNK, DATA, FEATURES, MODELS, NAMES, chunk
from harness.measure import json_tail, measure
from harness.models import model_info, train_models
from harness.noise import NOISE, is_clean, least_disturbed, set_patience
from harness.provenance import code_state, machine_info
from harness.report import write_results
from harness.rounds import run_rounds
from workloads import batch_scoring_cli

SOURCES = ("parquet", "delta", "iceberg")
ROW_GROUP = 100_000


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add = parser.add_argument
    add("--rows", type=int, default=None, help="rows (default 2,000,000; --quick 200,000)")
    add("--quick", action="store_true", help="smoke run: 200k rows, 1 round")
    add("--rounds", type=int, default=None, help="rounds (default 3; --quick 1)")
    add("--files", type=int, default=4, help="Parquet data files the rows are split into (default 4)")
    add("--patience", type=float, default=None, help="minutes during which disturbed runs are measured again "
        "(default 10; quick 2)")
    add("--max-rounds", type=int, default=5, help="rounds at most, re-measuring disturbed configurations")
    add("--models", default=",".join(MODELS), help="the models measured (default lr,hgb); a subset writes "
        "results/tables_<models>.*")
    add("--listing-child", choices=SOURCES, help=argparse.SUPPRESS)  # (one fixed-cost measurement, in a fresh process)
    return parser.parse_args()  # fmt: skip


def listing_child(kind: str, folder: Path) -> dict[str, Any]:
    """What a source costs before any row is read, in a fresh process: importing its module and the driver's listing
    (opening the table, pinning a version or snapshot, planning its files)."""
    started = time.perf_counter()
    from airflow_batch_scoring.sources import SOURCES as REGISTRY
    from airflow_batch_scoring.specs import parse_data_spec

    spec = parse_data_spec(source_spec(kind, folder), "source")
    source = REGISTRY[spec.kind]()(spec, {"storage": {}} if kind == "iceberg" else {})
    imported = time.perf_counter()
    files = source.listing()
    listed = time.perf_counter()
    return {"source": kind, "import_s": round(imported - started, 3), "listing_s": round(listed - imported, 3),
            "files": len(files)}


def fixed_costs(folder: Path, rounds: int) -> dict[str, Any]:
    """:func:`listing_child` of each source, interleaved, ``rounds`` times; medians."""
    import subprocess

    runs: dict[str, list[dict[str, Any]]] = {kind: [] for kind in SOURCES}
    for _ in range(rounds):
        for kind in SOURCES:
            out = subprocess.run([sys.executable, __file__, "--listing-child", kind, "--rows", folder.name],
                                 capture_output=True, text=True, check=True, cwd=Path(__file__).parent)
            runs[kind].append(json.loads(out.stdout.strip().splitlines()[-1]))
    return {kind: {"import_s": statistics.median(r["import_s"] for r in v),
                   "listing_s": statistics.median(r["listing_s"] for r in v), "runs": v} for kind, v in runs.items()}


def write_lake(rows: int, files: int, log: Any) -> Path:
    """The rows as ``files`` Parquet files, then the same files as a Delta table and an Iceberg table (once)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    folder = DATA / "tables" / str(rows)
    lake = folder / "lake"
    done = folder / "done.json"
    if done.exists():
        return folder
    shutil.rmtree(folder, ignore_errors=True)
    lake.mkdir(parents=True)
    started = time.perf_counter()
    per_file = -(-rows // files)
    tables = []
    for index in range(-(-rows // CHUNK)):
        ids, x = chunk(index, min(CHUNK, rows - index * CHUNK))
        tables.append(pa.Table.from_arrays([pa.array(ids)] + [pa.array(x[:, i]) for i in range(x.shape[1])],
                                           names=NAMES))
    data = pa.concat_tables(tables)
    for n in range(files):
        pq.write_table(data.slice(n * per_file, per_file), lake / f"part-{n:03d}.parquet", row_group_size=ROW_GROUP)
    from deltalake import convert_to_deltalake

    convert_to_deltalake(str(lake))
    from pyiceberg.catalog.sql import SqlCatalog

    # (the catalog's name is part of a SQL catalog's keys: the provider's is "batch_scoring")
    catalog = SqlCatalog("batch_scoring", uri=f"sqlite:///{folder / 'catalog.db'}",
                         warehouse=(folder / "warehouse").as_uri())
    catalog.create_namespace("bench")
    table = catalog.create_table("bench.scoring", schema=data.schema)
    table.add_files([p.as_uri() for p in sorted(lake.glob("*.parquet"))])
    done.write_text(json.dumps({"rows": rows, "files": files}))
    log(f"wrote {rows:,} rows as {files} Parquet files, a Delta table and an Iceberg table over them in "
        f"{time.perf_counter() - started:.1f}s")
    return folder


def source_spec(kind: str, folder: Path) -> dict[str, Any]:
    lake = folder / "lake"
    if kind == "parquet":
        return {"uri": f"{lake.as_uri()}/*.parquet", "format": "parquet"}
    if kind == "delta":
        return {"format": "delta", "uri": lake.as_uri()}
    return {"format": "iceberg", "catalog_uri": f"sqlite:///{folder / 'catalog.db'}",
            "warehouse": (folder / "warehouse").as_uri(), "table": "bench.scoring"}


def expected_predictions(model: Path, rows: int) -> Any:
    """The model's own predictions of every row, by id (ids are 0 .. rows - 1)."""
    import joblib
    import numpy as np
    import pandas as pd

    estimator = joblib.load(model)
    parts = []
    for index in range(-(-rows // CHUNK)):
        _, x = chunk(index, min(CHUNK, rows - index * CHUNK))
        parts.append(estimator.predict(pd.DataFrame(x, columns=FEATURES)))
    return np.concatenate(parts)


def check_output(sink: Path, expected: Any) -> dict[str, Any]:
    """Every id once, each prediction equal to the model's own on that row."""
    import numpy as np
    import pyarrow.parquet as pq

    table = pq.read_table(sorted(sink.glob("part-*.parquet")))
    ids = table.column("id").to_numpy()
    order = np.argsort(ids)
    ids, predictions = ids[order], table.column("prediction").to_numpy()[order]
    complete = len(ids) == len(expected) and bool(np.array_equal(ids, np.arange(len(expected))))
    mismatches = int(np.sum(predictions != expected)) if complete else None
    return {"rows": int(table.num_rows), "every_id_once": complete, "prediction_mismatches": mismatches}


def run_engine(kind: str, folder: Path, model: Path, replicas: int, label: str, expected: Any) -> dict[str, Any]:
    sink = DATA / "out" / "tables" / label
    shutil.rmtree(sink, ignore_errors=True)
    cmd = [
        *batch_scoring_cli(), "score",
        "--model", str(model),
        "--source", json.dumps(source_spec(kind, folder)),
        "--sink", json.dumps({"uri": sink.as_uri() + "/", "format": "parquet"}),
        "--passthrough", "id",
        "--replicas", str(replicas),
        "--batch-size", str(BATCH),
    ]  # fmt: skip
    m = measure(cmd)  # (raises when the command fails)
    summary = json_tail(m["stdout"])
    check = check_output(sink, expected)
    shutil.rmtree(sink, ignore_errors=True)
    return {"source": kind, "replicas": replicas, "wall_s": m["wall_s"], "duration_s": summary["duration_s"],
            "rows_out": summary["rows_out"], "check": check, "cpu_s": m["cpu_s"], "foreign_cpu_s": m["foreign_cpu_s"],
            "foreign_cores": m["foreign_cores"], "load_before": m["load_before"], "load_after": m["load_after"]}


def summarize(raw: dict[str, list[dict[str, Any]]], rounds: int) -> dict[str, Any]:
    """Per model and replicas: each source's median wall time over its ``rounds`` least disturbed runs, its spread
    ((max - min) / median), and its ratio to the Parquet files' median; *within noise* when the ratio differs from 1
    by less than the larger spread of the two."""
    figures: dict[str, Any] = {}
    for name, runs in raw.items():
        kept = [r["wall_s"] for r in least_disturbed(runs, rounds)]
        median = statistics.median(kept)
        figures[name] = {"median_s": round(median, 3), "min_s": round(min(kept), 3), "max_s": round(max(kept), 3),
                         "spread": round((max(kept) - min(kept)) / median, 3), "runs": len(runs),
                         "clean_runs": sum(map(is_clean, runs))}
    for name, figure in figures.items():
        kind, key, replicas = name.split("_")
        base = figures[f"parquet_{key}_{replicas}"]
        ratio = figure["median_s"] / base["median_s"]
        noise = max(figure["spread"], base["spread"])
        figure.update(ratio_to_parquet=round(ratio, 3), noise=round(noise, 3),
                      within_noise=abs(ratio - 1) <= noise)
    return figures


def markdown(results: dict[str, Any]) -> str:
    config, figures = results["config"], results["figures"]
    lines = [
        f"# Scoring {config['rows']:,} rows: Parquet files, a Delta table, an Iceberg table (the same files)",
        "",
        f"{config['rounds']} interleaved rounds; median wall time of each configuration's {config['rounds']} least "
        f"disturbed runs; load average (1, 5, 15 min) at the start {results['loadavg_at_start']}, at the end "
        f"{results['loadavg_at_end']}; `{results['uptime_at_start']}`.",
        "",
        "| model | replicas | source | median wall (s) | min-max (s) | spread | vs Parquet | within noise "
        "| clean runs |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for key in MODELS:
        for replicas in (1, 2):
            for kind in SOURCES:
                f = figures.get(f"{kind}_{key}_r{replicas}")
                if f is None:
                    continue
                lines.append(
                    f"| {key} | {replicas} | {kind} | {f['median_s']:.2f} | {f['min_s']:.2f}-{f['max_s']:.2f} | "
                    f"{f['spread'] * 100:.0f} % | {f['ratio_to_parquet']:.3f} | "
                    f"{'yes' if f['within_noise'] else '**no**'} | {f['clean_runs']}/{f['runs']} |"
                )
    costs = results.get("fixed_costs") or {}
    if costs:
        lines += ["", "Before any row is read (a fresh process, medians): "
                  + "; ".join(f"{k}: import {v['import_s']:.2f} s + listing {v['listing_s']:.2f} s"
                              for k, v in costs.items()) + "."]
    checks = results["output_checks"]
    bad = {k: v for k, v in checks.items() if not v["every_id_once"] or v["prediction_mismatches"]}
    lines += ["", f"Outputs checked: {sum(len(v) for v in results['raw'].values())} runs, every id once and every "
                  f"prediction equal to the model's own: {'yes' if not bad else 'NO: ' + json.dumps(bad)}.", ""]
    return "\n".join(lines)


def main() -> int:
    args = parse_args()
    rows = args.rows or (200_000 if args.quick else 2_000_000)
    if args.listing_child:
        print(json.dumps(listing_child(args.listing_child, DATA / "tables" / str(rows))))
        return 0
    chosen = [m.strip() for m in args.models.split(",") if m.strip()]
    rounds = args.rounds or (1 if args.quick else 3)
    clock = time.perf_counter()

    def log(text: str) -> None:
        print(f"[{time.perf_counter() - clock:7.1f}s] {text}", file=sys.stderr, flush=True)

    patience = args.patience if args.patience is not None else (2.0 if args.quick else 10.0)
    set_patience(patience)
    uptime = os.popen("uptime").read().strip()
    results: dict[str, Any] = {"created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "machine": machine_info(),
                               "loadavg_at_start": [round(v, 2) for v in os.getloadavg()], "uptime_at_start": uptime}
    log(f"machine: {results['machine']}; {uptime}")
    code_at_start = code_state()
    folder = write_lake(rows, args.files, log)
    models = {key: path for key, path in train_models(log).items() if key in chosen}
    costs = fixed_costs(folder, max(rounds, 3))
    log("fixed costs (import + listing, fresh process): " + ", ".join(
        f"{k} {v['import_s']:.2f} + {v['listing_s']:.2f}s" for k, v in costs.items()))
    expected = {key: expected_predictions(path, rows) for key, path in models.items()}
    configs = []
    for key, model in models.items():
        for replicas in (1, 2):
            for kind in SOURCES:
                label = f"{kind}_{key}_r{replicas}"
                configs.append((label, functools.partial(run_engine, kind, folder, model, replicas, label,
                                                         expected[key])))
    checks: dict[str, Any] = {}

    def after_run(name: str, r: dict[str, Any]) -> str:
        check = r["check"]
        checks.setdefault(name, []).append(check)
        ok = check["every_id_once"] and check["prediction_mismatches"] == 0
        return f"wall {r['wall_s']:.2f}s, {check['rows']:,} rows, output {'OK' if ok else 'WRONG ' + str(check)}"

    raw = run_rounds(configs, rounds, args.max_rounds, log, after_run=after_run)
    shutil.rmtree(DATA / "out" / "tables", ignore_errors=True)
    results.update(
        config={"rows": rows, "rounds": rounds, "files": args.files, "row_group": ROW_GROUP, "batch_size": BATCH,
                "models": MODELS, "model_info": model_info()},
        figures=summarize(raw, rounds),
        fixed_costs=costs,
        output_checks={k: {"every_id_once": all(c["every_id_once"] for c in v),
                           "prediction_mismatches": sum(c["prediction_mismatches"] or 0 for c in v)}
                       for k, v in checks.items()},
        raw=raw,
        loadavg_at_end=[round(v, 2) for v in os.getloadavg()],
        uptime_at_end=os.popen("uptime").read().strip(),
        noise_control={k: v for k, v in NOISE.items() if k != "deadline"} | {"patience_min": patience},
        code={"at_start": code_at_start, "at_end": code_state()},
        total_benchmark_s=round(time.perf_counter() - clock, 1),
    )
    name = "tables" + ("_quick" if args.quick else "") + ("" if set(chosen) == set(MODELS) else "_" + "_".join(chosen))
    write_results(name, results, markdown(results), log)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
