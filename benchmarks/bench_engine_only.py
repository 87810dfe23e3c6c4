"""Engine-only re-measurement: ``batch-scoring score`` on the 2M-row data set, LR and HGB, replicas 1 and 2.

Reuses ``bench_scoring.py``'s data, models, process measurement and noise control, and runs only the engine CLI,
in interleaved rounds, in two variants: as ``bench_scoring.py`` runs it (the joblib models' input schema is known
only after loading them) and with ``--input-schema`` (f0..f19 Float64: the schema is known before the model loads,
so the replica starts reading while it loads the model). Writes ``results/<name>.json`` (every run) and prints the
medians of the 3 least disturbed runs of each configuration.

.. code-block:: bash

    .venv/bin/python benchmarks/bench_engine_only.py --name engine_overlap_after [--rounds 3]
"""

from __future__ import annotations

import argparse
import functools
import json
import sys
import time
from typing import Any

import bench_scoring as b

SCHEMA = json.dumps([{"name": name, "type": "Float64"} for name in b.FEATURES])
VARIANTS = {"as_bench": [], "input_schema": ["--input-schema", SCHEMA]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--name", required=True, help="results/<name>.json")
    parser.add_argument("--rows", type=int, default=2_000_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--patience", type=float, default=6.0, help="minutes during which disturbed runs are redone")
    args = parser.parse_args()
    clock = time.perf_counter()

    def log(text: str) -> None:
        print(f"[{time.perf_counter() - clock:7.1f}s] {text}", file=sys.stderr, flush=True)

    b.NOISE["deadline"] = time.monotonic() + args.patience * 60
    code = b.code_state()
    data = b.generate_data(args.rows, log)
    models = b.train_models(log)
    (b.DATA / "out").mkdir(parents=True, exist_ok=True)
    with open(data, "rb") as f:
        while f.read(64 << 20):
            pass
    runs: dict[str, list[dict[str, Any]]] = {}
    for round_ in range(args.rounds):
        for variant, extra in VARIANTS.items():
            for key, model in models.items():
                for replicas in (1, 2):
                    label = f"engine_{key}_r{replicas}_{variant}"
                    run = b.measured(
                        functools.partial(b.run_engine, model, data, replicas, label, extra_args=extra), label, log
                    )
                    run.pop("processes", None)
                    runs.setdefault(label, []).append(run)
                    shards = ", ".join(
                        f"load {s['load_s']:.2f} read {s['read_s']:.2f} predict {s['predict_s']:.2f} of "
                        f"{s['duration_s']:.2f}"
                        for s in run["shards"]
                    )
                    log(
                        f"round {round_ + 1} {label}: wall {run['wall_s']:.2f}s, duration_s {run['duration_s']:.2f}, "
                        f"others {run['foreign_cores']:.2f}; {shards}"
                    )
    summary = {}
    for label, items in runs.items():
        kept = b.least_disturbed(items, 3)
        summary[label] = {
            "wall_s": b.median_of(kept, "wall_s"),
            "duration_s": b.median_of(kept, "duration_s"),
            "all_wall_s": [round(r["wall_s"], 2) for r in items],
            "max_others": max(r["foreign_cores"] for r in kept),
            "peak_rss_mib": max(max(r["replica_peak_rss"]) for r in items) / 2**20,
            "phases": {k: round(b.median_of([{"v": r["phases"][k]} for r in kept], "v"), 2) for k in kept[0]["phases"]},
            "shards": kept[len(kept) // 2]["shards"],
        }
        print(f"{label}: {json.dumps(summary[label])}")
    result = {"code": code, "machine": b.machine_info(), "rows": args.rows, "summary": summary, "runs": runs}
    b.RESULTS.mkdir(parents=True, exist_ok=True)
    (b.RESULTS / f"{args.name}.json").write_text(json.dumps(result, indent=2, default=str))
    log(f"wrote {b.RESULTS / f'{args.name}.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
