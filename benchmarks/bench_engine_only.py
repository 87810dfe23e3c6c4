"""Engine-only re-measurement: ``batch-scoring score`` on the 2M-row data set, LR and HGB, replicas 1 and 2.

Reuses the harness (data, models, process measurement, noise control, interleaved rounds) and runs only the engine
CLI, in two variants: as ``bench_scoring.py`` runs it (the joblib models' input schema is known only after loading
them) and with ``--input-schema`` (f0..f19 Float64: the schema is known before the model loads, so the replica starts
reading while it loads the model). Writes ``results/<name>.json`` (every run) and prints the medians of the 3 least
disturbed runs of each configuration.

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

from harness.data import DATA, FEATURES, RESULTS, generate_data, warm_page_cache
from harness.models import train_models
from harness.noise import least_disturbed, set_patience
from harness.provenance import code_state, machine_info
from harness.rounds import Config, run_rounds
from harness.summary import median_of
from workloads import run_engine

SCHEMA = json.dumps([{"name": name, "type": "Float64"} for name in FEATURES])
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

    set_patience(args.patience)
    code = code_state()
    data = generate_data(args.rows, log)
    models = train_models(log)
    (DATA / "out").mkdir(parents=True, exist_ok=True)
    warm_page_cache(data)
    configs: list[Config] = [
        (label, functools.partial(run_engine, model, data, replicas, label, extra_args=extra))
        for variant, extra in VARIANTS.items()
        for key, model in models.items()
        for replicas in (1, 2)
        for label in [f"engine_{key}_r{replicas}_{variant}"]
    ]

    def describe(name: str, run: dict[str, Any]) -> str:
        run.pop("processes", None)
        shards = ", ".join(
            f"load {s['load_s']:.2f} read {s['read_s']:.2f} predict {s['predict_s']:.2f} of {s['duration_s']:.2f}"
            for s in run["shards"]
        )
        return f"wall {run['wall_s']:.2f}s, duration_s {run['duration_s']:.2f}; {shards}"

    runs = run_rounds(configs, args.rounds, 2 * args.rounds, log, after_run=describe)
    summary = {}
    for label, items in runs.items():
        kept = least_disturbed(items, 3)
        summary[label] = {
            "wall_s": median_of(kept, "wall_s"),
            "duration_s": median_of(kept, "duration_s"),
            "all_wall_s": [round(r["wall_s"], 2) for r in items],
            "max_others": max(r["foreign_cores"] for r in kept),
            "peak_rss_mib": max(max(r["replica_peak_rss"]) for r in items) / 2**20,
            "phases": {k: round(median_of([{"v": r["phases"][k]} for r in kept], "v"), 2) for k in kept[0]["phases"]},
            "shards": kept[len(kept) // 2]["shards"],
        }
        print(f"{label}: {json.dumps(summary[label])}")
    result = {"code": code, "machine": machine_info(), "rows": args.rows, "summary": summary, "runs": runs}
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{args.name}.json").write_text(json.dumps(result, indent=2, default=str))
    log(f"wrote {RESULTS / f'{args.name}.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
