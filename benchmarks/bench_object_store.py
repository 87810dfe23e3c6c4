"""Benchmark: peak memory of the engine while it writes large outputs to an object store (S3 API, SeaweedFS).

    .venv/bin/python benchmarks/bench_object_store.py            # full run: ~60 MB, ~250 MB, ~1 GB outputs (~10 min)
    .venv/bin/python benchmarks/bench_object_store.py --quick    # smoke run: the ~60 MB output, replicas=1 only

It checks the claim "outputs larger than one upload part use multipart upload; nothing is buffered whole in memory":

- A SeaweedFS server (``weed mini``, a real S3 API) is started on 127.0.0.1 the way the tests start it
  (``tests/support/servers.py: start_seaweedfs``), into ``benchmarks/data/object_store/`` (removed at the end).
- Input: the CSV files of ``harness/data.py`` (id + 20 float features, no header; 500k, 2M and 8M rows = 98 MB,
  390 MB and 1.57 GB, the same first rows), generated into ``benchmarks/data/`` when missing (and removed at the end
  unless ``--keep-data``); the model is its LogisticRegression (``benchmarks/data/models/lr.joblib``).
- Each run is one child Python process that calls ``driver.prepare.prepare_job`` / ``driver.run.execute_job``
  (the same calls
  the operator makes) with S3 storage options (key, secret, endpoint_url) for the sink, and in one set of cases for
  the source too; the replicas are the local runtime's processes (``python -m airflow_batch_scoring.runtime
  run-shard``). ``harness.measure.measure`` samples every process of that tree every 0.1 s (RSS through psutil, VmHWM
  from ``/proc/<pid>/status``), so the driver and each replica get their own peak.
- Output: CSV of ``id``, 12 passthrough features and the prediction (~122 bytes a row): 500k rows -> ~61 MB,
  2M rows -> ~244 MB, 8M rows -> ~980 MB, so the output grows 4x and 16x with the same row width and batch size
  (100,000 rows).
- Cases: ~60 MB and ~250 MB x replicas 1 and 2 x part_size 8 MiB and 16 MiB x write_concurrency 1 and 4 (S3 sink,
  local source); the same with a local sink as the baseline (no upload at all); S3 source and S3 sink with the
  defaults; ~1 GB with the defaults (S3 sink and local sink, replicas 1 and 2). Besides each process's peak, a
  sampler records every replica's RSS every 0.5 s, to tell a level peak from a growing one.
- Each S3 object's part count is read from its ETag (``<md5>-<N>`` for an object assembled from N multipart parts;
  a plain md5 for a single PUT) right after the replicas finish, before publishing (publishing re-copies objects
  over 150 MiB server-side in 50 MiB parts), and compared with ``ceil(size / part_size)``; every output (parts in
  order) is hashed and must equal the local sink's output byte for byte.

Results go to ``benchmarks/results/object_store.json`` (raw) and ``object_store.md`` (tables); ``--quick`` writes
``object_store_quick.*``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import shutil
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(ROOT))  # the tests.support package: the test suite's SeaweedFS

from harness.data import BATCH, DATA, FEATURES, NAMES, data_file, generate_data, warm_page_cache  # noqa: E402
from harness.measure import ReplicaSampler, json_tail, measure, self_rss, vm_hwm_kb  # noqa: E402
from harness.models import train_models  # noqa: E402
from harness.noise import NOISE, wait_quiet  # noqa: E402
from harness.provenance import code_state, machine_info  # noqa: E402
from harness.report import write_results  # noqa: E402
from object_store_report import analyse, combine, markdown, mib  # noqa: E402

from tests.support.servers import S3_KEY, S3_SECRET, start_seaweedfs  # noqa: E402

# No cloud probes from boto/botocore in this process, the driver or the replicas (they inherit the environment).
os.environ.setdefault("AWS_EC2_METADATA_DISABLED", "true")
os.environ.setdefault("NO_GCE_CHECK", "true")

MIB = 1024**2
WORK = DATA / "object_store"
BUCKET = "bench"
PASSTHROUGH = ["id"] + FEATURES[:12]
SIZES = {"~60 MB": 500_000, "~250 MB": 2_000_000}
BIG = ("~1 GB", 8_000_000)  # the defaults only: shows where the replica's peak levels off
PART_SIZES = (8 * MIB, 16 * MIB)
CONCURRENCIES = (1, 4)
REPLICAS = (1, 2)


# --------------------------------------------------------------------------------------------------------------------
# The measured child: one job through the driver, as the operator runs it
# --------------------------------------------------------------------------------------------------------------------


def child_job(spec_path: str) -> dict[str, Any]:
    """Run one job with ``prepare_job`` / ``execute_job``; S3 options (the test server's key) for s3:// sides."""
    from airflow_batch_scoring.artifacts import process_model
    from airflow_batch_scoring.driver.local import LocalLauncher
    from airflow_batch_scoring.driver.prepare import prepare_job
    from airflow_batch_scoring.driver.run import execute_job
    from airflow_batch_scoring.io.files import filesystem
    from airflow_batch_scoring.options import ScoringOptions
    from airflow_batch_scoring.specs import parse_data_spec

    class StagedPartsLauncher(LocalLauncher):
        """The local launcher; once the replicas are done it lists the staged parts with their ETags. These tell
        the upload's own part count: publishing moves parts with s3fs (server-side copy), which re-copies an object
        over 150 MiB in 50 MiB parts and so changes its ETag."""

        staged: list[dict[str, Any]] = []

        def run(self, job_path: str, replicas: int, secrets: Any = None, env: Any = None, shards: Any = None) -> None:
            super().run(job_path, replicas, secrets=secrets, env=env, shards=shards)
            fs, staging = filesystem(json.loads(Path(job_path).read_text())["staging_uri"], (secrets or {}).get("sink"))
            fs.invalidate_cache()
            self.staged = [
                {"name": info["name"].rsplit("/", 1)[-1], "bytes": info["size"], "etag": info.get("ETag")}
                for info in fs.ls(staging, detail=True)
                if info["name"].rsplit("/", 1)[-1].startswith("part-")
            ]

    spec = json.loads(Path(spec_path).read_text())
    s3 = {"key": S3_KEY, "secret": S3_SECRET, "endpoint_url": spec["endpoint"]}
    options = {side: (dict(s3) if spec[side].startswith("s3://") else {}) for side in ("source", "sink")}
    source = parse_data_spec({"uri": spec["source"], "format": "csv", "columns": NAMES}, "source")
    sink = parse_data_spec({"uri": spec["sink"], "format": "csv"}, "sink")
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench-object-store-model-") as folder:
        model = process_model(spec["model"], folder)
        job, files = prepare_job(
            job_id=spec["job_id"],
            model=model,
            source=source,
            sink=sink,
            storage_options=options,
            options=ScoringOptions.parse(
                replicas=spec["replicas"],
                batch_size=BATCH,
                passthrough_columns=PASSTHROUGH,
                part_size=spec["part_size"],
                write_concurrency=spec["write_concurrency"],
            ),
        )
        log = lambda line: print(line, file=sys.stderr, flush=True)  # noqa: E731
        launcher = StagedPartsLauncher(log)
        summary = execute_job(job, files, storage_options=options, log=log, launcher=launcher)
    return {"summary": summary, "staged": launcher.staged, "driver_s": time.perf_counter() - started, **self_rss()}


def child_client_cost(endpoint: str) -> dict[str, Any]:
    """The fixed memory of the S3 client in a replica-like process: VmHWM after the replica's imports, then after
    opening the S3 filesystem the way a replica does and sending a few small requests (PUT, multipart
    upload of one 1 KiB part, LIST): the import, client and thread-pool cost, without part-sized buffers."""
    import airflow_batch_scoring.runtime.engine  # noqa: F401 - what a replica imports before it touches a store
    from airflow_batch_scoring.io.files import filesystem
    from airflow_batch_scoring.io.uploads import S3ConcurrentWriter

    before = vm_hwm_kb(os.getpid())
    fs, path = filesystem(f"s3://{BUCKET}/probe/", {"key": S3_KEY, "secret": S3_SECRET, "endpoint_url": endpoint})
    fs.pipe_file(f"{path}/small", b"x" * 1024)
    writer = S3ConcurrentWriter(fs, f"{path}/multipart", 5 * MIB, 2)
    writer._submit(b"y" * 1024)  # starts a multipart upload and sends one small part (no part-sized buffers)
    writer.parts[0].result()
    writer.abort()
    fs.ls(path)
    after_first = vm_hwm_kb(os.getpid())
    fs.rm(path, recursive=True)
    return {"hwm_after_imports": (before or 0) * 1024, "hwm_after_s3_requests": (after_first or 0) * 1024}


# --------------------------------------------------------------------------------------------------------------------
# Cases
# --------------------------------------------------------------------------------------------------------------------


def case_name(case: dict[str, Any]) -> str:
    return (
        f"{case['rows'] // 1000}k_{case['source']}-{case['sink']}_r{case['replicas']}_"
        f"p{case['part_size'] // MIB}_w{case['write_concurrency']}"
    )


def build_cases(sizes: dict[str, int], replicas_list: tuple[int, ...], big: bool) -> list[dict[str, Any]]:
    """The full matrix for the ~60 MB and ~250 MB outputs; the defaults (and their local baseline) for ~1 GB."""
    cases = []
    for size_label, rows in sizes.items():
        for replicas in replicas_list:
            for part_size in PART_SIZES:
                base = {"size": size_label, "rows": rows, "replicas": replicas, "part_size": part_size}
                cases.append({**base, "source": "file", "sink": "file", "write_concurrency": 4})
                for concurrency in CONCURRENCIES:
                    cases.append({**base, "source": "file", "sink": "s3", "write_concurrency": concurrency})
            cases.append({"size": size_label, "rows": rows, "replicas": replicas, "part_size": 16 * MIB,
                          "source": "s3", "sink": "s3", "write_concurrency": 4})
    if big:
        for replicas in replicas_list:
            for sink in ("file", "s3"):
                cases.append({"size": BIG[0], "rows": BIG[1], "replicas": replicas, "part_size": 16 * MIB,
                              "source": "file", "sink": sink, "write_concurrency": 4})
    for case in cases:
        case["name"] = case_name(case)
    return cases


def etag_parts(etag: str | None) -> int | None:
    """Parts of an S3 object from its ETag: ``<md5>-<N>`` after a multipart upload, a plain md5 after one PUT."""
    if not etag:
        return None
    etag = etag.strip('"')
    return int(etag.rsplit("-", 1)[1]) if "-" in etag else 1


def hash_parts(open_part, names: list[str]) -> str:
    """md5 of the output's parts read in order (the whole output, as one stream)."""
    digest = hashlib.md5(usedforsecurity=False)
    for name in names:
        with open_part(name) as f:
            while chunk := f.read(8 * MIB):
                digest.update(chunk)
    return digest.hexdigest()


def output_of(case: dict[str, Any], sink: str, fs: Any, staged: list[dict[str, Any]]) -> dict[str, Any]:
    """The published parts (size; parts as uploaded, from the staged object's ETag; parts of the published object,
    from its ETag; ceil(size / part_size)), the md5 of the whole output and the shards' stage times."""
    from airflow_batch_scoring.runtime.shards import published_name

    uploaded = {published_name(s["name"]): etag_parts(s["etag"]) for s in staged}
    objects = []
    if case["sink"] == "s3":
        fs.invalidate_cache()
        path = sink.removeprefix("s3://").rstrip("/")
        infos = sorted((i for i in fs.ls(path, detail=True) if i["name"].rsplit("/", 1)[-1].startswith("part-")),
                       key=lambda i: i["name"])
        for info in infos:
            name = info["name"].rsplit("/", 1)[-1]
            objects.append({"name": name, "bytes": info["size"], "parts_uploaded": uploaded.get(name),
                            "parts_published": etag_parts(info.get("ETag")), "etag": info.get("ETag")})
        digest = hash_parts(lambda n: fs.open(f"{path}/{n}", "rb", block_size=8 * MIB), [o["name"] for o in objects])
        manifest = json.loads(fs.cat_file(f"{path}/_manifest.json"))
    else:
        folder = Path(sink.removeprefix("file://"))
        for part in sorted(folder.glob("part-*")):
            objects.append({"name": part.name, "bytes": part.stat().st_size, "parts_uploaded": None,
                            "parts_published": None, "etag": None})
        digest = hash_parts(lambda n: open(folder / n, "rb"), [o["name"] for o in objects])
        manifest = json.loads((folder / "_manifest.json").read_text())
    for obj in objects:
        obj["parts_if_cut_at_part_size"] = math.ceil(obj["bytes"] / case["part_size"])
    shards = [
        {k: s.get(k) for k in ("shard", "rows_in", "rows_out", "duration_s", "read_s", "predict_s", "write_s")}
        for s in manifest["shards"]
    ]
    return {"objects": objects, "md5": digest, "shards": shards}


def remove_output(case: dict[str, Any], sink: str, fs: Any) -> None:
    if case["sink"] == "s3":
        path = sink.removeprefix("s3://").rstrip("/")
        if fs.exists(path):
            fs.rm(path, recursive=True)
        fs.invalidate_cache()
    else:
        shutil.rmtree(sink.removeprefix("file://"), ignore_errors=True)


def halves_max(points: list[list[float]]) -> list[int] | None:
    """Max RSS (MiB) over the first and the second half of a replica's sampled life."""
    if len(points) < 4:
        return None
    middle = (points[0][0] + points[-1][0]) / 2
    return [max(r for t, r in points if t <= middle), max(r for t, r in points if t > middle)]


def run_case(case: dict[str, Any], endpoint: str, fs: Any, model: Path, inputs: dict[tuple[str, int], str]) -> dict:
    if case["sink"] == "s3":
        sink = f"s3://{BUCKET}/out/{case['name']}/"
    else:
        sink = (WORK / "out" / case["name"]).as_uri() + "/"
    spec = {
        "job_id": f"{case['name']}-{uuid.uuid4().hex[:6]}",
        "model": str(model),
        "source": inputs[(case["source"], case["rows"])],
        "sink": sink,
        "endpoint": endpoint,
        "replicas": case["replicas"],
        "part_size": case["part_size"],
        "write_concurrency": case["write_concurrency"],
    }
    spec_path = WORK / f"{case['name']}.json"
    spec_path.write_text(json.dumps(spec))
    waited = wait_quiet()
    sampler = ReplicaSampler(str(spec_path))
    sampler.start()
    try:
        m = measure([sys.executable, str(Path(__file__).resolve()), "--child", str(spec_path)])
    finally:
        sampler.stop.set()
        sampler.join()
    spec_path.unlink()
    child = json_tail(m["stdout"])
    driver = next(p for p in m["processes"] if p["role"] == "main")
    replicas = sorted((p for p in m["processes"] if p["role"].startswith("replica-")), key=lambda p: p["role"])
    output = output_of(case, sink, fs, child["staged"])
    remove_output(case, sink, fs)
    summary = child["summary"]
    return {
        **case,
        "sink_uri": sink,
        "rows_out": summary["rows_out"],
        "output_bytes": sum(o["bytes"] for o in output["objects"]),
        "objects": output["objects"],
        "output_md5": output["md5"],
        "shards": output["shards"],
        "replica_peak_rss": [p["vm_hwm"] for p in replicas],
        "replica_polled_rss": [p["max_rss"] for p in replicas],
        "replica_rss_timeline_mib": sampler.timeline,
        "replica_halves_max_rss": {who: halves_max(points) for who, points in sampler.timeline.items()},
        # the driver's own end-of-work VmHWM, or the polled one if larger (the child reads it before it exits)
        "driver_peak_rss": max((child.get("self_hwm_kb") or 0) * 1024, driver["vm_hwm"]),
        "wall_s": m["wall_s"],
        "summary_duration_s": summary["duration_s"],
        "cpu_s": m["cpu_s"],
        "foreign_cores": m["foreign_cores"],
        "waited_for_quiet_s": round(waited, 1),
        "processes": m["processes"],
    }


# --------------------------------------------------------------------------------------------------------------------
# Summary
# --------------------------------------------------------------------------------------------------------------------



def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="smoke run: the ~60 MB output, replicas=1 only")
    parser.add_argument("--rounds", type=int, default=1, help="runs of every case (peak: max; wall: median)")
    parser.add_argument("--skip-big", action="store_true", help="skip the ~1 GB output (8M rows, 1.6 GB input)")
    parser.add_argument("--keep-data", action="store_true", help="keep the input files this run generated")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--child-client-cost", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child_job(args.child)), flush=True)
        return 0
    if args.child_client_cost:
        print(json.dumps(child_client_cost(args.child_client_cost)), flush=True)
        return 0

    clock = time.perf_counter()

    def log(text: str) -> None:
        print(f"[{time.perf_counter() - clock:7.1f}s] {text}", file=sys.stderr, flush=True)

    sizes = {"~60 MB": SIZES["~60 MB"]} if args.quick else SIZES
    replicas_list = (1,) if args.quick else REPLICAS
    big = not (args.quick or args.skip_big)
    NOISE["max_wait_s"] = 5.0  # wall times are reported, not judged: wait a little for quiet, never long
    NOISE["deadline"] = time.monotonic() + 24 * 3600
    info = machine_info()
    code_at_start = code_state()
    cases = build_cases(sizes, replicas_list, big)
    all_rows = sorted({c["rows"] for c in cases})
    existed = {rows: data_file(rows).exists() for rows in all_rows}
    local_inputs = {rows: generate_data(rows, log) for rows in all_rows}
    model = train_models(log)["lr"]
    shutil.rmtree(WORK, ignore_errors=True)
    WORK.mkdir(parents=True)
    server = start_seaweedfs(WORK / "seaweedfs")
    log(f"SeaweedFS at {server.endpoint} (pid {server.process.pid}); {len(cases)} cases")
    raw: dict[str, list[dict[str, Any]]] = {}
    try:
        import boto3
        import s3fs

        boto3.client(
            "s3", endpoint_url=server.endpoint, aws_access_key_id=S3_KEY, aws_secret_access_key=S3_SECRET,
            region_name="us-east-1",
        ).create_bucket(Bucket=BUCKET)
        fs = s3fs.S3FileSystem(key=S3_KEY, secret=S3_SECRET, endpoint_url=server.endpoint, skip_instance_cache=True)
        inputs: dict[tuple[str, int], str] = {}
        for rows, path in local_inputs.items():
            warm_page_cache(path)
            inputs[("file", rows)] = path.as_uri()
            if any(c["source"] == "s3" and c["rows"] == rows for c in cases):
                fs.put_file(str(path), f"{BUCKET}/in/{path.name}")
                inputs[("s3", rows)] = f"s3://{BUCKET}/in/{path.name}"
        log(f"inputs: {[f'{p.name} {p.stat().st_size / 1e6:,.0f} MB' for p in local_inputs.values()]}")
        m = measure([sys.executable, str(Path(__file__).resolve()), "--child-client-cost", server.endpoint])
        client_cost = json_tail(m["stdout"])
        client_cost["s3_client_fixed"] = client_cost["hwm_after_s3_requests"] - client_cost["hwm_after_imports"]
        log(f"S3 client in a replica-like process: {client_cost}")
        for round_index in range(args.rounds):
            for number, case in enumerate(cases, 1):
                result = run_case(case, server.endpoint, fs, model, inputs)
                raw.setdefault(case["name"], []).append(result)
                log(
                    f"round {round_index + 1} case {number}/{len(cases)} {case['name']}: "
                    f"{result['output_bytes'] / 1e6:,.1f} MB, uploaded in "
                    f"{[o['parts_uploaded'] for o in result['objects']]} parts, replica peak "
                    f"{[mib(v) for v in result['replica_peak_rss']]} MiB, driver {mib(result['driver_peak_rss'])} "
                    f"MiB, wall {result['wall_s']:.1f}s, others {result['foreign_cores']:.2f} cores"
                )
        try:
            import psutil

            server_rss = psutil.Process(server.process.pid).memory_info().rss
        except Exception:  # noqa: BLE001 - informative only
            server_rss = None
    finally:
        server.stop()
        shutil.rmtree(WORK, ignore_errors=True)
        if not args.keep_data:
            for rows, path in local_inputs.items():
                if not existed[rows]:
                    path.unlink(missing_ok=True)
                    path.with_suffix(".json").unlink(missing_ok=True)
    combined = [combine(runs) for runs in raw.values()]
    results = {
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": info,
        "code": {"at_start": code_at_start, "at_end": code_state()},
        "config": {
            "sizes_rows": {c["size"]: c["rows"] for c in cases},
            "batch_size": BATCH,
            "passthrough_columns": PASSTHROUGH,
            "model": str(model),
            "rounds": args.rounds,
            "server": "SeaweedFS weed mini (tests/servers.py start_seaweedfs), S3 API on 127.0.0.1",
            "server_rss_at_end": server_rss,
        },
        "s3_client_cost": client_cost,
        "analysis": analyse(combined, client_cost["s3_client_fixed"], SIZES["~250 MB"]),
        "cases": combined,  # with one round, each case is its run
        **({"raw": raw} if args.rounds > 1 else {}),
        "loadavg_at_end": os.getloadavg(),
        "total_benchmark_s": round(time.perf_counter() - clock, 1),
    }
    write_results("object_store_quick" if args.quick else "object_store", results, markdown(results), log)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
