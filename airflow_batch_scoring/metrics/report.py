"""The metrics report: one self-contained HTML page (inline SVG plots, no script, no external resource) written
beside ``metrics.json``: the run and the thresholds, the confusion matrix, the ROC, PR and calibration curves or the
residual quantiles, fairness by group, drift per column against the baseline, and the permutation importance per
feature.

Never imports Airflow.
"""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from typing import Any

REPORT_FILE = "report.html"
_W, _H, _PAD = 300, 240, 40
_COLORS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e")


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _num(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return _e("—" if value is None else value)


def _svg(body: str, title: str, width: int = _W + 2 * _PAD, height: int = _H + 2 * _PAD) -> str:
    return (f'<figure><svg xmlns="http://www.w3.org/2000/svg" role="img" aria-label="{_e(title)}" '
            f'width="{width}" height="{height}" viewBox="0 0 {width} {height}" data-plot="{_e(title)}">'
            f'<title>{_e(title)}</title>{body}</svg><figcaption>{_e(title)}</figcaption></figure>')


def line_chart(title: str, series: Sequence[tuple[str, Sequence[Sequence[float]]]], x_label: str, y_label: str,
               diagonal: bool = False) -> str:
    """Curves on the unit square (``[[x, y, ...], ...]`` per series)."""
    def x(v: float) -> float:
        return _PAD + v * _W

    def y(v: float) -> float:
        return _PAD + (1 - v) * _H

    parts = [f'<rect x="{_PAD}" y="{_PAD}" width="{_W}" height="{_H}" fill="none" stroke="#888"/>']
    for tick in (0, 0.5, 1):
        parts.append(f'<text x="{x(tick):.1f}" y="{_PAD + _H + 14}" font-size="10" text-anchor="middle">{tick}</text>')
        parts.append(f'<text x="{_PAD - 6}" y="{y(tick) + 3:.1f}" font-size="10" text-anchor="end">{tick}</text>')
    parts.append(f'<text x="{_PAD + _W / 2}" y="{_PAD + _H + 30}" font-size="11" text-anchor="middle">'
                 f'{_e(x_label)}</text>')
    parts.append(f'<text x="12" y="{_PAD + _H / 2}" font-size="11" text-anchor="middle" '
                 f'transform="rotate(-90 12 {_PAD + _H / 2})">{_e(y_label)}</text>')
    if diagonal:
        parts.append(f'<line x1="{x(0)}" y1="{y(0)}" x2="{x(1)}" y2="{y(1)}" stroke="#bbb" stroke-dasharray="4"/>')
    for i, (name, points) in enumerate(series):
        color = _COLORS[i % len(_COLORS)]
        path = " ".join(f"{x(p[0]):.1f},{y(p[1]):.1f}" for p in points)
        parts.append(f'<polyline fill="none" stroke="{color}" stroke-width="2" points="{path}"/>')
        parts.append(f'<text x="{_PAD + 6}" y="{_PAD + 14 + 13 * i}" font-size="11" fill="{color}">{_e(name)}</text>')
    return _svg("".join(parts), title)


def bar_chart(title: str, bars: Sequence[tuple[str, float | None]], limit: float | None = None) -> str:
    """Horizontal bars (a value per label), with an optional limit line."""
    known = [v for _, v in bars if v is not None]
    top = max([*known, limit or 0, 1e-12])
    row = 18
    height = row * len(bars) + 24
    width = 460
    label_w = 150
    scale = (width - label_w - 70) / top
    parts = []
    for i, (label, value) in enumerate(bars):
        top_y = 10 + i * row
        parts.append(f'<text x="{label_w - 6}" y="{top_y + 12}" font-size="11" text-anchor="end">{_e(label)}</text>')
        if value is not None:
            bar = max(value * scale, 0.5)
            parts.append(f'<rect x="{label_w}" y="{top_y + 2}" width="{bar:.1f}" height="{row - 5}" '
                         f'fill="{_COLORS[0]}"/>')
        parts.append(f'<text x="{label_w + (value or 0) * scale + 4:.1f}" y="{top_y + 12}" font-size="10">'
                     f'{_num(value)}</text>')
    if limit is not None:
        lx = label_w + limit * scale
        parts.append(f'<line x1="{lx:.1f}" y1="6" x2="{lx:.1f}" y2="{10 + row * len(bars)}" stroke="#d62728" '
                     f'stroke-dasharray="3"/>')
    return _svg("".join(parts), title, width, height)


def _table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    head = "".join(f"<th>{_e(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{_num(c)}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table>{f'<thead><tr>{head}</tr></thead>' if head else ''}<tbody>{body}</tbody></table>"


def _confusion(matrix: Mapping[str, Any]) -> str:
    labels, cells = matrix["labels"], matrix["matrix"]
    top = max((max(r) for r in cells), default=1) or 1
    head = "<tr><th>label \\ predicted</th>" + "".join(f"<th>{_e(label)}</th>" for label in labels) + "</tr>"
    rows = "".join(
        f"<tr><th>{_e(label)}</th>" + "".join(
            f'<td style="background:rgba(31,119,180,{0.08 + 0.7 * c / top:.2f})">{c:,}</td>' for c in row) + "</tr>"
        for label, row in zip(labels, cells, strict=True)
    )
    return f'<figure data-plot="confusion matrix"><table class="cm">{head}{rows}</table>' \
           "<figcaption>confusion matrix</figcaption></figure>"


def render_report(record: Mapping[str, Any]) -> str:
    """The report of a metrics run (``metrics.json``'s document) as one HTML page."""
    model = record.get("model") or {}
    sections = [
        f"<h1>Metrics: {_e(model.get('resolved_uri') or model.get('uri'))}</h1>",
        f"<p class=\"{'pass' if record.get('passed') else 'fail'}\">"
        f"{'Every threshold met' if record.get('passed') else 'Thresholds missed'}</p>",
        _table([], [
            ["task", record.get("task")], ["rows", record.get("rows")], ["label column", record.get("label_column")],
            ["model digest", model.get("digest")], ["model version", model.get("version")],
            ["input", (record.get("input") or {}).get("uri")], ["scored output", record.get("scored_output")],
            ["run", f"{record.get('job_id')} ({record.get('attempt')})"], ["finished", record.get("finished_at")],
        ]),
    ]
    if record.get("thresholds"):
        sections.append("<h2>Thresholds</h2>" + _table(
            ["metric", "threshold", "value", "passed"],
            [[t["metric"], t["threshold"], t["value"], "yes" if t["passed"] else "NO"] for t in record["thresholds"]]))
    c = record.get("classification")
    if c:
        sections.append("<h2>Classification</h2>")
        sections.append(_table(["metric", "value"], [[k, v] for k, v in (record.get("summary") or {}).items()
                                                     if not k.startswith(("max_", "min_", "prediction_"))]))
        sections.append('<div class="plots">' + _confusion(c["confusion_matrix"]))
        if c.get("roc_curve"):
            sections.append(line_chart(f"ROC curve (AUC {c['roc_auc']:.4f})", [("ROC", c["roc_curve"]["points"])],
                                       "false positive rate", "true positive rate", diagonal=True))
            sections.append(line_chart(f"precision-recall curve (AP {c['average_precision']:.4f})",
                                       [("PR", c["pr_curve"]["points"])], "recall", "precision"))
        if c.get("calibration"):
            sections.append(line_chart("calibration", [("model", c["calibration"]["points"])],
                                       "mean predicted probability", "fraction positive", diagonal=True))
        sections.append("</div>")
        sections.append(_table(["class", "precision", "recall", "F1", "support"],
                               [[k, v["precision"], v["recall"], v["f1"], v["support"]]
                                for k, v in c["per_class"].items()]))
    r = record.get("regression")
    if r and r.get("rows"):
        sections.append("<h2>Regression</h2>" + _table(["metric", "value"], [
            [k, r.get(k)] for k in ("rmse", "mae", "r2", "mean_error")]))
        sections.append(bar_chart("residual quantiles (label - prediction)",
                                  [(f"q{float(q) * 100:g}", abs(v) if v is not None else None)
                                   for q, v in r["residual_quantiles"].items()]))
    fairness = record.get("fairness")
    if fairness:
        sections.append(f"<h2>Fairness (positive class {_e(fairness['positive_label'])})</h2>")
        for attribute, found in fairness["attributes"].items():
            groups = found["groups"]
            sections.append(f"<h3>{_e(attribute)}</h3>" + _table(
                ["demographic parity difference", "disparate impact ratio", "equal opportunity difference",
                 "equalised odds difference"],
                [[found["demographic_parity_difference"], found["disparate_impact_ratio"],
                  found["equal_opportunity_difference"], found["equalized_odds_difference"]]]))
            sections.append(bar_chart(f"selection rate by {attribute}",
                                      [(g, v["selection_rate"]) for g, v in groups.items()]))
            sections.append(_table(["group", "size", "selection rate", "TPR", "FPR"], [
                [g, v["size"], v["selection_rate"], v["true_positive_rate"], v["false_positive_rate"]]
                for g, v in groups.items()]))
    drift = record.get("drift")
    if drift:
        columns = drift["columns"]
        sections.append("<h2>Drift against the baseline</h2>")
        sections.append(bar_chart("PSI per column", [(name, v.get("psi")) for name, v in columns.items()], 0.2))
        sections.append(_table(["column", "PSI", "KS", "KS max error", "rows", "baseline rows"], [
            [name, v.get("psi"), v.get("ks"), v.get("ks_max_error"), v.get("rows"), v.get("baseline_rows")]
            for name, v in columns.items()]))
    importance = record.get("importance")
    if importance:
        features = importance["features"]
        sections.append(
            f"<h2>Permutation importance</h2><p>The drop in {_e(importance['metric'])} (from "
            f"{_num(importance['baseline_score'])}) when a feature's values are shuffled, mean over "
            f"{_e(importance['repeats'])} shuffle(s) of a uniform sample of {_e(importance['sample_rows'])} labeled "
            "rows.</p>")
        sections.append(bar_chart(f"permutation importance ({importance['metric']} drop)",
                                  [(f["feature"], f["mean"]) for f in features]))
        sections.append(_table(["feature", "importance (mean)", "std"],
                               [[f["feature"], f["mean"], f["std"]] for f in features]))
    style = ("body{font-family:sans-serif;margin:24px;color:#222}table{border-collapse:collapse;margin:8px 0}"
             "td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}th{background:#f4f4f4}"
             ".plots{display:flex;flex-wrap:wrap;gap:16px;align-items:flex-start}figure{margin:0}"
             ".pass{color:#2ca02c;font-weight:bold}.fail{color:#d62728;font-weight:bold}")
    return (f"<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>Metrics report</title>"
            f"<style>{style}</style></head><body>{''.join(sections)}</body></html>")
