"""The object-store benchmark's figures: runs of a case combined, the upload buffers' bounds, the S3 sink against the
local sink, and the Markdown tables of ``results/object_store.md``."""

from __future__ import annotations

import statistics
from typing import Any

MIB = 1024**2


def mib(value: float | None) -> str:
    return "-" if value is None else f"{value / MIB:,.0f}"


def combine(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Rounds of one case: peak RSS is the max over the rounds, times the median."""
    first = dict(runs[0])
    first["rounds"] = len(runs)
    first["replica_peak_rss"] = [max(peaks) for peaks in zip(*(r["replica_peak_rss"] for r in runs), strict=True)]
    first["driver_peak_rss"] = max(r["driver_peak_rss"] for r in runs)
    first["wall_s"] = statistics.median(r["wall_s"] for r in runs)
    first["summary_duration_s"] = statistics.median(r["summary_duration_s"] for r in runs)
    first["foreign_cores"] = max(r["foreign_cores"] for r in runs)
    first["all_wall_s"] = [round(r["wall_s"], 2) for r in runs]
    first["all_replica_peak_rss"] = [r["replica_peak_rss"] for r in runs]
    return first


def upload_buffer_bound(part_size: int, concurrency: int) -> int:
    """Part buffers one object's writer holds by design: S3ConcurrentWriter (write_concurrency > 1) part_size x
    (concurrency + 1), as its docstring says; s3fs's own writer (write_concurrency = 1) a buffer of part_size plus
    the write that filled it, read out into the part it sends (~2 x part_size)."""
    return part_size * (concurrency + 1) if concurrency > 1 else 2 * part_size


def upload_copies_bound(part_size: int, concurrency: int) -> int:
    """The same with the copies made on the way to the socket on Python 3.11: S3ConcurrentWriter.write slices the
    part out of its buffer (``bytes(buffer[:part_size])``: one transient part), and asyncio's socket transport
    copies the unsent rest of each request body into its own buffer (3.11's ``_SelectorSocketTransport.write``:
    ``data[n:]`` then ``bytearray.extend``), so each part in flight can exist twice: (2 x concurrency + 3) parts for
    the concurrent writer, ~4 parts for s3fs's serial writer."""
    return part_size * (2 * concurrency + 3) if concurrency > 1 else 4 * part_size


def baseline_of(case: dict[str, Any], cases: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The local-sink run with the same input, replicas and part_size."""
    return next(
        (b for b in cases if b["sink"] == "file" and b["source"] == "file" and b["rows"] == case["rows"]
         and b["replicas"] == case["replicas"] and b["part_size"] == case["part_size"]),
        None,
    )


def analyse(cases: list[dict[str, Any]], client_fixed: int, plateau_rows: int) -> dict[str, Any]:
    """Replica peaks as the output grows, S3 overhead over the local sink, multipart and correctness checks."""
    reference = {c["rows"]: c["output_md5"] for c in cases if c["sink"] == "file"}
    multipart = []
    for c in (c for c in cases if c["sink"] == "s3"):
        for obj in c["objects"]:
            multipart.append({
                "case": c["name"], "object": obj["name"], "bytes": obj["bytes"],
                "parts_uploaded": obj["parts_uploaded"], "parts_published": obj["parts_published"],
                "parts_if_cut_at_part_size": obj["parts_if_cut_at_part_size"],
                "uploaded_as_cut": obj["parts_uploaded"] == obj["parts_if_cut_at_part_size"],
            })
    overhead = []
    for c in (c for c in cases if c["sink"] == "s3"):
        base = baseline_of(c, cases)
        if base is None:
            continue
        extra = max(c["replica_peak_rss"]) - max(base["replica_peak_rss"])
        overhead.append({
            "case": c["name"],
            "replica_peak_max": max(c["replica_peak_rss"]),
            "local_sink_peak_max": max(base["replica_peak_rss"]),
            "overhead": extra,
            "overhead_minus_client": extra - client_fixed,
            "upload_buffer_bound": upload_buffer_bound(c["part_size"], c["write_concurrency"]),
            "upload_copies_bound": upload_copies_bound(c["part_size"], c["write_concurrency"]),
            "largest_object": max(o["bytes"] for o in c["objects"]),
        })
    growth: dict[str, dict[str, Any]] = {}
    for c in cases:
        config = c["name"].split("_", 1)[1]
        entry = growth.setdefault(config, {"config": config, "output_bytes": [], "replica_peak": [],
                                           "driver_peak": []})
        entry["output_bytes"].append(c["output_bytes"])
        entry["replica_peak"].append(max(c["replica_peak_rss"]))
        entry["driver_peak"].append(c["driver_peak_rss"])
    plateau = [
        {"case": c["name"], "halves_max_rss_mib": c["replica_halves_max_rss"]}
        for c in cases if c["rows"] >= plateau_rows
    ]
    growth_rows = [g for g in growth.values() if len(g["output_bytes"]) > 1]
    for g in growth_rows:
        g["change_per_step"] = [b / a - 1 for a, b in zip(g["replica_peak"], g["replica_peak"][1:], strict=False)]
    return {
        "rows_out_equal_rows_in": all(c["rows_out"] == c["rows"] for c in cases),
        "outputs_identical_to_local_sink": all(c["output_md5"] == reference.get(c["rows"]) for c in cases),
        "multipart": multipart,
        "all_objects_multipart": all((m["parts_uploaded"] or 0) > 1 for m in multipart),
        "concurrent_writer_parts_exact": all(
            m["uploaded_as_cut"] for m in multipart if not m["case"].split("_w", 1)[1].startswith("1")
        ),
        "s3_client_fixed": client_fixed,
        "s3_overhead": overhead,
        "growth": growth_rows,
        "plateau": plateau,
    }


def markdown(results: dict[str, Any]) -> str:
    cases, a = results["cases"], results["analysis"]
    lines = [
        "| Output | Source → sink | Replicas | part_size | write_conc. | Output bytes | Parts per object: uploaded "
        "(ceil(size/part_size)) | Replica peak RSS (MiB, each) | Driver peak RSS (MiB) | Largest object (MiB) "
        "| Wall (s) | Others (cores) |",
        "|---|---|---:|---:|---:|---:|---|---|---:|---:|---:|---:|",
    ]
    for c in cases:
        parts = " / ".join(
            f"{o['parts_uploaded']} ({o['parts_if_cut_at_part_size']})" if o["parts_uploaded"] else "-"
            for o in c["objects"]
        )
        lines.append(
            f"| {c['size']} | {c['source']} → {c['sink']} | {c['replicas']} | {c['part_size'] // MIB} MiB | "
            f"{c['write_concurrency'] if c['sink'] == 's3' else '-'} | {c['output_bytes']:,} | {parts} | "
            f"{' / '.join(mib(v) for v in c['replica_peak_rss'])} | {mib(c['driver_peak_rss'])} | "
            f"{mib(max(o['bytes'] for o in c['objects']))} | {c['wall_s']:.1f} | {c['foreign_cores']:.2f} |"
        )
    if a["growth"]:
        lines += [
            "",
            "Peak RSS of the largest replica as the output grows (same row width, batch size 100,000):",
            "",
            "| Configuration | Output (MB) | Replica peak (MiB) | Change per step | Driver peak (MiB) |",
            "|---|---|---|---|---|",
        ]
        for g in a["growth"]:
            lines.append(
                f"| {g['config']} | {' → '.join(f'{v / 1e6:,.0f}' for v in g['output_bytes'])} | "
                f"{' → '.join(mib(v) for v in g['replica_peak'])} | "
                f"{', '.join(f'{v:+.0%}' for v in g['change_per_step'])} | "
                f"{' → '.join(mib(v) for v in g['driver_peak'])} |"
            )
    if a["plateau"]:
        lines += [
            "",
            "Level or growing? Largest RSS of each replica (sampled every 0.5 s, MiB) in the first and the second half "
            "of its life:",
            "",
            "| Case | First half → second half, each replica |",
            "|---|---|",
        ]
        for entry in a["plateau"]:
            halves = " / ".join(
                f"{v[0]} → {v[1]}" if v else "-" for _, v in sorted(entry["halves_max_rss_mib"].items())
            )
            lines.append(f"| {entry['case']} | {halves} |")
    lines += [
        "",
        "S3 sink against the local sink (same input, replicas and part_size; largest replica). S3 client "
        f"fixed cost in a replica-like process (imports, client, event loop, threads): {mib(a['s3_client_fixed'])} "
        "MiB.",
        "",
        "| Case | Replica peak (MiB) | Local sink (MiB) | Overhead (MiB) | Overhead − S3 client (MiB) | Part buffers "
        "by design (MiB) | With copies on the way to the socket (MiB) | Largest object (MiB) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for o in a["s3_overhead"]:
        lines.append(
            f"| {o['case']} | {mib(o['replica_peak_max'])} | {mib(o['local_sink_peak_max'])} | "
            f"{o['overhead'] / MIB:+,.0f} | {o['overhead_minus_client'] / MIB:+,.0f} | "
            f"{mib(o['upload_buffer_bound'])} | {mib(o['upload_copies_bound'])} | {mib(o['largest_object'])} |"
        )
    lines += [
        "",
        f"Checks: every output has every row (rows_out = rows_in): **{a['rows_out_equal_rows_in']}**; every output "
        "equals the local sink's byte for byte (md5 of the parts in order): "
        f"**{a['outputs_identical_to_local_sink']}**; every S3 object was uploaded in several multipart parts: "
        f"**{a['all_objects_multipart']}**; with "
        f"write_concurrency > 1 in exactly ceil(size / part_size) parts: **{a['concurrent_writer_parts_exact']}**.",
    ]
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------------------------------------------------
# Orchestration
# --------------------------------------------------------------------------------------------------------------------
