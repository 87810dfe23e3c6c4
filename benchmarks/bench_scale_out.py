"""Benchmark: what a very large run costs the driver, the store and the Kubernetes API server, measured here.

    .venv/bin/python benchmarks/bench_scale_out.py                      # all three parts (~10 min)
    .venv/bin/python benchmarks/bench_scale_out.py --part kubernetes    # one part: listing, manifest or kubernetes
    .venv/bin/python benchmarks/bench_scale_out.py --quick              # small sizes (smoke)

No cluster of 1,000 nodes runs here, but most of such a run's cost is paid by the driver, the store and the API
server, which do. Three parts (publishing 1,000 shards is ``bench_publish.py``):

- **listing**: N small CSV objects (10k and 100k) under one prefix on SeaweedFS (a real S3 API, started as the tests
  start it); the driver's own ``driver.prepare.prepare_job`` lists them, plans 1,000 shards and builds the job:
  seconds, S3 requests by operation, and the sizes of what the run carries the listing in (the job document every
  replica reads, the manifest's input section).
- **manifest**: the publish plan and manifest of 1,000 shards x 100 parts each (100,000 output files), built by
  ``sinks.file_publish.plan_publish`` from staged objects on SeaweedFS and written there: seconds and bytes.
- **kubernetes**: the Kubernetes runtime's launcher (``kubernetes.launcher.KubernetesLauncher``, the cncf-kubernetes
  provider's client) runs Indexed Jobs of 10, 100 and 1,000 indexes against the test suite's API emulator (kmock),
  whose job controller plays every index as succeeded (``tests/support/kube_cluster.py``): the API calls the launcher
  makes by verb and resource, per poll and per run, and the bytes of one poll's pod list.

Results: ``benchmarks/results/scale_out.json`` and ``scale_out.md`` (``--quick``: ``scale_out_quick.*``).
"""

from __future__ import annotations

import argparse
import collections
import json
import shutil
import sys
import time
import types
import uuid
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(ROOT))  # tests.support: the test suite's SeaweedFS and Kubernetes emulator

from harness.data import Log  # noqa: E402
from harness.provenance import code_state, machine_info  # noqa: E402
from harness.report import write_results  # noqa: E402
from harness.s3calls import S3Calls  # noqa: E402

from tests.support.servers import S3_KEY, S3_SECRET, start_seaweedfs  # noqa: E402

WORK = HERE / "data" / "scale_out"
BUCKET = "scale"
LINE = b"0.5,1.5,2.5\n"


def _model(log: Log) -> Any:
    import joblib
    import numpy as np
    from sklearn.linear_model import LinearRegression

    from airflow_batch_scoring.artifacts import process_model

    (WORK / "model").mkdir(parents=True, exist_ok=True)
    features = np.array([[0.5, 1.5], [1.0, 2.0], [3.0, 1.0]])
    joblib.dump(LinearRegression().fit(features, [1.0, 2.0, 3.0]), WORK / "model" / "model.joblib")
    return process_model(str(WORK / "model" / "model.joblib"), str(WORK / "processed"))


