"""Model environments: the first build's time, and a cached start's overhead against ``model_environment="worker"``.

Scores a small CSV (``--rows``, default 20,000) with an MLflow LogisticRegression whose ``requirements.txt`` pins
``--sklearn`` (default: the worker's own version, so that the same model loads in both modes), with
``batch-scoring score`` and two replicas:

1. ``first_build``: ``--model-environment model`` against an empty cache folder (uv installs from its own cache; the
   build's own time, from the environment's ``environment.json``, is reported beside the run's);
2. ``first_run_cached``: the next run, the first to reuse the cached environment;
3. ``--rounds`` interleaved pairs of ``worker`` and ``model`` (cached) runs: the overhead is the difference of their
   medians.

Writes ``results/<name>.json`` and ``results/<name>.md``.

.. code-block:: bash

    .venv/bin/python benchmarks/bench_model_environment.py --name model_environment [--rounds 5]
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from harness.provenance import code_state, machine_info

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
BIN = Path(sys.executable).parent


def _model(folder: Path, rows: int, sklearn_version: str) -> tuple[Path, Path]:
    import mlflow.sklearn
    import numpy as np
    import pandas as pd
    from mlflow.models import infer_signature
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(7)
    features = [f"f{i}" for i in range(8)]
    train = pd.DataFrame(rng.normal(size=(2000, len(features))), columns=features)
    labels = (train["f0"] + train["f1"] > 0).astype(int)
    model = folder / "model"
    mlflow.sklearn.save_model(
        LogisticRegression().fit(train, labels), str(model), serialization_format="cloudpickle",
        pip_requirements=[f"scikit-learn=={sklearn_version}"], signature=infer_signature(train, labels),
    )
    data = pd.DataFrame(rng.normal(size=(rows, len(features))), columns=features)
    data.insert(0, "id", range(rows))
    source = folder / "in.csv"
    data.to_csv(source, index=False)
    return model, source


def _run(model: Path, source: Path, sink: Path, cache: Path, mode: str) -> float:
    shutil.rmtree(sink, ignore_errors=True)
    started = time.perf_counter()
    subprocess.run(
        [str(BIN / "batch-scoring"), "score", "--model", str(model), "--source", source.as_uri(), "--sink",
         sink.as_uri(), "--passthrough", "id", "--replicas", "2", "--model-environment", mode,
         "--environment-cache-dir", str(cache)],
        check=True, capture_output=True, text=True,
    )
    return round(time.perf_counter() - started, 3)


def main() -> int:
    import sklearn

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--name", default="model_environment", help="results/<name>.json and .md")
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--sklearn", default=sklearn.__version__, help="the scikit-learn the model pins")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-model-env-") as tmp:
        folder = Path(tmp)
        model, source = _model(folder, args.rows, args.sklearn)
        cache, sink = folder / "cache", folder / "out"
        first = _run(model, source, sink, cache, "model")
        (environment,) = [path for path in cache.iterdir() if path.is_dir()]
        build = json.loads((environment / "environment.json").read_text())
        first_cached = _run(model, source, sink, cache, "model")
        runs: dict[str, list[float]] = {"worker": [], "model": []}
        for index in range(args.rounds):  # interleaved, the order alternating, so that drift hits both alike
            for mode in (("worker", "model") if index % 2 == 0 else ("model", "worker")):
                runs[mode].append(_run(model, source, sink, cache, mode))
        size = sum(f.stat().st_size for f in environment.rglob("*") if f.is_file())
    medians = {mode: round(statistics.median(times), 3) for mode, times in runs.items()}
    result: dict[str, Any] = {
        "rows": args.rows, "replicas": 2, "sklearn_pinned": args.sklearn, "rounds": args.rounds,
        "first_build_run_s": first, "build_s": build["build_s"], "packages": len(build["packages"]),
        "environment_mb": round(size / 2**20, 1), "first_run_cached_s": first_cached,
        "runs_s": runs, "median_s": medians, "cached_overhead_s": round(medians["model"] - medians["worker"], 3),
        "machine": machine_info(), "code": code_state(),
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{args.name}.json").write_text(json.dumps(result, indent=2) + "\n")
    (RESULTS / f"{args.name}.md").write_text(
        f"# Model environments ({args.rows:,} rows, 2 replicas, scikit-learn=={args.sklearn} pinned)\n\n"
        "| measure | seconds |\n|---|---|\n"
        f"| first run, building the environment (whole run) | {first:.2f} |\n"
        f"| of which the build ({len(build['packages'])} packages, {result['environment_mb']} MB) "
        f"| {build['build_s']:.2f} |\n"
        f"| first run in the cached environment | {first_cached:.2f} |\n"
        f"| `worker`, median of {args.rounds} | {medians['worker']:.2f} |\n"
        f"| `model` (cached), median of {args.rounds} | {medians['model']:.2f} |\n"
        f"| cached start's overhead (`model` - `worker`) | {result['cached_overhead_s']:+.2f} |\n"
    )
    print((RESULTS / f"{args.name}.md").read_text())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
