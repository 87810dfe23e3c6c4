"""Benchmark: publishing a run of many shards to an object store (S3 API, SeaweedFS), and the requests it makes.

    .venv/bin/python benchmarks/bench_publish.py                 # 1,000 shards, 3 rounds (~3 min)
    .venv/bin/python benchmarks/bench_publish.py --shards 100    # smoke run

A run of N replicas stages N parts; the driver then reads N shard reports and publishes: it removes the previous
output, moves every part into the sink, writes the manifest and ``_SUCCESS``. Each of those steps is one or more
store requests, so with 1,000 replicas the publish is bounded by requests, not bytes. This measures it in isolation:

- A SeaweedFS server (``weed mini``, a real S3 API) is started on 127.0.0.1 the way the tests start it
  (``tests/support/servers.py: start_seaweedfs``), into ``benchmarks/data/publish/`` (removed at the end).
- Input: N small local CSV files (20 rows each); the model a LogisticRegression on the test suite's features.
- Each round runs the real driver (``driver.prepare.prepare_job`` / ``driver.run.execute_job``) with N replicas into
  ``s3://bench/out`` (the second and later rounds replace the previous round's output). The shards run one after
  another in this process (``tests/support/launchers.py: InProcessLauncher``), so the measurement is the driver's
  part: reading the reports (``Sink.read_reports``) and publishing (``Sink.publish``), each timed around the call.
- Requests are counted by the S3 operation s3fs sends (``S3FileSystem._call_s3``) inside those two calls.
- The output is checked: N parts, every id once, the manifest lists N files.

Results go to ``benchmarks/results/publish.json`` and ``publish.md`` (``--shards`` other than 1,000: ``publish_<N>``).
"""

from __future__ import annotations

import argparse
import functools
import json
import shutil
import statistics
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(ROOT))  # the tests.support package: the test suite's SeaweedFS and in-process launcher

from harness.data import Log  # noqa: E402
from harness.provenance import code_state, machine_info  # noqa: E402
from harness.report import write_results  # noqa: E402
from harness.s3calls import S3Calls  # noqa: E402

from tests.support.helpers import FEATURES, make_frame, write_frame  # noqa: E402
from tests.support.launchers import InProcessLauncher  # noqa: E402
from tests.support.servers import S3_KEY, S3_SECRET, start_seaweedfs  # noqa: E402

WORK = HERE / "data" / "publish"
BUCKET = "bench"
ROWS_PER_FILE = 20


def timed(into: dict[str, float], name: str, method: Callable[..., Any], counter: S3Calls) -> Callable[..., Any]:
    @functools.wraps(method)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        clock = time.perf_counter()
        with counter.counting(reset=False):
            try:
                return method(*args, **kwargs)
            finally:
                into[name] = into.get(name, 0.0) + time.perf_counter() - clock

    return wrapper