def part_listing(server: Any, counts: list[int], s3: S3Calls, log: Log) -> list[dict[str, Any]]:
    import s3fs

    from airflow_batch_scoring.driver.prepare import prepare_job
    from airflow_batch_scoring.options import ScoringOptions
    from airflow_batch_scoring.sources import open_source
    from airflow_batch_scoring.specs import parse_data_spec

    options = {"key": S3_KEY, "secret": S3_SECRET, "endpoint_url": server.endpoint}
    fs = s3fs.S3FileSystem(skip_instance_cache=True, **options)
    model = _model(log)
    results = []
    for count in counts:
        prefix = f"{BUCKET}/in-{count}"
        clock = time.perf_counter()
        names = [f"{prefix}/part-{n:06d}.csv" for n in range(count)]
        for start in range(0, count, 5000):
            fs.pipe({name: LINE for name in names[start:start + 5000]}, batch_size=64)
        log(f"listing: wrote {count:,} objects in {time.perf_counter() - clock:.0f} s")
        source = parse_data_spec({"uri": f"s3://{prefix}/", "format": "csv", "columns": ["f0", "f1", "id"]}, "source")
        storage = {"source": options, "sink": {}}
        with s3.counting() as listed:
            clock = time.perf_counter()
            files = open_source(source, options).listing()
            list_s = time.perf_counter() - clock
        with s3.counting() as prepared:
            clock = time.perf_counter()
            job, files = prepare_job(
                job_id=f"scale-{uuid.uuid4().hex[:6]}", model=model, source=source,
                sink=parse_data_spec({"uri": (WORK / f"out-{count}").as_uri(), "format": "csv"}, "sink"),
                storage_options=storage, options=ScoringOptions.parse(replicas=1000),
            )
            prepare_s = time.perf_counter() - clock
        reading = open_source(job.source, options, files)
        clock = time.perf_counter()
        fingerprint = reading.fingerprint(job)
        fingerprint_s = time.perf_counter() - clock
        document = job.to_json()
        described = json.dumps(reading.describe(job))
        figure = {
            "objects": count, "list_s": round(list_s, 2), "list_requests": dict(listed),
            "prepare_s": round(prepare_s, 2), "prepare_requests": dict(prepared), "replicas": job.replicas,
            "job_json_bytes": len(document), "manifest_input_bytes": len(described),
            "fingerprint_s": round(fingerprint_s, 3), "fingerprint": bool(fingerprint),
        }
        log(f"listing: {json.dumps(figure)}")
        results.append(figure)
        fs.rm(prefix, recursive=True)
    return results


def part_manifest(server: Any, shards: int, parts: int, s3: S3Calls, log: Log) -> dict[str, Any]:
    import s3fs

    from airflow_batch_scoring.job import ModelSpec, ScoringJob
    from airflow_batch_scoring.runtime.shards import ShardReport
    from airflow_batch_scoring.sinks import file_publish
    from airflow_batch_scoring.specs import FileSpec

    options = {"key": S3_KEY, "secret": S3_SECRET, "endpoint_url": server.endpoint}
    fs = s3fs.S3FileSystem(skip_instance_cache=True, **options)
    sink = f"{BUCKET}/manifest-out"
    staging = file_publish.staging_uri(f"s3://{sink}", "big").removeprefix("s3://")
    reports = [ShardReport(shard=s, rows_in=100 * parts, rows_out=100 * parts,
                           parts=[f"part-{s:05d}-{p:03d}.try1.csv" for p in range(parts)]) for s in range(shards)]
    clock = time.perf_counter()
    names = [f"{staging}/{name}" for report in reports for name in report.parts]
    for start in range(0, len(names), 5000):
        fs.pipe({name: LINE for name in names[start:start + 5000]}, batch_size=64)
    log(f"manifest: staged {len(names):,} objects in {time.perf_counter() - clock:.0f} s")
    job = ScoringJob(job_id="big", model=ModelSpec(uri="m", path="m", flavor="sklearn"),
                     source=FileSpec(uri="s3://x/in/", format="csv"), sink=FileSpec(uri=f"s3://{sink}", format="csv"),
                     staging_uri=f"s3://{staging}", shards=tuple(() for _ in range(shards)))
    with s3.counting() as planned:
        clock = time.perf_counter()
        plan = file_publish.plan_publish(job, reports, {"job_id": "big", "output": {}}, [], fs, staging, sink)
        plan_s = time.perf_counter() - clock
    clock = time.perf_counter()
    text = json.dumps(plan["manifest"], indent=2, sort_keys=True, default=str)
    dump_s = time.perf_counter() - clock
    clock = time.perf_counter()
    file_publish.write_json(fs, f"{sink}/_manifest.json", plan["manifest"])
    write_s = time.perf_counter() - clock
    fs.rm(f"{BUCKET}/manifest-out", recursive=True)
    figure = {
        "shards": shards, "parts_per_shard": parts, "files": len(names), "plan_s": round(plan_s, 2),
        "plan_requests": dict(planned), "manifest_bytes": len(text.encode()), "dump_s": round(dump_s, 2),
        "write_s": round(write_s, 2),
    }
    log(f"manifest: {json.dumps(figure)}")
    return figure


