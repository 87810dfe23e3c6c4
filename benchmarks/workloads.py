"""The contenders: what the benchmarks measure, each run as a fresh child process (so each has its own peak RSS).

- ``naive``: ``pandas.read_csv`` of the whole file -> ``model.predict`` -> ``to_csv`` of (id, prediction).
- ``predict_limit``: ``model.predict`` only, on preloaded arrays (DataFrames with feature names) in 100k-row batches,
  all cores; only the predict calls are timed.
- ``io_limit``: ``pyarrow.csv.read_csv`` of the whole file (multi-threaded) + ``pyarrow.csv.write_csv`` of
  (id, f0) - the fastest read+write of the same data without a model; both timed.
- ``profile``: the engine's own components (CsvReader + rebatch, Predictor.predict, CsvPartWriter) run one after the
  other in one process, to measure each stage's cost without the overlap (and contention) of the pipeline.
- ``floor``: the least work any Python scorer of the file must do, timed step by step in wall and CPU seconds.
- the engine: the project's own CLI, ``batch-scoring score ... --replicas R --batch-size 100000`` (:func:`run_engine`).

The Python children run as ``python benchmarks/workloads.py <kind> <args...>`` and print one JSON line on stdout;
:func:`python_child` measures one from outside.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any

from harness.data import BATCH, DATA, FEATURES, NAMES
from harness.measure import json_tail, measure, run_script, self_rss


def child_naive(model_path: str, data: str, out: str) -> dict[str, Any]:
    import joblib
    import pandas as pd

    t = time.perf_counter()
    model = joblib.load(model_path)
    t0 = time.perf_counter()
    df = pd.read_csv(data, header=None, names=NAMES)
    t1 = time.perf_counter()
    prediction = model.predict(df[FEATURES])
    t2 = time.perf_counter()
    result = df[["id"]].copy()
    result["prediction"] = prediction
    result.to_csv(out, index=False, header=False)
    t3 = time.perf_counter()
    return {
        "rows": len(df),
        "load_model_s": t0 - t,
        "read_s": t1 - t0,
        "predict_s": t2 - t1,
        "write_s": t3 - t2,
        "total_s": t3 - t0,
        **self_rss(),
    }


def _read_features(data: str):
    """The whole file as an Arrow table (multi-threaded), features as float64."""
    import pyarrow as pa
    import pyarrow.csv as pa_csv

    return pa_csv.read_csv(
        data,
        read_options=pa_csv.ReadOptions(column_names=NAMES, use_threads=True),
        convert_options=pa_csv.ConvertOptions(column_types={f: pa.float64() for f in FEATURES}),
    )


def child_predict_limit(model_path: str, data: str) -> dict[str, Any]:
    import joblib
    import numpy as np
    import pandas as pd

    model = joblib.load(model_path)
    table = _read_features(data)
    x = np.ascontiguousarray(np.column_stack([table.column(f).to_numpy() for f in FEATURES]))
    rows = len(x)
    del table
    frames = [pd.DataFrame(x[i : i + BATCH], columns=FEATURES, copy=False) for i in range(0, rows, BATCH)]
    model.predict(frames[0].iloc[:100])  # warm-up (thread pools), not timed
    outputs = []
    t0 = time.perf_counter()
    for frame in frames:
        outputs.append(model.predict(frame))
    t1 = time.perf_counter()
    assert sum(len(o) for o in outputs) == rows
    return {"rows": rows, "predict_s": t1 - t0, "total_s": t1 - t0, **self_rss()}


def child_io_limit(data: str, out: str) -> dict[str, Any]:
    import pyarrow.csv as pa_csv

    t0 = time.perf_counter()
    table = _read_features(data)
    t1 = time.perf_counter()
    pa_csv.write_csv(table.select(["id", "f0"]), out, write_options=pa_csv.WriteOptions(include_header=False))
    t2 = time.perf_counter()
    return {"rows": table.num_rows, "read_s": t1 - t0, "write_s": t2 - t1, "total_s": t2 - t0, **self_rss()}


def child_profile(model_path: str, data: str, out: str) -> dict[str, Any]:
    """The engine's own stages, one after the other (no overlap), timed separately: busy time of each stage."""
    import fsspec
    import pyarrow as pa

    from airflow_batch_scoring.flavors import load_predictor
    from airflow_batch_scoring.io.readers import make_reader
    from airflow_batch_scoring.io.readers.columns import ReadPlan
    from airflow_batch_scoring.io.textblocks import iter_blocks
    from airflow_batch_scoring.io.writers import make_writer
    from airflow_batch_scoring.job import ModelSpec, Piece, ScoringJob
    from airflow_batch_scoring.runtime.shard_stages import rebatch
    from airflow_batch_scoring.specs import FileSpec

    fields = ScoringJob.__dataclass_fields__  # the engine's read block size (renamed part_size at some point)
    block_size = (fields.get("part_size") or fields.get("read_block_size")).default
    fs = fsspec.filesystem("file")
    uri = Path(data).as_uri()
    spec = FileSpec(uri=uri, format="csv", header=False, columns=tuple(NAMES))
    predictor = load_predictor(
        ModelSpec(uri=model_path, path=model_path, flavor="sklearn"), probabilities=False, output_schema=None
    )
    plan = ReadPlan(model_columns=list(predictor.input_schema.columns), coerce=True, passthrough=["id"])
    names = [c.name for c in predictor.input_schema.columns]

    t0 = time.perf_counter()
    with open(data, "rb") as f:
        raw_bytes = sum(len(block) for _, block in iter_blocks(f, 0, os.path.getsize(data), block_size))
    t1 = time.perf_counter()
    reader = make_reader(spec, plan, fs, block_size=block_size, batch_size=BATCH)
    batches = list(rebatch(reader.read(Piece(uri, 0, -1)), BATCH))
    t2 = time.perf_counter()
    to_pandas_s = model_s = 0.0
    results = []
    for batch in batches:
        a = time.perf_counter()
        features = predictor.features(batch.select(names))  # an EstimatorPredictor (scikit-learn)
        b = time.perf_counter()
        predictor.model.predict(features)
        to_pandas_s += b - a
        model_s += time.perf_counter() - b
    t3 = time.perf_counter()
    for batch in batches:  # the engine's full predict step (conversion + predict + output table)
        outputs = predictor.predict(batch.select(names))
        results.append(
            pa.Table.from_arrays([batch.column("id")] + outputs.columns, names=["id"] + outputs.column_names)
        )
    t4 = time.perf_counter()
    writer = make_writer("csv", fs, out)
    for result in results:
        writer.write(result)
    rows_out = writer.close()
    t5 = time.perf_counter()
    return {
        "rows": sum(b.num_rows for b in batches),
        "rows_out": rows_out,
        "batches": len(batches),
        "block_size": block_size,
        "raw_block_read_s": t1 - t0,
        "raw_bytes": raw_bytes,
        "reader_s": t2 - t1,
        "features_to_pandas_s": to_pandas_s,
        "model_predict_s": model_s,
        "engine_predict_step_s": t4 - t3,
        "writer_s": t5 - t4,
        **self_rss(),
    }


