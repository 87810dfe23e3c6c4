"""Benchmark: batch scoring with the engine (``batch-scoring score``) against a naive pandas pipeline and the limits.

    .venv/bin/python benchmarks/bench_scoring.py            # full run: 2M rows, 3 rounds, plus the 10M-row memory run
    .venv/bin/python benchmarks/bench_scoring.py --quick    # smoke run: 200k rows, 1 round, no 10M run

What runs, each measurement in a fresh child process (so each has its own peak RSS):

- ``naive``: ``pandas.read_csv`` of the whole file -> ``model.predict`` -> ``to_csv`` of (id, prediction).
- ``predict_limit``: ``model.predict`` only, on preloaded arrays (DataFrames with feature names) in 100k-row batches,
  all cores; only the predict calls are timed.
- ``io_limit``: ``pyarrow.csv.read_csv`` of the whole file (multi-threaded) + ``pyarrow.csv.write_csv`` of
  (id, f0) - the fastest read+write of the same data without a model; both timed.
- ``engine``: the project's own CLI, ``batch-scoring score ... --replicas R --batch-size 100000``; wall time of the
  command (process start included) and the summary's ``duration_s``; peak RSS of every replica process, polled every
  0.1 s through psutil (RSS) and ``/proc/<pid>/status`` (VmHWM, the kernel's high-water mark, so no peak is missed
  between polls); the per-shard read_s/predict_s/write_s of the output's ``_manifest.json``.
- ``profile``: the engine's own components (CsvReader + rebatch, Predictor.predict, CsvPartWriter) run one after
  the other in one process, to measure each stage's cost without the overlap (and contention) of the pipeline.

Peak RSS is the kernel's high-water mark of each process's own memory map (VmHWM: read by the child itself at the end
of its work, and polled every 0.1 s for every process of the tree). ``ru_maxrss`` from ``os.wait4`` is kept as a
cross-check only: it also counts the image a child was forked from (the benchmark process itself) before its exec.
Thread variables (OMP/OPENBLAS/MKL) are left as they are: the engine sets its own.

The machine may be shared: every run records the CPU that other processes used meanwhile (machine busy time from
/proc/stat minus the measured tree's and the benchmark's own CPU time). Each run waits for a quiet second first; after
``--rounds`` interleaved rounds, configurations with fewer than ``--rounds`` undisturbed runs are measured again until
the ``--patience`` deadline; the figures are medians of the least disturbed runs.

Results go to ``benchmarks/results/latest.json`` (``quick.json`` with --quick) and a markdown table next to it.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
DATA = HERE / "data"
RESULTS = HERE / "results"
FEATURES = [f"f{i}" for i in range(20)]
NAMES = ["id"] + FEATURES
BATCH = 100_000
CHUNK = 500_000
SEED = 20240611
MODELS = {"lr": "LogisticRegression", "hgb": "HistGradientBoostingClassifier(max_iter=100)"}
GIB = 1024**3


# --------------------------------------------------------------------------------------------------------------------
# Data and models
# --------------------------------------------------------------------------------------------------------------------


def _chunk(index: int, rows: int):
    """Rows ``[index * CHUNK, index * CHUNK + rows)`` of the data set: ids and 20 N(0, 1) features rounded to 1e-6."""
    import numpy as np

    rng = np.random.default_rng([SEED, index])
    x = np.round(rng.standard_normal((rows, len(FEATURES))), 6)
    ids = np.arange(index * CHUNK, index * CHUNK + rows, dtype=np.int64)
    return ids, x


def _labels(x):
    """A non-linear binary target, so that the boosted trees have something to learn."""
    import numpy as np

    w = np.random.default_rng([SEED, 999]).normal(size=x.shape[1])
    logit = x @ w * 0.5 + 1.5 * np.sin(2 * x[:, 0]) * x[:, 1] + 0.8 * (x[:, 2] ** 2 - 1) - 0.7 * np.abs(x[:, 3])
    noise = np.random.default_rng([SEED, 998]).logistic(size=len(x))
    return (logit + noise > 0).astype(np.int64)


def data_file(rows: int) -> Path:
    return DATA / f"scoring_{rows}.csv"


def generate_data(rows: int, log) -> Path:
    """Write ``rows`` rows (id, f0..f19) as CSV without header, once; the first rows are the same for every size."""
    import pyarrow as pa
    import pyarrow.csv as pa_csv

    path = data_file(rows)
    meta = path.with_suffix(".json")
    if path.exists() and meta.exists() and json.loads(meta.read_text()).get("size") == path.stat().st_size:
        return path
    DATA.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    tmp = path.with_suffix(".csv.tmp")
    with open(tmp, "wb") as f:
        for index in range((rows + CHUNK - 1) // CHUNK):
            ids, x = _chunk(index, min(CHUNK, rows - index * CHUNK))
            table = pa.Table.from_arrays([pa.array(ids)] + [pa.array(x[:, i]) for i in range(x.shape[1])], names=NAMES)
            pa_csv.write_csv(table, f, write_options=pa_csv.WriteOptions(include_header=False))
    tmp.rename(path)
    meta.write_text(json.dumps({"rows": rows, "seed": SEED, "size": path.stat().st_size}))
    log(
        f"generated {path.name}: {rows:,} rows, {path.stat().st_size / 1e6:,.0f} MB "
        f"in {time.perf_counter() - started:.1f}s"
    )
    return path


def train_models(log) -> dict[str, Path]:
    """Train both models on 100k rows of the same distribution (a DataFrame, so they keep feature names)."""
    import joblib
    import numpy as np
    import pandas as pd
    import sklearn

    folder = DATA / "models"
    paths = {key: folder / f"{key}.joblib" for key in MODELS}
    meta = folder / "models.json"
    if all(p.exists() for p in paths.values()) and meta.exists():
        if json.loads(meta.read_text()).get("sklearn") == sklearn.__version__:
            return paths
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.linear_model import LogisticRegression

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng([SEED, 1000])
    x = np.round(rng.standard_normal((100_000, len(FEATURES))), 6)
    frame = pd.DataFrame(x, columns=FEATURES)
    y = _labels(x)
    info = {"sklearn": sklearn.__version__, "train_rows": len(frame), "positive_share": float(y.mean())}
    started = time.perf_counter()
    lr = LogisticRegression(max_iter=1000).fit(frame, y)
    # early_stopping=False: exactly 100 trees (the default turns early stopping on above 10k rows).
    hgb = HistGradientBoostingClassifier(max_iter=100, early_stopping=False, random_state=0).fit(frame, y)
    info.update(
        lr_train_accuracy=float(lr.score(frame, y)),
        hgb_train_accuracy=float(hgb.score(frame, y)),
        hgb_n_iter=int(hgb.n_iter_),
        train_s=round(time.perf_counter() - started, 2),
    )
    joblib.dump(lr, paths["lr"])
    joblib.dump(hgb, paths["hgb"])
    meta.write_text(json.dumps(info))
    log(f"trained models: {info}")
    return paths


# --------------------------------------------------------------------------------------------------------------------
# Child processes (one measurement each): they print one JSON line on stdout
# --------------------------------------------------------------------------------------------------------------------


def _self_rss() -> dict[str, int | None]:
    """This process's peak RSS: VmHWM of its own memory map (ru_maxrss also counts the image it was forked from)."""
    import resource

    return {
        "self_maxrss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
        "self_hwm_kb": _vm_hwm_kb(os.getpid()),
    }


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
        **_self_rss(),
    }