def part_kubernetes(sizes: list[int], log: Log) -> list[dict[str, Any]]:
    from kubernetes import client

    from airflow_batch_scoring.job import ModelSpec, Piece, ScoringJob
    from airflow_batch_scoring.kubernetes import manifests
    from airflow_batch_scoring.kubernetes.launcher import KubernetesLauncher
    from airflow_batch_scoring.kubernetes.settings import KubernetesSettings
    from airflow_batch_scoring.specs import FileSpec
    from tests.support.kube_cluster import TEST_AGENT, FakeCluster, Kubelet, Outcome

    cluster = FakeCluster(WORK)
    results = []
    try:
        for replicas in sizes:
            namespace = f"scale-{replicas}"
            staging = "s3://scoring/out/_temporary/job-1"
            job = ScoringJob(
                job_id="job-1", model=ModelSpec(uri="models:/churn/3", path=f"{staging}/_model/model.joblib",
                                                flavor="sklearn", digest="sha256:" + "0" * 64),
                source=FileSpec(uri="s3://scoring/in/", format="csv"), sink=FileSpec(uri="s3://scoring/out/",
                                                                                     format="csv"),
                staging_uri=staging, shards=tuple((Piece(path=f"s3://scoring/in/{i}.csv"),) for i in range(replicas)),
            )
            job_path = WORK / f"job-{replicas}.json"
            job_path.write_text(job.to_json())
            kubelet = Kubelet(cluster, WORK, namespace, script={i: Outcome("ok") for i in range(replicas)})
            settings = KubernetesSettings.parse(
                {"image": "scoring:1", "namespace": namespace, "config_file": str(cluster.kubeconfig)},
                poll_interval=1.0)
            ti = types.SimpleNamespace(dag_id="dag", task_id="score", map_index=-1, try_number=1, run_id="manual")
            context = {"ti": ti, "run_id": "manual", "dag": types.SimpleNamespace()}
            lines: list[str] = []
            launcher = KubernetesLauncher(settings, name=manifests.job_name("dag", "score", "manual", -1),
                                          context=context, task="dag.score/manual", log=lines.append)
            before = len(list(iter(cluster.emulator)))
            clock = time.perf_counter()
            try:
                launcher.run(str(job_path), replicas, secrets={"source": {}, "sink": {}})
            finally:
                kubelet.stop()
            seconds = time.perf_counter() - clock
            calls: collections.Counter[str] = collections.Counter()
            for request in list(iter(cluster.emulator))[before:]:
                if request.resource is None or request.headers.get("User-Agent") == TEST_AGENT:
                    continue
                method = str(request.method).rsplit(".", 1)[-1].upper()
                verb = {"POST": "create", "PATCH": "patch", "DELETE": "delete"}.get(method) or (
                    "get" if request.name else "list")
                resource = request.resource.plural + (f"/{request.subresource}" if request.subresource else "")
                calls[f"{verb} {resource}"] += 1
            polls = calls.get("get jobs/status", 0)
            core = client.CoreV1Api(cluster.client())
            pods = core.list_namespaced_pod(namespace, _preload_content=False).data
            figure = {
                "replicas": replicas, "seconds": round(seconds, 1), "polls": polls,
                "calls": dict(sorted(calls.items())), "calls_total": sum(calls.values()), "pod_list_bytes": len(pods),
            }
            log(f"kubernetes: {json.dumps(figure)}")
            results.append(figure)
    finally:
        cluster.stop()
    return results


