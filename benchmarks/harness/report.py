"""The Markdown tables (``results/<name>.md``, the README's tables) and the ``results/`` files."""

from __future__ import annotations

import json
import os
from typing import Any

from harness.data import MODELS, RESULTS, Log
from harness.summary import floor_figures


def mb(value: float | None) -> str:
    return "-" if value is None else f"{value / 2**20:,.0f} MiB"


def write_results(name: str, results: dict[str, Any], table: str, log: Log) -> None:
    """Write ``results/<name>.json`` and ``results/<name>.md`` (the table), and print the table."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{name}.json").write_text(json.dumps(results, indent=2, default=str))
    (RESULTS / f"{name}.md").write_text(table)
    print(table)
    log(f"wrote {RESULTS / f'{name}.json'} and {RESULTS / f'{name}.md'}")


def markdown(results: dict[str, Any]) -> str:
    """The tables of README.md: figures, memory flatness, start-up diagnostics, targets."""
    fig, rows = results["figures"], results["config"]["rows"]
    lines = [
        f"Rows: {rows:,}; times are medians of the {results['config']['rounds']} least disturbed runs of each "
        "measurement; peak RSS is the max over every run; CPU is user+sys of the whole process tree; Others = the most "
        "CPU (in cores, averaged over a run) that other processes of the machine used during the runs kept.",
        "",
        "| Model | Measurement | Time (s) | Rows/s | CPU (s) | Peak RSS | Others | Notes |",
        "|---|---|---:|---:|---:|---:|---:|---|",
    ]
    io = fig["io_limit"]
    lines.append(
        f"| - | read+write limit: pyarrow read_csv + write_csv | {io['total_s']:.2f} | {io['rows_per_s']:,.0f} | "
        f"{io['cpu_s']:.1f} | {mb(io['peak_rss'])} | {io['foreign_cores_max']:.2f} | "
        f"read {io['read_s']:.2f} + write {io['write_s']:.2f}; process "
        f"wall {io['wall_s']:.2f} |"
    )
    for key, name in MODELS.items():
        f = fig[key]
        n, p = f["naive"], f["predict_limit"]
        lines.append(
            f"| {name} | naive pandas pipeline (process wall) | {n['wall_s']:.2f} | {n['rows_per_s_wall']:,.0f} | "
            f"{n['cpu_s']:.1f} | {mb(n['peak_rss'])} | {n['foreign_cores_max']:.2f} | "
            f"in-process {n['total_s']:.2f} ({n['rows_per_s_inproc']:,.0f} "
            f"rows/s): read {n['read_s']:.2f} + predict {n['predict_s']:.2f} + write {n['write_s']:.2f} |"
        )
        lines.append(
            f"| {name} | predict-only limit: 100k batches, all cores | {p['predict_s']:.2f} | {p['rows_per_s']:,.0f} "
            f"| - | {mb(p['peak_rss'])} | {p['foreign_cores_max']:.2f} | predict calls only; whole data preloaded |"
        )
        for replicas in (1, 2):
            e = f[f"engine_r{replicas}"]
            ph = e["phases"]
            stage = "; ".join(
                f"shard {s['shard']}: predict_s {s['predict_s']:.1f} of {s['duration_s']:.1f}"
                for s in e["shards_median_run"]
            )
            lines.append(
                f"| {name} | engine CLI, replicas={replicas} (wall) | {e['wall_s']:.2f} | "
                f"{e['rows_per_s_wall']:,.0f} | "
                f"{e['cpu_s']:.1f} | {mb(e['peak_rss_per_replica'])} per replica | {e['foreign_cores_max']:.2f} | "
                f"duration_s {e['duration_s']:.2f} "
                f"({e['rows_per_s_duration']:,.0f} rows/s); before replicas {ph['before_replicas_s']:.1f} + replica "
                f"start {ph['replica_startup_s']:.1f} + shard {ph['shard_duration_s']:.1f} + publish "
                f"{ph['after_replicas_s']:.1f}; {stage} |"
            )
    if "flatness" in fig:
        fl = fig["flatness"]
        lines += [
            "",
            "| Peak RSS | 2M rows | 10M rows | Change |",
            "|---|---:|---:|---:|",
            f"| engine LR, replicas=1, the replica | {mb(fl['engine_peak_small'])} | {mb(fl['engine_peak_big'])} | "
            f"{fl['growth']:+.1%} |",
        ]
        if fl["naive_peak_big"]:
            lines.append(
                f"| naive LR pipeline | {mb(fl['naive_peak_small'])} | {mb(fl['naive_peak_big'])} | "
                f"{fl['naive_peak_big'] / fl['naive_peak_small'] - 1:+.1%} |"
            )
        big = results["raw"]["big"]
        e = big["engine_lr_r1"]
        lines.append(
            f"| (10M: engine wall {e['wall_s']:.1f} s, duration_s {e['duration_s']:.1f} s"
            + (f"; naive wall {big['naive_lr']['wall_s']:.1f} s" if "naive_lr" in big else "")
            + ") | | | |"
        )
    diag = results.get("diagnostics") or {}
    if diag:
        lines += [
            "",
            f"Fixed costs (1,000-row input; one measurement each) and the {rows:,}-row runs with a bytecode cache:",
            "",
            "| Model | Environment | Naive wall (s), 1k rows | Engine wall (s), 1k rows | Engine phases, 1k rows (s) "
            f"| Naive wall (s), {rows:,} rows | Engine r1 / r2 wall (s), {rows:,} rows |",
            "|---|---|---:|---:|---|---:|---:|",
        ]
        for key, name in MODELS.items():
            for env in ("as_is", "bytecode_cache"):
                n, e = diag[f"tiny_naive_{key}_{env}"], diag[f"tiny_engine_{key}_{env}"]
                ph = e["phases"]
                if env == "as_is":
                    big_naive = fig[key]["naive"]["wall_s"]
                    big_engine = f"{fig[key]['engine_r1']['wall_s']:.2f} / {fig[key]['engine_r2']['wall_s']:.2f}"
                else:
                    big_naive = diag[f"naive_{key}_{env}"]["wall_s"]
                    r1, r2 = diag[f"engine_{key}_r1_{env}"], diag[f"engine_{key}_r2_{env}"]
                    big_engine = f"{r1['wall_s']:.2f} / {r2['wall_s']:.2f}"
                lines.append(
                    f"| {name} | {env} | {n['wall_s']:.2f} | {e['wall_s']:.2f} | before replicas "
                    f"{ph['before_replicas_s']:.1f}, replica start {ph['replica_startup_s']:.1f}, shard "
                    f"{ph['shard_duration_s']:.1f}, publish {ph['after_replicas_s']:.1f} | {big_naive:.2f} | "
                    f"{big_engine} |"
                )
    floors = results.get("floors") or {}
    if floors:
        cores = results["machine"].get("cores") or os.cpu_count() or 1
        lines += [
            "",
            "The floor: the least CPU any Python scorer of this file spends, and the wall time that takes with all "
            f"{cores} cores busy all along (one measurement each; *parse* is the cheaper of pandas' parallel C reader "
            "and Arrow's):",
            "",
            "| Model | Start + imports (s) | Model load (s) | Parse CPU (s) | Predict CPU (s) | Write CPU (s) | "
            "CPU floor (s) | Wall floor (s) | Target needs (s) | Best possible ratio |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for key, name in MODELS.items():
            if key not in floors:
                continue
            fl, steps = floor_figures(floors[key], cores), floors[key]["steps"]
            if key == "lr":  # throughput >= 2.5x the naive pipeline's (process wall)
                needs = fig[key]["naive"]["wall_s"] / 2.5
                best = f"{fig[key]['naive']['wall_s'] / fl['wall_floor_s']:.2f}x naive (target 2.5x)"
            else:  # >= 0.9 of the predict-only limit
                needs = fig[key]["predict_limit"]["predict_s"] / 0.9
                best = f"{fig[key]['predict_limit']['predict_s'] / fl['wall_floor_s']:.2f} of predict-only (target 0.9)"
            lines.append(
                f"| {name} | {fl['start_s'] + steps['import_libraries']['cpu_s']:.2f} | "
                f"{steps['load_model']['cpu_s']:.2f} | {fl['parse_cpu_s']:.2f} (pandas "
                f"{steps['parse_pandas']['cpu_s']:.2f} / {steps['parse_pandas']['wall_s']:.2f} wall, Arrow "
                f"{steps['parse_arrow']['cpu_s']:.2f} / {steps['parse_arrow']['wall_s']:.2f} wall) | "
                f"{steps['predict']['cpu_s']:.2f} | {steps['write']['cpu_s']:.2f} | {fl['cpu_s']:.2f} | "
                f"{fl['wall_floor_s']:.2f} | {needs:.2f} | {best} |"
            )
    lines += ["", "| Target | Model | Basis | Ratio | Threshold | Met |", "|---|---|---|---:|---:|---|"]
    for t in fig["targets"]:
        ratio = f"{t['ratio']:.2f} GiB" if "GiB" in t["target"] else f"{t['ratio']:.2f}"
        lines.append(
            f"| {t['target']} | {t['model']} | {t['basis']} (replicas={t['replicas']}) | {ratio} | "
            f"{t['threshold']} | {'yes' if t['met'] else '**no**'} |"
        )
    return "\n".join(lines) + "\n"