def child_predict_limit(model_path: str, data: str) -> dict[str, Any]:
    import joblib
    import numpy as np
    import pandas as pd
    import pyarrow as pa
    import pyarrow.csv as pa_csv

    model = joblib.load(model_path)
    table = pa_csv.read_csv(
        data,
        read_options=pa_csv.ReadOptions(column_names=NAMES),
        convert_options=pa_csv.ConvertOptions(column_types={f: pa.float64() for f in FEATURES}),
    )
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
    return {"rows": rows, "predict_s": t1 - t0, "total_s": t1 - t0, **_self_rss()}


def child_io_limit(data: str, out: str) -> dict[str, Any]:
    import pyarrow as pa
    import pyarrow.csv as pa_csv

    t0 = time.perf_counter()
    table = pa_csv.read_csv(
        data,
        read_options=pa_csv.ReadOptions(column_names=NAMES, use_threads=True),
        convert_options=pa_csv.ConvertOptions(column_types={f: pa.float64() for f in FEATURES}),
    )
    t1 = time.perf_counter()
    pa_csv.write_csv(table.select(["id", "f0"]), out, write_options=pa_csv.WriteOptions(include_header=False))
    t2 = time.perf_counter()
    return {"rows": table.num_rows, "read_s": t1 - t0, "write_s": t2 - t1, "total_s": t2 - t0, **_self_rss()}


def child_profile(model_path: str, data: str, out: str) -> dict[str, Any]:
    """The engine's own stages, one after the other (no overlap), timed separately: busy time of each stage."""
    import fsspec
    import pyarrow as pa

    from airflow_batch_scoring.flavors import load_predictor
    from airflow_batch_scoring.io.readers import make_reader
    from airflow_batch_scoring.io.readers.columns import ReadPlan
    from airflow_batch_scoring.io.textblocks import iter_blocks
    from airflow_batch_scoring.io.writers import make_writer
    from airflow_batch_scoring.job import DataSpec, ModelSpec, Piece, ScoringJob
    from airflow_batch_scoring.runtime.engine import rebatch

    fields = ScoringJob.__dataclass_fields__  # the engine's read block size (renamed part_size at some point)
    block_size = (fields.get("part_size") or fields.get("read_block_size")).default
    fs = fsspec.filesystem("file")
    uri = Path(data).as_uri()
    spec = DataSpec(uri=uri, format="csv", header=False, columns=NAMES)
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
        features = predictor._features(batch.select(names))
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
        **_self_rss(),
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
    table = pa_csv.read_csv(
        data,
        read_options=pa_csv.ReadOptions(column_names=NAMES),
        convert_options=pa_csv.ConvertOptions(column_types={f: pa.float64() for f in FEATURES}),
    )
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
    return {"rows": len(frame), "steps": steps, **_self_rss()}


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