def markdown(results: dict[str, Any]) -> str:
    code = results["code"]
    changes = " (with uncommitted engine changes)" if code["uncommitted_engine_changes"] else ""
    lines = [f"Code {code['head'][:7]}{changes}. SeaweedFS (S3 API) and the Kubernetes API emulator on 127.0.0.1.", ""]
    if results.get("listing"):
        lines += ["**Listing and planning** (`prepare_job`: list, plan 1,000 shards, preflight, build the job)", "",
                  "| Objects | list (s) | list requests | prepare (s) | prepare requests | job document | "
                  "manifest input section | fingerprint (s) |", "|---:|---:|---|---:|---|---:|---:|---:|"]
        for f in results["listing"]:
            lines.append(
                f"| {f['objects']:,} | {f['list_s']:.2f} | {_ops(f['list_requests'])} | {f['prepare_s']:.2f} | "
                f"{_ops(f['prepare_requests'])} | {f['job_json_bytes'] / 2**20:.1f} MiB | "
                f"{f['manifest_input_bytes'] / 2**20:.1f} MiB | {f['fingerprint_s']:.2f} |")
        lines.append("")
    if results.get("manifest"):
        f = results["manifest"]
        lines += ["**Manifest**", "",
                  "| Shards x parts | plan (s) | plan requests | manifest | JSON encode (s) | write (s) |",
                  "|---|---:|---|---:|---:|---:|",
                  f"| {f['shards']:,} x {f['parts_per_shard']} = {f['files']:,} | {f['plan_s']:.2f} | "
                  f"{_ops(f['plan_requests'])} | {f['manifest_bytes'] / 2**20:.1f} MiB | {f['dump_s']:.2f} | "
                  f"{f['write_s']:.2f} |", ""]
    if results.get("kubernetes"):
        lines += ["**Kubernetes API calls of one run** (poll interval 1 s; every index succeeds)", "",
                  "| Indexes | seconds | polls | calls | by verb and resource | one poll's pod list |",
                  "|---:|---:|---:|---:|---|---:|"]
        for f in results["kubernetes"]:
            lines.append(f"| {f['replicas']:,} | {f['seconds']:.1f} | {f['polls']} | {f['calls_total']:,} | "
                         f"{_ops(f['calls'])} | {f['pod_list_bytes'] / 2**10:,.0f} KiB |")
        lines.append("")
    return "\n".join(lines)


def _ops(calls: dict[str, int]) -> str:
    return ", ".join(f"{k} {v:,}" for k, v in sorted(calls.items())) or "-"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--part", choices=["listing", "manifest", "kubernetes", "all"], default="all")
    parser.add_argument("--quick", action="store_true", help="small sizes (smoke run)")
    args = parser.parse_args(argv)
    clock = time.perf_counter()

    def log(text: str) -> None:
        print(f"[{time.perf_counter() - clock:7.1f}s] {text}", file=sys.stderr, flush=True)

    shutil.rmtree(WORK, ignore_errors=True)
    WORK.mkdir(parents=True)
    results: dict[str, Any] = {"machine": machine_info(), "code": code_state(), "quick": args.quick}
    try:
        if args.part in ("listing", "manifest", "all"):
            server = start_seaweedfs(WORK / "seaweedfs")
            try:
                import s3fs

                s3fs.S3FileSystem(key=S3_KEY, secret=S3_SECRET, endpoint_url=server.endpoint,
                                  skip_instance_cache=True).mkdir(BUCKET)
                s3 = S3Calls()
                if args.part in ("listing", "all"):
                    results["listing"] = part_listing(server, [2000] if args.quick else [10_000, 100_000], s3, log)
                if args.part in ("manifest", "all"):
                    shards, parts = (50, 10) if args.quick else (1000, 100)
                    results["manifest"] = part_manifest(server, shards, parts, s3, log)
            finally:
                server.stop()
        if args.part in ("kubernetes", "all"):
            results["kubernetes"] = part_kubernetes([5, 20] if args.quick else [10, 100, 1000], log)
    finally:
        shutil.rmtree(WORK, ignore_errors=True)
    name = "scale_out_quick" if args.quick else ("scale_out" if args.part == "all" else f"scale_out_{args.part}")
    write_results(name, results, markdown(results), log)
    return 0


if __name__ == "__main__":
    sys.exit(main())
