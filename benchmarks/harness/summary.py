"""Summarising the runs: medians of the least disturbed runs of each configuration, throughputs, the targets, and
the floor (the least CPU any scorer of the file spends)."""

from __future__ import annotations

import statistics
from typing import Any

from harness.data import GIB, MODELS
from harness.noise import is_clean, least_disturbed


def median_of(runs: list[dict[str, Any]], key: str) -> float:
    return statistics.median(r[key] for r in runs)


def _target(model: str, target: str, basis: str, replicas: int, ratio: float, threshold: float, met: bool) -> dict:
    return {
        "model": model,
        "target": target,
        "basis": basis,
        "replicas": replicas,
        "ratio": ratio,
        "threshold": threshold,
        "met": met,
    }


def floor_figures(floor: dict[str, Any], cores: int) -> dict[str, float]:
    """The CPU seconds every scorer must spend (interpreter start, imports, model load, the cheaper parse, predict,
    write) and the wall time that takes with every core busy all along: no run on this machine can be faster."""
    steps = floor["steps"]
    inproc = sum(v["wall_s"] for v in steps.values())
    start_s = max(floor["wall_s"] - inproc, 0.0)  # process start and interpreter (measured from outside)
    parse_cpu = min(steps["parse_pandas"]["cpu_s"], steps["parse_arrow"]["cpu_s"])
    cpu = (
        start_s + steps["import_libraries"]["cpu_s"] + steps["load_model"]["cpu_s"] + parse_cpu
        + steps["predict"]["cpu_s"] + steps["write"]["cpu_s"]
    )
    return {"start_s": start_s, "parse_cpu_s": parse_cpu, "cpu_s": cpu, "wall_floor_s": cpu / cores}