def run_child(args: argparse.Namespace) -> int:
    kind, rest = args.child, args.child_args
    if kind == "naive":
        result = child_naive(*rest)
    elif kind == "predict_limit":
        result = child_predict_limit(*rest)
    elif kind == "io_limit":
        result = child_io_limit(*rest)
    elif kind == "profile":
        result = child_profile(*rest)
    elif kind == "floor":
        result = child_floor(*rest)
    else:
        raise SystemExit(f"unknown child {kind}")
    print(json.dumps(result), flush=True)
    return 0


# --------------------------------------------------------------------------------------------------------------------
# Measuring a process tree
# --------------------------------------------------------------------------------------------------------------------


def _busy_cpu_s() -> float:
    """CPU seconds the whole machine has been busy (every process), from /proc/stat."""
    import psutil

    t = psutil.cpu_times()
    return t.user + t.nice + t.system + t.irq + t.softirq + getattr(t, "steal", 0.0)


#: Noise control on a shared machine: wait for a quiet moment before each measurement and redo a measurement that
#: other processes disturbed, until the deadline (set by main from --patience); after it, measure as things are.
NOISE = {"deadline": 0.0, "max_wait_s": 15.0, "quiet_cores": 0.2, "max_foreign_cores": 0.3, "attempts": 2}


def wait_quiet() -> float:
    """Wait (at most NOISE['max_wait_s'], never past the deadline) for a second in which other processes use less
    than NOISE['quiet_cores'] cores; return the time waited."""
    started = time.perf_counter()
    limit = min(NOISE["max_wait_s"], max(0.0, NOISE["deadline"] - time.monotonic()))
    while time.perf_counter() - started < limit:
        before = _busy_cpu_s()
        time.sleep(1.0)
        if _busy_cpu_s() - before < NOISE["quiet_cores"]:
            break
    return time.perf_counter() - started


def measured(run, label: str, log) -> dict[str, Any]:
    """Run one measurement after a quiet moment; redo it (up to NOISE['attempts'] times, before the deadline) when
    other processes took more than NOISE['max_foreign_cores'] cores on average meanwhile; keep the cleanest."""
    tries = []
    for attempt in range(int(NOISE["attempts"])):
        waited = wait_quiet()
        result = run()
        result["waited_for_quiet_s"] = round(waited, 1)
        tries.append(result)
        clean = result["foreign_cores"] <= NOISE["max_foreign_cores"]
        if clean or time.monotonic() > NOISE["deadline"] or attempt == NOISE["attempts"] - 1:
            break
        log(f"    {label}: other processes used {result['foreign_cores']:.2f} cores meanwhile; measuring again")
    best = min(tries, key=lambda r: r["foreign_cores"])
    best["attempts"] = len(tries)
    return best


