"""Before/after: the same configurations measured for two checkouts in the same rounds, summarised side by side.

The noise of a configuration is the spread of its own runs in this comparison: (max - min) / median of the kept runs
of each side, the larger of the two sides, at least :data:`MIN_NOISE`. A change (median after / median before - 1)
is a regression only when it is larger than that noise; with a single run a side there is no noise to measure, and
no verdict.
"""

from __future__ import annotations

import statistics
from typing import Any

from harness.noise import is_clean, least_disturbed
from harness.report import mb

MIN_NOISE = 0.01


def spread(values: list[float]) -> dict[str, float]:
    median = statistics.median(values)
    return {
        "min": min(values),
        "median": median,
        "max": max(values),
        "spread": (max(values) - min(values)) / median if median else 0.0,
    }


def verdict(before: dict[str, Any], after: dict[str, Any], runs: int, higher_is_worse: bool = True) -> dict[str, Any]:
    """Compare two :func:`spread` results; ``runs``: the fewest runs either side kept."""
    change = after["median"] / before["median"] - 1 if before["median"] else 0.0
    noise = max(before["spread"], after["spread"], MIN_NOISE)
    if runs < 2:
        word = "no verdict (1 run a side)"
    elif change > noise:
        word = "REGRESSION" if higher_is_worse else "better"
    elif change < -noise:
        word = "better" if higher_is_worse else "REGRESSION"
    else:
        word = "within noise"
    return {"ratio": 1 + change, "change": change, "noise": noise, "verdict": word}


def summarize_comparison(raw: dict[str, list[dict[str, Any]]], labels: tuple[str, str], rounds: int) -> dict:
    """Per configuration (``name@side`` runs): wall time and peak RSS per replica of each side (min / median / max of
    the ``rounds`` least disturbed runs), the ratio after / before and the verdict."""
    configs = list(dict.fromkeys(name.split("@")[0] for name in raw))
    figures: dict[str, Any] = {}
    for config in configs:
        sides = {label: least_disturbed(raw[f"{config}@{label}"], rounds) for label in labels}
        kept = min(len(runs) for runs in sides.values())
        entry: dict[str, Any] = {"runs": {label: len(raw[f"{config}@{label}"]) for label in labels}, "kept": kept}
        for metric, values in (
            ("wall_s", lambda r: r["wall_s"]),
            ("peak_rss_per_replica", lambda r: max(r["replica_peak_rss"])),
            ("cpu_s", lambda r: r["cpu_s"]),
        ):
            by_side = {label: spread([values(r) for r in runs]) for label, runs in sides.items()}
            entry[metric] = {**by_side, **verdict(by_side[labels[0]], by_side[labels[1]], kept)}
        entry["undisturbed"] = {label: sum(map(is_clean, raw[f"{config}@{label}"])) for label in labels}
        entry["foreign_cores_max"] = max(r["foreign_cores"] for runs in sides.values() for r in runs)
        entry["all_wall_s"] = {label: [round(r["wall_s"], 3) for r in raw[f"{config}@{label}"]] for label in labels}
        figures[config] = entry
    figures["regressions"] = [
        f"{config} {metric}" for config in configs for metric in ("wall_s", "peak_rss_per_replica")
        if figures[config][metric]["verdict"] == "REGRESSION"
    ]
    return figures


def comparison_markdown(results: dict[str, Any]) -> str:
    """The before/after tables: wall time, then peak RSS per replica and CPU."""
    fig, sides = results["figures"], results["sides"]
    before, after = (s["label"] for s in sides)
    names = {s["label"]: f"{s['label']} (`{s['revision']}`)" for s in sides}
    rows, rounds = results["config"]["rows"], results["config"]["rounds"]
    lines = [
        f"Rows: {rows:,}; the engine CLI of both checkouts in the same {rounds} or more rounds, interleaved (the side "
        f"that goes first alternates); figures over the {rounds} least disturbed runs of each side. Noise: the larger "
        f"(max - min) / median of the two sides, at least {MIN_NOISE:.0%}; a change beyond it is flagged.",
        "",
        f"| Configuration | {names[before]} wall (s): min / median / max | {names[after]} wall (s): min / median / max "
        "| After / before | Noise | Verdict | Others |",
        "|---|---:|---:|---:|---:|---|---:|",
    ]
    configs = [c for c in fig if c != "regressions"]
    for config in configs:
        w = fig[config]["wall_s"]
        cells = [f"{w[s]['min']:.2f} / **{w[s]['median']:.2f}** / {w[s]['max']:.2f}" for s in (before, after)]
        lines.append(
            f"| {config} | {cells[0]} | {cells[1]} | {w['ratio']:.3f} | ±{w['noise']:.1%} | {w['verdict']} | "
            f"{fig[config]['foreign_cores_max']:.2f} |"
        )
    lines += [
        "",
        "| Configuration | Peak RSS per replica (median): before → after | Ratio | Noise | Verdict | "
        "CPU (s, median): before → after | Runs (undisturbed): before / after |",
        "|---|---:|---:|---:|---|---:|---:|",
    ]
    for config in configs:
        m, c, f = fig[config]["peak_rss_per_replica"], fig[config]["cpu_s"], fig[config]
        lines.append(
            f"| {config} | {mb(m[before]['median'])} → {mb(m[after]['median'])} | {m['ratio']:.3f} | "
            f"±{m['noise']:.1%} | {m['verdict']} | {c[before]['median']:.1f} → {c[after]['median']:.1f} | "
            f"{f['runs'][before]} ({f['undisturbed'][before]}) / {f['runs'][after]} ({f['undisturbed'][after]}) |"
        )
    checks = results.get("output_checks") or {}
    same = all(c["same_ids_in_order"] and not c["prediction_mismatches"] for c in checks.values())
    lines += [
        "",
        f"Outputs of both sides compared in {len(checks)} configurations: "
        + ("identical ids and predictions." if same else f"**differ**: {checks}"),
        "",
        "Regressions beyond noise: " + (", ".join(fig["regressions"]) or "none") + ".",
    ]
    return "\n".join(lines) + "\n"