def summarize(raw: dict[str, Any], rows: int, rounds: int) -> dict[str, Any]:
    """Median times over the ``rounds`` least disturbed runs of each configuration (peak RSS: the max over every
    run), throughputs and the target ratios."""
    figures: dict[str, Any] = {}
    measured_runs = {name: runs for name, runs in raw.items() if name != "big"}
    figures["runs"] = {
        name: {"runs": len(runs), "undisturbed": sum(map(is_clean, runs))} for name, runs in measured_runs.items()
    }
    peaks = {name: max(r["peak_rss"] for r in runs) for name, runs in measured_runs.items() if "peak_rss" in runs[0]}
    raw = {name: least_disturbed(runs, rounds) for name, runs in measured_runs.items()} | {"big": raw.get("big")}
    io_runs = raw["io_limit"]
    figures["io_limit"] = {
        "runs": len(io_runs),
        "read_s": median_of(io_runs, "read_s"),
        "write_s": median_of(io_runs, "write_s"),
        "total_s": median_of(io_runs, "total_s"),
        "wall_s": median_of(io_runs, "wall_s"),
        "cpu_s": median_of(io_runs, "cpu_s"),
        "foreign_cores_max": max(r["foreign_cores"] for r in io_runs),
        "peak_rss": peaks["io_limit"],
        "all_total_s": [round(r["total_s"], 3) for r in io_runs],
    }
    figures["io_limit"]["rows_per_s"] = rows / figures["io_limit"]["total_s"]
    targets = []
    for key in MODELS:
        naive, limit = raw[f"naive_{key}"], raw[f"predict_limit_{key}"]
        f: dict[str, Any] = {
            "naive": {
                "runs": len(naive),
                **{
                    k: median_of(naive, k)
                    for k in ("read_s", "predict_s", "write_s", "total_s", "wall_s", "load_model_s", "cpu_s")
                },
                "peak_rss": peaks[f"naive_{key}"],
                "foreign_cores_max": max(r["foreign_cores"] for r in naive),
                "all_wall_s": [round(r["wall_s"], 3) for r in naive],
            },
            "predict_limit": {
                "runs": len(limit),
                "predict_s": median_of(limit, "predict_s"),
                "wall_s": median_of(limit, "wall_s"),
                "cpu_s": median_of(limit, "cpu_s"),
                "peak_rss": peaks[f"predict_limit_{key}"],
                "foreign_cores_max": max(r["foreign_cores"] for r in limit),
                "all_predict_s": [round(r["predict_s"], 3) for r in limit],
            },
        }
        f["naive"]["rows_per_s_wall"] = rows / f["naive"]["wall_s"]
        f["naive"]["rows_per_s_inproc"] = rows / f["naive"]["total_s"]
        f["predict_limit"]["rows_per_s"] = rows / f["predict_limit"]["predict_s"]
        for replicas in (1, 2):
            runs = raw[f"engine_{key}_r{replicas}"]
            every = measured_runs[f"engine_{key}_r{replicas}"]
            e = {
                "runs": len(runs),
                "wall_s": median_of(runs, "wall_s"),
                "duration_s": median_of(runs, "duration_s"),
                "cpu_s": median_of(runs, "cpu_s"),
                "all_wall_s": [round(r["wall_s"], 3) for r in runs],
                "all_duration_s": [r["duration_s"] for r in runs],
                "peak_rss_per_replica": max(max(r["replica_peak_rss"]) for r in every),
                "peak_rss_per_replica_all": [max(r["replica_peak_rss"]) for r in every],
                "polled_rss_per_replica": max(max(r["replica_polled_rss"]) for r in every),
                "cli_peak_rss": max(r["cli_peak_rss"] or 0 for r in every),
                "phases": {k: statistics.median(r["phases"][k] for r in runs) for k in runs[0]["phases"]},
                "foreign_cores": [round(r["foreign_cores"], 2) for r in runs],
                "foreign_cores_max": max(r["foreign_cores"] for r in runs),
                "shards_median_run": sorted(runs, key=lambda r: r["wall_s"])[len(runs) // 2]["shards"],
            }
            e["rows_per_s_wall"] = rows / e["wall_s"]
            e["rows_per_s_duration"] = rows / e["duration_s"]
            f[f"engine_r{replicas}"] = e
        best = max((f["engine_r1"], f["engine_r2"]), key=lambda e: e["rows_per_s_wall"])
        best_r = 1 if best is f["engine_r1"] else 2
        if key == "lr":
            for basis, engine_rate, naive_rate in (
                ("wall", best["rows_per_s_wall"], f["naive"]["rows_per_s_wall"]),
                ("duration_s vs naive in-process", best["rows_per_s_duration"], f["naive"]["rows_per_s_inproc"]),
            ):
                ratio = engine_rate / naive_rate
                targets.append(_target(key, "throughput >= 2.5x naive", basis, best_r, ratio, 2.5, ratio >= 2.5))
            for basis, engine_rate in (("wall", best["rows_per_s_wall"]), ("duration_s", best["rows_per_s_duration"])):
                ratio = engine_rate / figures["io_limit"]["rows_per_s"]
                targets.append(
                    _target(key, "throughput >= 0.8x read+write limit", basis, best_r, ratio, 0.8, ratio >= 0.8)
                )
        else:
            for basis, engine_rate in (("wall", best["rows_per_s_wall"]), ("duration_s", best["rows_per_s_duration"])):
                ratio = engine_rate / f["predict_limit"]["rows_per_s"]
                targets.append(
                    _target(key, "throughput >= 0.9x predict-only limit", basis, best_r, ratio, 0.9, ratio >= 0.9)
                )
        for replicas in (1, 2):
            peak = f[f"engine_r{replicas}"]["peak_rss_per_replica"]
            target = "peak RSS per replica <= 1 GiB"
            targets.append(_target(key, target, f"replicas={replicas}", replicas, peak / GIB, 1.0, peak <= GIB))
        figures[key] = f
    if raw.get("big"):
        big = raw["big"]
        small = figures["lr"]["engine_r1"]["peak_rss_per_replica"]
        large = max(big["engine_lr_r1"]["replica_peak_rss"])
        growth = large / small - 1
        figures["flatness"] = {
            "rows_small": rows,
            "rows_big": big["rows"],
            "engine_peak_small": small,
            "engine_peak_big": large,
            "growth": growth,
            "naive_peak_small": figures["lr"]["naive"]["peak_rss"],
            "naive_peak_big": big.get("naive_lr", {}).get("peak_rss"),
        }
        target = "peak RSS per replica flat within 10% (2M -> 10M)"
        targets.append(_target("lr", target, "replicas=1", 1, 1 + growth, 1.1, abs(growth) <= 0.10))
    figures["targets"] = targets
    return figures