def _vm_hwm_kb(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def _role(cmdline: list[str]) -> str:
    if "run-shard" in cmdline and "--shard" in cmdline:
        return f"replica-{cmdline[cmdline.index('--shard') + 1]}"
    if "run-shard" in cmdline:  # prestarted (--await-job): its shard arrives on stdin
        return "replica-prestarted"
    return "other:" + " ".join(cmdline[:4])


def measure(cmd: list[str], poll_s: float = 0.1, env: dict[str, str] | None = None) -> dict[str, Any]:
    """Run ``cmd``; return its wall time, output, ``ru_maxrss`` (wait4) and per-process peak RSS of its tree."""
    import resource

    import psutil

    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        load_before = os.getloadavg()[0]
        busy_before, self_before = _busy_cpu_s(), resource.getrusage(resource.RUSAGE_SELF)
        started = time.perf_counter()
        popen = subprocess.Popen(cmd, stdout=out, stderr=err, env=env or dict(os.environ))
        root = psutil.Process(popen.pid)
        procs: dict[int, dict[str, Any]] = {}
        status = rusage = None

        def sample(process: psutil.Process, role: str | None) -> None:
            try:
                entry = procs.get(process.pid)
                if entry is not None and entry["role"].startswith("other:"):
                    # first seen between fork and exec (still the parent's image): look again
                    role_now = _role(process.cmdline())
                    if role_now != entry["role"]:
                        entry = None
                if entry is None:
                    cmdline = process.cmdline()
                    entry = procs[process.pid] = {
                        "pid": process.pid,
                        "role": role or _role(cmdline),
                        "max_rss": 0,
                        "vm_hwm": 0,
                        "first_seen_s": time.perf_counter() - started,
                        "create_time": process.create_time(),
                    }
                rss = process.memory_info().rss
                hwm = _vm_hwm_kb(process.pid)
                entry["max_rss"] = max(entry["max_rss"], rss)
                entry["vm_hwm"] = max(entry["vm_hwm"], (hwm or 0) * 1024)
                entry["last_seen_s"] = time.perf_counter() - started
            except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
                pass

        while True:
            pid, status, rusage = os.wait4(popen.pid, os.WNOHANG)
            if pid:
                break
            sample(root, "main")
            try:
                children = root.children(recursive=True)
            except psutil.NoSuchProcess:
                children = []
            for child in children:
                sample(child, None)
            time.sleep(poll_s)
        wall = time.perf_counter() - started
        self_after = resource.getrusage(resource.RUSAGE_SELF)
        busy = _busy_cpu_s() - busy_before
        popen.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read().decode(errors="replace"), err.read().decode(errors="replace")
    if popen.returncode != 0:
        raise RuntimeError(f"{cmd} failed with code {popen.returncode}:\n{stdout[-3000:]}\n{stderr[-3000:]}")
    root_create = procs.get(popen.pid, {}).get("create_time")
    for entry in procs.values():
        entry["started_after_s"] = round(entry.pop("create_time") - root_create, 3) if root_create else None
    tree_cpu = rusage.ru_utime + rusage.ru_stime
    own_cpu = (self_after.ru_utime - self_before.ru_utime) + (self_after.ru_stime - self_before.ru_stime)
    foreign = max(0.0, busy - tree_cpu - own_cpu)
    return {
        "wall_s": wall,
        "stdout": stdout,
        "stderr": stderr,
        "ru_maxrss": rusage.ru_maxrss * 1024,
        "cpu_s": tree_cpu,
        "foreign_cpu_s": foreign,
        "foreign_cores": foreign / wall,
        "processes": sorted(procs.values(), key=lambda e: e["role"]),
        "load_before": load_before,
        "load_after": os.getloadavg()[0],
    }


def _json_tail(text: str) -> dict[str, Any]:
    start = text.find("{")
    try:
        return json.loads(text[start:])
    except json.JSONDecodeError:
        return json.loads(text.strip().splitlines()[-1])


def run_python_child(kind: str, *args: str, env: dict[str, str] | None = None) -> dict[str, Any]:
    m = measure([sys.executable, str(Path(__file__).resolve()), "--child", kind, *map(str, args)], env=env)
    result = _json_tail(m["stdout"])
    main = next((p for p in m["processes"] if p["role"] == "main"), {})
    result.update(
        wall_s=m["wall_s"],
        peak_rss=max((result.get("self_hwm_kb") or 0) * 1024, main.get("vm_hwm") or 0),
        ru_maxrss=m["ru_maxrss"],
        polled_rss=main.get("max_rss"),
        polled_hwm=main.get("vm_hwm"),
        load_before=m["load_before"],
        load_after=m["load_after"],
        cpu_s=m["cpu_s"],
        foreign_cpu_s=m["foreign_cpu_s"],
        foreign_cores=m["foreign_cores"],
    )
    return result


def batch_scoring_cli() -> str:
    candidate = Path(sys.executable).parent / "batch-scoring"
    return str(candidate) if candidate.exists() else (shutil.which("batch-scoring") or "batch-scoring")


def run_engine(
    model: Path,
    data: Path,
    replicas: int,
    label: str,
    keep: bool = False,
    env: dict[str, str] | None = None,
    extra_args: list[str] | None = None,
) -> dict[str, Any]:
    sink = DATA / "out" / label
    shutil.rmtree(sink, ignore_errors=True)
    cmd = [
        batch_scoring_cli(),
        "score",
        "--model",
        str(model),
        "--source",
        data.as_uri(),
        "--sink",
        sink.as_uri() + "/",
        "--columns",
        ",".join(NAMES),
        "--passthrough",
        "id",
        "--replicas",
        str(replicas),
        "--batch-size",
        str(BATCH),
        *(extra_args or []),
    ]
    m = measure(cmd, env=env)
    summary = _json_tail(m["stdout"])
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


# --------------------------------------------------------------------------------------------------------------------
# Orchestration
# --------------------------------------------------------------------------------------------------------------------


def code_state() -> dict[str, Any]:
    """The engine's code as measured: HEAD and a digest of the uncommitted changes (read-only git commands)."""
    import hashlib

    root = HERE.parent

    def git(*args: str) -> str:
        try:
            return subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, timeout=30).stdout
        except (OSError, subprocess.SubprocessError):
            return ""

    diff = git("diff", "HEAD", "--", "airflow_batch_scoring")
    return {
        "head": git("rev-parse", "HEAD").strip(),
        "uncommitted_engine_changes": bool(diff),
        "engine_diff_sha256": hashlib.sha256(diff.encode()).hexdigest()[:16] if diff else None,
    }