def child_floor(model_path: str, data: str, out: str) -> dict[str, Any]:
    """The least work any Python scorer of this file must do, each step timed in wall and CPU seconds: import the
    data libraries, load the model (imports scikit-learn), parse the whole file with the fastest parser here (and with
    Arrow's, for comparison), predict, write (id, prediction)."""
    import resource

    def clock() -> tuple[float, float]:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        return time.perf_counter(), usage.ru_utime + usage.ru_stime

    steps: dict[str, dict[str, float]] = {}
    last = clock()

    def step(name: str) -> None:
        nonlocal last
        now = clock()
        steps[name] = {"wall_s": now[0] - last[0], "cpu_s": now[1] - last[1]}
        last = clock()

    import numpy as np
    import pandas as pd
    import pyarrow as pa
    import pyarrow.csv as pa_csv

    step("import_libraries")
    import joblib

    model = joblib.load(model_path)
    step("load_model")
    frame = pd.read_csv(data, header=None, names=NAMES)  # pandas 3.1 parses a local file on every core
    step("parse_pandas")
    table = _read_features(data)
    step("parse_arrow")
    del table
    x = np.ascontiguousarray(frame[FEATURES].to_numpy())
    batches = [pd.DataFrame(x[i : i + BATCH], columns=FEATURES, copy=False) for i in range(0, len(x), BATCH)]
    last = clock()
    prediction = np.concatenate([model.predict(batch) for batch in batches])
    step("predict")
    pa_csv.write_csv(
        pa.table({"id": frame["id"].to_numpy(), "prediction": prediction}), out,
        write_options=pa_csv.WriteOptions(include_header=False),
    )
    step("write")
    return {"rows": len(frame), "steps": steps, **self_rss()}


CHILDREN = {
    "naive": child_naive,
    "predict_limit": child_predict_limit,
    "io_limit": child_io_limit,
    "profile": child_profile,
    "floor": child_floor,
}


def python_child(kind: str, *args: Any, env: dict[str, str] | None = None) -> dict[str, Any]:
    """Measure one Python child (``kind`` of :data:`CHILDREN`) from outside; its JSON with the measurement."""
    return run_script(Path(__file__).resolve(), kind, *map(str, args), env=env)


def batch_scoring_cli() -> list[str]:
    """The installed ``batch-scoring`` command (next to this interpreter, else on PATH)."""
    candidate = Path(sys.executable).parent / "batch-scoring"
    return [str(candidate) if candidate.exists() else (shutil.which("batch-scoring") or "batch-scoring")]