def run(shards: int, rounds: int, log: Log) -> dict[str, Any]:
    import joblib
    import pandas as pd
    import s3fs
    from sklearn.linear_model import LogisticRegression

    from airflow_batch_scoring.artifacts import process_model
    from airflow_batch_scoring.driver.prepare import prepare_job
    from airflow_batch_scoring.driver.run import execute_job
    from airflow_batch_scoring.options import ScoringOptions
    from airflow_batch_scoring.sinks.files import FileSink
    from airflow_batch_scoring.specs import parse_data_spec

    shutil.rmtree(WORK, ignore_errors=True)
    (WORK / "in").mkdir(parents=True)
    frame = make_frame(shards * ROWS_PER_FILE, seed=5)
    for number in range(shards):
        chunk = frame.iloc[number * ROWS_PER_FILE:(number + 1) * ROWS_PER_FILE]
        write_frame(chunk, WORK / "in" / f"in-{number:05d}.csv", "csv_header")
    classifier = LogisticRegression(max_iter=500).fit(frame[FEATURES], frame[FEATURES[0]] > 0)
    joblib.dump(classifier, WORK / "model.joblib")
    model = process_model(str(WORK / "model.joblib"), str(WORK / "processed"))

    server = start_seaweedfs(WORK / "seaweedfs")
    counter = S3Calls()
    figures: list[dict[str, Any]] = []
    try:
        options = {"key": S3_KEY, "secret": S3_SECRET, "endpoint_url": server.endpoint}
        fs = s3fs.S3FileSystem(skip_instance_cache=True, **options)
        fs.mkdir(BUCKET)
        storage = {"source": {}, "sink": options}
        sink_uri = f"s3://{BUCKET}/out"
        original = {"read_reports": FileSink.read_reports, "publish": FileSink.publish}
        for number in range(rounds):
            seconds: dict[str, float] = {}
            counter.calls.clear()
            for name, method in original.items():
                setattr(FileSink, name, timed(seconds, name, method, counter))
            try:
                job, files = prepare_job(
                    job_id=f"bench-{uuid.uuid4().hex[:6]}",
                    model=model,
                    source=parse_data_spec(
                        {"uri": (WORK / "in").as_uri() + "/", "format": "csv", "header": True}, "source"),
                    sink=parse_data_spec({"uri": sink_uri, "format": "csv"}, "sink"),
                    storage_options=storage,
                    options=ScoringOptions.parse(replicas=shards, passthrough_columns=["id"]),
                )
                clock = time.perf_counter()
                summary = execute_job(job, files, storage_options=storage, log=lambda line: None,
                                      launcher=InProcessLauncher())  # type: ignore[arg-type]
                total = time.perf_counter() - clock
            finally:
                for name, method in original.items():
                    setattr(FileSink, name, method)
            fs.invalidate_cache()
            parts = sorted(p for p in fs.ls(f"{BUCKET}/out") if p.rsplit("/", 1)[-1].startswith("part-"))
            manifest = json.loads(fs.cat_file(f"{BUCKET}/out/_manifest.json"))
            assert len(parts) == shards == len(manifest["output"]["files"]), (len(parts), shards)
            assert fs.exists(f"{BUCKET}/out/_SUCCESS") and summary["rows_out"] == len(frame)
            ids = pd.concat(pd.read_csv(fs.open(p), usecols=["id"]) for p in parts)["id"]  # header: the input has one
            assert sorted(ids) == sorted(frame["id"]), "every id exactly once"
            figure = {
                "round": number + 1, "replaces_previous": number > 0, "total_s": round(total, 2),
                "read_reports_s": round(seconds["read_reports"], 3), "publish_s": round(seconds["publish"], 3),
                "requests": dict(sorted(counter.calls.items())), "requests_total": sum(counter.calls.values()),
            }
            figures.append(figure)
            log(f"round {number + 1}: {json.dumps(figure)}")
    finally:
        server.stop()
        shutil.rmtree(WORK, ignore_errors=True)
    kept = figures[1:] or figures  # the rounds that replace a previous output
    return {
        "config": {"shards": shards, "rounds": rounds, "rows_per_file": ROWS_PER_FILE},
        "machine": machine_info(),
        "code": code_state(),
        "rounds": figures,
        "median": {key: statistics.median(f[key] for f in kept)
                   for key in ("read_reports_s", "publish_s", "requests_total")},
    }


def markdown(results: dict[str, Any]) -> str:
    config, median, code = results["config"], results["median"], results["code"]
    changes = " (with uncommitted engine changes)" if code["uncommitted_engine_changes"] else ""
    lines = [
        f"{config['shards']:,} shards (one part each) published to SeaweedFS (S3 API) on 127.0.0.1; code "
        f"{code['head'][:7]}{changes}. Medians of the "
        "rounds that replace a previous output.",
        "",
        "| Round | Replaces previous | read_reports (s) | publish (s) | S3 requests | by operation |",
        "|---:|---|---:|---:|---:|---|",
    ]
    for f in results["rounds"]:
        ops = ", ".join(f"{k} {v:,}" for k, v in f["requests"].items())
        lines.append(f"| {f['round']} | {'yes' if f['replaces_previous'] else 'no'} | {f['read_reports_s']:.2f} | "
                     f"{f['publish_s']:.2f} | {f['requests_total']:,} | {ops} |")
    lines += ["", f"Median: read_reports {median['read_reports_s']:.2f} s, publish {median['publish_s']:.2f} s, "
              f"{median['requests_total']:,.0f} requests.", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--shards", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--name", default=None, help="results name (default: publish, or publish_<shards>)")
    args = parser.parse_args(argv)
    clock = time.perf_counter()

    def log(text: str) -> None:
        print(f"[{time.perf_counter() - clock:7.1f}s] {text}", file=sys.stderr, flush=True)

    results = run(args.shards, args.rounds, log)
    name = args.name or ("publish" if args.shards == 1000 else f"publish_{args.shards}")
    write_results(name, results, markdown(results), log)
    return 0


if __name__ == "__main__":
    sys.exit(main())