def machine_info() -> dict[str, Any]:
    import importlib.util

    import numpy
    import pandas
    import psutil
    import pyarrow
    import sklearn

    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")), "?")
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "ram_gib": round(psutil.virtual_memory().total / GIB, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "numpy": numpy.__version__,
        "pandas": pandas.__version__,
        "pyarrow": pyarrow.__version__,
        "sklearn": sklearn.__version__,
        "thread_env": {k: v for k, v in os.environ.items() if any(s in k for s in ("OMP", "BLAS", "MKL", "ARROW"))},
        # Start-up costs depend on it: without .pyc files every interpreter compiles pandas, pyarrow, scikit-learn.
        "bytecode": {
            "PYTHONDONTWRITEBYTECODE": os.environ.get("PYTHONDONTWRITEBYTECODE"),
            "PYTHONPYCACHEPREFIX": os.environ.get("PYTHONPYCACHEPREFIX"),
            "pandas_pyc_installed": os.path.exists(importlib.util.cache_from_source(pandas.__file__)),
        },
        "loadavg_at_start": os.getloadavg(),
    }


def _compare_outputs(naive_csv: Path, engine_sink: Path) -> dict[str, Any]:
    """Compare the engine's output (parts in shard order) with the naive pipeline's, row by row."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.csv as pa_csv

    def read(path: Path) -> pa.Table:
        return pa_csv.read_csv(path, read_options=pa_csv.ReadOptions(column_names=["id", "prediction"]))

    naive = read(naive_csv)
    engine = pa.concat_tables([read(p) for p in sorted(engine_sink.glob("part-*.csv"))])
    same_ids = naive.column("id").equals(engine.column("id"))
    diff = int(np.sum(naive.column("prediction").to_numpy() != engine.column("prediction").to_numpy()))
    return {
        "rows_naive": naive.num_rows,
        "rows_engine": engine.num_rows,
        "same_ids_in_order": same_ids,
        "prediction_mismatches": diff,
    }


def median_of(runs: list[dict[str, Any]], key: str) -> float:
    return statistics.median(r[key] for r in runs)


def least_disturbed(runs: list[dict[str, Any]], count: int) -> list[dict[str, Any]]:
    """The ``count`` runs during which other processes used the least CPU."""
    return sorted(runs, key=lambda r: r["foreign_cores"])[:count]


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
                targets.append(
                    {
                        "model": key,
                        "target": "throughput >= 2.5x naive",
                        "basis": basis,
                        "replicas": best_r,
                        "ratio": ratio,
                        "threshold": 2.5,
                        "met": ratio >= 2.5,
                    }
                )
            for basis, engine_rate in (("wall", best["rows_per_s_wall"]), ("duration_s", best["rows_per_s_duration"])):
                ratio = engine_rate / figures["io_limit"]["rows_per_s"]
                targets.append(
                    {
                        "model": key,
                        "target": "throughput >= 0.8x read+write limit",
                        "basis": basis,
                        "replicas": best_r,
                        "ratio": ratio,
                        "threshold": 0.8,
                        "met": ratio >= 0.8,
                    }
                )
        else:
            for basis, engine_rate in (("wall", best["rows_per_s_wall"]), ("duration_s", best["rows_per_s_duration"])):
                ratio = engine_rate / f["predict_limit"]["rows_per_s"]
                targets.append(
                    {
                        "model": key,
                        "target": "throughput >= 0.9x predict-only limit",
                        "basis": basis,
                        "replicas": best_r,
                        "ratio": ratio,
                        "threshold": 0.9,
                        "met": ratio >= 0.9,
                    }
                )
        for replicas in (1, 2):
            peak = f[f"engine_r{replicas}"]["peak_rss_per_replica"]
            targets.append(
                {
                    "model": key,
                    "target": "peak RSS per replica <= 1 GiB",
                    "basis": f"replicas={replicas}",
                    "replicas": replicas,
                    "ratio": peak / GIB,
                    "threshold": 1.0,
                    "met": peak <= GIB,
                }
            )
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
        targets.append(
            {
                "model": "lr",
                "target": "peak RSS per replica flat within 10% (2M -> 10M)",
                "basis": "replicas=1",
                "replicas": 1,
                "ratio": 1 + growth,
                "threshold": 1.1,
                "met": abs(growth) <= 0.10,
            }
        )
    figures["targets"] = targets
    return figures


def _mb(value: float | None) -> str:
    return "-" if value is None else f"{value / 2**20:,.0f} MiB"


def is_clean(run: dict[str, Any]) -> bool:
    return run["foreign_cores"] <= NOISE["max_foreign_cores"]


def run_rounds(
    models: dict[str, Path], data: Path, out: Path, rounds: int, max_rounds: int, log
) -> tuple[dict[str, list[dict[str, Any]]], dict[str, Any]]:
    """Measure every configuration once per round, interleaved. After ``rounds`` rounds, and until the patience
    deadline (at most ``max_rounds`` rounds), measure again the configurations with fewer than ``rounds`` undisturbed
    runs (other processes under NOISE['max_foreign_cores'] cores); summarize() takes the least disturbed ones."""
    configs: list[tuple[str, Any]] = [
        ("io_limit", functools.partial(run_python_child, "io_limit", data, out / "io.csv"))
    ]
    for key, model in models.items():
        configs.append(
            (f"naive_{key}", functools.partial(run_python_child, "naive", model, data, out / f"n_{key}.csv"))
        )
        configs.append((f"predict_limit_{key}", functools.partial(run_python_child, "predict_limit", model, data)))
        for replicas in (1, 2):
            label = f"engine_{key}_r{replicas}"
            configs.append((label, functools.partial(run_engine, model, data, replicas, label, keep=True)))
    raw: dict[str, list[dict[str, Any]]] = {name: [] for name, _ in configs}
    checks: dict[str, Any] = {}
    for round_index in range(max(rounds, max_rounds)):
        if round_index < rounds:
            todo = configs
        elif time.monotonic() > NOISE["deadline"]:
            break
        else:
            todo = [(name, run) for name, run in configs if sum(map(is_clean, raw[name])) < rounds]
            if not todo:
                break
        log(f"round {round_index + 1}: {', '.join(name for name, _ in todo)}")
        for name, run in todo:
            waited = wait_quiet()
            r = run()
            r.update(round=round_index, waited_for_quiet_s=round(waited, 1))
            raw[name].append(r)
            if name.startswith("engine_"):
                key, replicas = name.split("_")[1], name.rsplit("_r", 1)[1]
                if f"{key}_r{replicas}" not in checks and (out / f"n_{key}.csv").exists():
                    checks[f"{key}_r{replicas}"] = _compare_outputs(out / f"n_{key}.csv", Path(r["sink"]))
                shutil.rmtree(r["sink"], ignore_errors=True)
                text = (
                    f"wall {r['wall_s']:.2f}s duration_s {r['duration_s']:.2f}, replica peak "
                    f"{', '.join(map(_mb, r['replica_peak_rss']))}, phases "
                    + ", ".join(f"{k} {v:.2f}" for k, v in r["phases"].items())
                    + "; shards "
                    + "; ".join(
                        f"read {x['read_s']:.2f} predict {x['predict_s']:.2f} write {x['write_s']:.2f} of "
                        f"{x['duration_s']:.2f}"
                        for x in r["shards"]
                    )
                )
            elif name.startswith("naive_"):
                text = (
                    f"wall {r['wall_s']:.2f}s (read {r['read_s']:.2f} predict {r['predict_s']:.2f} "
                    f"write {r['write_s']:.2f}), peak {_mb(r['peak_rss'])}"
                )
            elif name == "io_limit":
                text = f"read {r['read_s']:.2f}s write {r['write_s']:.2f}s, peak {_mb(r['peak_rss'])}"
            else:
                text = f"predict {r['predict_s']:.2f}s"
            log(f"  {name}: {text}; others {r['foreign_cores']:.2f} cores{'' if is_clean(r) else ' (disturbed)'}")
        if round_index >= rounds - 1:
            for key in models:
                (out / f"n_{key}.csv").unlink(missing_ok=True)
    for path in out.glob("*.csv"):
        path.unlink()
    return raw, checks


def bytecode_env(folder: Path) -> dict[str, str]:
    """The environment with a bytecode cache (this machine sets PYTHONDONTWRITEBYTECODE=1 and the virtualenv holds no
    .pyc files, so every interpreter compiles pandas, pyarrow and scikit-learn from source at each start)."""
    env = dict(os.environ)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env["PYTHONPYCACHEPREFIX"] = str(folder)
    return env


def run_diagnostics(models: dict[str, Path], data: Path, out: Path, log) -> dict[str, Any]:
    """Fixed costs: the engine and the naive pipeline on a 1,000-row file (start-up, imports, model load, publish),
    as the machine is, and with a bytecode cache; then the 2M-row engine runs again with the bytecode cache."""
    tiny = generate_data(1_000, log)
    result: dict[str, Any] = {"tiny_rows": 1_000}
    with tempfile.TemporaryDirectory(prefix="bench-pycache-") as cache:
        envs = {"as_is": None, "bytecode_cache": bytecode_env(Path(cache))}
        # fill the cache once (not measured)
        run_python_child("naive", models["hgb"], tiny, out / "tiny.csv", env=envs["bytecode_cache"])
        run_engine(models["hgb"], tiny, 1, "tiny", env=envs["bytecode_cache"])
        for name, env in envs.items():
            for key in MODELS:
                naive = measured(
                    functools.partial(run_python_child, "naive", models[key], tiny, out / "tiny.csv", env=env),
                    f"tiny naive {key} {name}",
                    log,
                )
                engine = measured(
                    functools.partial(run_engine, models[key], tiny, 1, "tiny", env=env), f"tiny engine {name}", log
                )
                result[f"tiny_naive_{key}_{name}"] = {
                    k: naive[k] for k in ("wall_s", "total_s", "load_model_s", "cpu_s")
                }
                result[f"tiny_engine_{key}_{name}"] = {
                    k: engine[k] for k in ("wall_s", "duration_s", "phases", "cpu_s", "replica_peak_rss")
                }
                log(
                    f"  tiny {key} {name}: naive wall {naive['wall_s']:.2f}s, engine wall {engine['wall_s']:.2f}s "
                    f"(phases {engine['phases']})"
                )
        (out / "tiny.csv").unlink(missing_ok=True)
        env = envs["bytecode_cache"]
        for key in MODELS:
            naive = measured(
                functools.partial(run_python_child, "naive", models[key], data, out / "naive.csv", env=env),
                f"naive {key} bytecode_cache",
                log,
            )
            (out / "naive.csv").unlink(missing_ok=True)
            result[f"naive_{key}_bytecode_cache"] = naive
            for replicas in (1, 2):
                engine = measured(
                    functools.partial(run_engine, models[key], data, replicas, "bytecode", env=env),
                    f"engine {key} r{replicas} bytecode_cache",
                    log,
                )
                result[f"engine_{key}_r{replicas}_bytecode_cache"] = engine
                log(
                    f"  {key} r{replicas} with bytecode cache: naive wall {naive['wall_s']:.2f}s, engine wall "
                    f"{engine['wall_s']:.2f}s duration_s {engine['duration_s']:.2f} (phases {engine['phases']})"
                )
    return result


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
        f"{io['cpu_s']:.1f} | {_mb(io['peak_rss'])} | {io['foreign_cores_max']:.2f} | "
        f"read {io['read_s']:.2f} + write {io['write_s']:.2f}; process "
        f"wall {io['wall_s']:.2f} |"
    )
    for key, name in MODELS.items():
        f = fig[key]
        n, p = f["naive"], f["predict_limit"]
        lines.append(
            f"| {name} | naive pandas pipeline (process wall) | {n['wall_s']:.2f} | {n['rows_per_s_wall']:,.0f} | "
            f"{n['cpu_s']:.1f} | {_mb(n['peak_rss'])} | {n['foreign_cores_max']:.2f} | "
            f"in-process {n['total_s']:.2f} ({n['rows_per_s_inproc']:,.0f} "
            f"rows/s): read {n['read_s']:.2f} + predict {n['predict_s']:.2f} + write {n['write_s']:.2f} |"
        )
        lines.append(
            f"| {name} | predict-only limit: 100k batches, all cores | {p['predict_s']:.2f} | {p['rows_per_s']:,.0f} "
            f"| - | {_mb(p['peak_rss'])} | {p['foreign_cores_max']:.2f} | predict calls only; whole data preloaded |"
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
                f"{e['cpu_s']:.1f} | {_mb(e['peak_rss_per_replica'])} per replica | {e['foreign_cores_max']:.2f} | "
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
            f"| engine LR, replicas=1, the replica | {_mb(fl['engine_peak_small'])} | {_mb(fl['engine_peak_big'])} | "
            f"{fl['growth']:+.1%} |",
        ]
        if fl["naive_peak_big"]:
            lines.append(
                f"| naive LR pipeline | {_mb(fl['naive_peak_small'])} | {_mb(fl['naive_peak_big'])} | "
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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=None, help="rows of the main data set (default 2,000,000)")
    parser.add_argument("--quick", action="store_true", help="smoke run: 200k rows, 1 round, no 10M-row run")
    parser.add_argument("--rounds", type=int, default=None, help="rounds of every measurement (default 3; quick 1)")
    parser.add_argument("--big-rows", type=int, default=10_000_000, help="rows of the memory-flatness data set")
    parser.add_argument("--skip-big", action="store_true", help="skip the memory-flatness run")
    parser.add_argument("--skip-naive-big", action="store_true", help="skip the naive pipeline on the big data set")
    parser.add_argument("--keep-big", action="store_true", help="keep the big data file afterwards")
    parser.add_argument(
        "--patience",
        type=float,
        default=None,
        help="minutes (from the start) during which disturbed configurations are measured again (default 12; quick 3)",
    )
    parser.add_argument(
        "--max-rounds", type=int, default=8, help="rounds at most, re-measuring disturbed configurations (default 8)"
    )
    parser.add_argument("--no-diagnostics", action="store_true", help="skip the start-up cost diagnostics")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("child_args", nargs="*", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return run_child(args)

    rows = args.rows or (200_000 if args.quick else 2_000_000)
    rounds = args.rounds or (1 if args.quick else 3)
    skip_big = args.skip_big or args.quick
    clock = time.perf_counter()

    def log(text: str) -> None:
        print(f"[{time.perf_counter() - clock:7.1f}s] {text}", file=sys.stderr, flush=True)

    patience = args.patience if args.patience is not None else (3.0 if args.quick else 12.0)
    NOISE["deadline"] = time.monotonic() + patience * 60
    info = machine_info()
    code_at_start = code_state()
    log(f"machine: {info}")
    data = generate_data(rows, log)
    models = train_models(log)
    out = DATA / "out"
    out.mkdir(parents=True, exist_ok=True)
    with open(data, "rb") as f:  # warm the page cache: every measurement reads from memory
        while f.read(64 << 20):
            pass
    raw, checks = run_rounds(models, data, out, rounds, args.max_rounds, log)
    log(f"output checks: {checks}")
    def per_model(kind: str) -> dict[str, Any]:
        """One ``kind`` child per model (its output file removed afterwards)."""
        results = {}
        for key, model in models.items():
            results[key] = measured(
                functools.partial(run_python_child, kind, model, data, out / f"{kind}.csv"), kind, log
            )
            (out / f"{kind}.csv").unlink(missing_ok=True)
        return results

    profiles = per_model("profile")
    for key, profile in profiles.items():
        log(f"profile {key}: {profile}")
    floors = per_model("floor")
    for key, floor in floors.items():
        log(f"floor {key}: {floor_figures(floor, os.cpu_count() or 1)}")
    diagnostics = {} if args.no_diagnostics else run_diagnostics(models, data, out, log)
    if not skip_big:
        big_rows = args.big_rows
        big_data = generate_data(big_rows, log)
        with open(big_data, "rb") as f:
            while f.read(64 << 20):
                pass
        big: dict[str, Any] = {"rows": big_rows, "size": big_data.stat().st_size}
        big["engine_lr_r1"] = measured(
            functools.partial(run_engine, models["lr"], big_data, 1, "engine_big"), "big engine", log
        )
        e = big["engine_lr_r1"]
        log(f"big engine lr r1: wall {e['wall_s']:.2f}s, replica peak {', '.join(map(_mb, e['replica_peak_rss']))}")
        if not args.skip_naive_big:
            big["naive_lr"] = measured(
                functools.partial(run_python_child, "naive", models["lr"], big_data, out / "naive_big.csv"),
                "big naive",
                log,
            )
            (out / "naive_big.csv").unlink(missing_ok=True)
            log(f"big naive lr: wall {big['naive_lr']['wall_s']:.2f}s, peak {_mb(big['naive_lr']['peak_rss'])}")
        raw["big"] = big
        if not args.keep_big:
            big_data.unlink()
            big_data.with_suffix(".json").unlink(missing_ok=True)
    shutil.rmtree(out, ignore_errors=True)
    figures = summarize(raw, rows, rounds)
    results = {
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": info,
        "code": {"at_start": code_at_start, "at_end": code_state()},
        "config": {
            "rows": rows,
            "rounds": rounds,
            "batch_size": BATCH,
            "data_file": str(data),
            "data_bytes": data.stat().st_size,
            "quick": args.quick,
            "big_rows": None if skip_big else args.big_rows,
            "models": MODELS,
            "model_info": json.loads((DATA / "models" / "models.json").read_text()),
        },
        "figures": figures,
        "profiles": profiles,
        "floors": floors,
        "diagnostics": diagnostics,
        "output_checks": checks,
        "raw": raw,
        "loadavg_at_end": os.getloadavg(),
        "noise_control": {k: v for k, v in NOISE.items() if k != "deadline"} | {"patience_min": patience},
        "total_benchmark_s": round(time.perf_counter() - clock, 1),
    }
    write_results("quick" if args.quick else "latest", results, markdown(results), log)
    return 0


def write_results(name: str, results: dict[str, Any], table: str, log) -> None:
    """Write ``results/<name>.json`` and ``results/<name>.md`` (the table), and print the table."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{name}.json").write_text(json.dumps(results, indent=2, default=str))
    (RESULTS / f"{name}.md").write_text(table)
    print(table)
    log(f"wrote {RESULTS / f'{name}.json'} and {RESULTS / f'{name}.md'}")


if __name__ == "__main__":
    raise SystemExit(main())