def run_engine(
    model: Path,
    data: Path,
    replicas: int,
    label: str,
    keep: bool = False,
    env: dict[str, str] | None = None,
    extra_args: list[str] | None = None,
    cli: list[str] | None = None,
) -> dict[str, Any]:
    """Measure ``batch-scoring score`` (``cli``: the command, default the installed one) of ``data`` with ``model``:
    wall time, the summary, the manifest's shard times, every replica's peak RSS and the phases of the command."""
    sink = DATA / "out" / label
    shutil.rmtree(sink, ignore_errors=True)
    cmd = [
        *(cli or batch_scoring_cli()), "score",
        "--model", str(model),
        "--source", data.as_uri(),
        "--sink", sink.as_uri() + "/",
        "--columns", ",".join(NAMES),
        "--passthrough", "id",
        "--replicas", str(replicas),
        "--batch-size", str(BATCH),
        *(extra_args or []),
    ]  # fmt: skip
    m = measure(cmd, env=env)
    summary = json_tail(m["stdout"])
    manifest = json.loads((sink / "_manifest.json").read_text())
    replicas_seen = [p for p in m["processes"] if p["role"].startswith("replica-")]
    if not keep:
        shutil.rmtree(sink, ignore_errors=True)
    shards = [
        {
            k: s.get(k, 0.0)  # load_s: reports before it existed have none
            for k in ("shard", "rows_in", "rows_out", "duration_s", "load_s", "read_s", "predict_s", "write_s")
        }
        for s in manifest["shards"]
    ]
    before = max((p["started_after_s"] or 0.0) for p in replicas_seen)
    lifetime = max(p["last_seen_s"] - (p["started_after_s"] or 0.0) for p in replicas_seen)
    phases = {
        "before_replicas_s": before,  # CLI start, imports, model digest, planning, until the replicas exist
        "replica_lifetime_s": lifetime,  # the slowest replica, from its creation to its last poll (+-0.1 s)
        # run_shard: (model load, unless prestarted) + scoring + report
        "shard_duration_s": max(s["duration_s"] for s in shards),
        "after_replicas_s": m["wall_s"] - before - lifetime,  # reading reports, publishing, CLI exit
    }
    phases["replica_startup_s"] = phases["replica_lifetime_s"] - phases["shard_duration_s"]
    return {
        "replicas": replicas,
        "phases": phases,
        "rows": summary["rows_in"],
        "rows_out": summary["rows_out"],
        "wall_s": m["wall_s"],
        "duration_s": summary["duration_s"],
        "summary_rows_per_s": summary["rows_per_s"],
        "manifest_duration_s": manifest["duration_s"],
        "shards": shards,
        "replica_peak_rss": [p["vm_hwm"] for p in replicas_seen],
        "replica_polled_rss": [p["max_rss"] for p in replicas_seen],
        "replica_started_after_s": [p["started_after_s"] for p in replicas_seen],
        "replica_lifetime_s": [round(p["last_seen_s"] - p["first_seen_s"], 2) for p in replicas_seen],
        "cli_peak_rss": next((p["vm_hwm"] for p in m["processes"] if p["role"] == "main"), None),
        "tree_ru_maxrss": m["ru_maxrss"],
        "processes": m["processes"],
        "load_before": m["load_before"],
        "load_after": m["load_after"],
        "cpu_s": m["cpu_s"],
        "foreign_cpu_s": m["foreign_cpu_s"],
        "foreign_cores": m["foreign_cores"],
        "sink": str(sink),
    }


def compare_outputs(reference: Path, engine_sink: Path, names: tuple[str, str] = ("naive", "engine")) -> dict[str, Any]:
    """Compare the engine's output (parts in shard order) with a reference, row by row: the naive pipeline's
    (id, prediction) CSV, or another engine output folder."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.csv as pa_csv

    def read(path: Path) -> pa.Table:
        return pa_csv.read_csv(path, read_options=pa_csv.ReadOptions(column_names=["id", "prediction"]))

    def parts(folder: Path) -> pa.Table:
        return pa.concat_tables([read(p) for p in sorted(folder.glob("part-*.csv"))])

    naive = parts(reference) if reference.is_dir() else read(reference)
    engine = parts(engine_sink)
    same_ids = naive.column("id").equals(engine.column("id"))
    diff = int(np.sum(naive.column("prediction").to_numpy() != engine.column("prediction").to_numpy()))
    return {
        f"rows_{names[0]}": naive.num_rows,
        f"rows_{names[1]}": engine.num_rows,
        "same_ids_in_order": same_ids,
        "prediction_mismatches": diff,
    }


def main(argv: list[str]) -> int:
    """Run one child: ``workloads.py <kind> <args...>``; print its result as one JSON line."""
    kind, *rest = argv
    if kind not in CHILDREN:
        raise SystemExit(f"unknown child {kind!r}; one of {', '.join(CHILDREN)}")
    print(json.dumps(CHILDREN[kind](*rest)), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
