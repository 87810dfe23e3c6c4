"""The driver's fixed cost of a ``models:/`` reference on an HTTP MLflow tracking server: through its REST API
(``flavors/mlflow_rest.py``, no ``import mlflow``) against MlflowClient (``BATCH_SCORING_MLFLOW_REST=0``), in
interleaved rounds (issue 18, targets 1 and 4).

Starts ``mlflow server`` on 127.0.0.1 (SQLite store, artifacts served by it), registers the peers benchmark's LR model
folder as a logged model, version 1 of ``bench-lr`` with ``@champion``, and measures per round:

- ``resolve``: a fresh process that only processes the model (resolve the alias, download, pin the digest), as the
  driver does before it hands the model to the replicas;
- ``score``: ``batch-scoring score`` of 1,000 rows (CSV, replicas=1), the whole short job, its output checked;

each with the REST client and with MlflowClient, and the same job with the MLflow model folder (no registry) for
reference. Wall and CPU seconds of the process tree (the server's own CPU is not in them), and the cores other
processes used meanwhile (the machine is shared).

    .venv/bin/python benchmarks/bench_registry.py                # 1,000 rows, 5 rounds (~2 min quiet)
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from statistics import median
from typing import Any

import peers
from harness.data import DATA, generate_data
from harness.measure import measure
from harness.models import train_models
from harness.noise import set_patience
from harness.provenance import code_state, machine_info
from harness.report import write_results
from harness.rounds import run_rounds
from workloads import run_engine

NAME = "bench-lr"
SWITCH = "BATCH_SCORING_MLFLOW_REST"
RESOLVE = """
import sys, time
started = time.perf_counter()
from airflow_batch_scoring.artifacts.process import process_model
spec = process_model(sys.argv[1], sys.argv[2])
print(spec.digest, spec.resolved_uri, round(time.perf_counter() - started, 3), "mlflow" in sys.modules)
"""


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--patience", type=float, default=2.0, help="minutes to wait for quiet moments")
    return parser.parse_args()


def start_server(folder: Path) -> tuple[subprocess.Popen, str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_TRACKING")}
    env["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] = "false"  # MLflow 3's job runner: 7 processes a registry does not use
    process = subprocess.Popen(
        [str(Path(sys.executable).parent / "mlflow"), "server", "--host", "127.0.0.1", "--port", str(port),
         "--workers", "1", "--backend-store-uri", f"sqlite:///{folder / 'mlflow.db'}",
         "--artifacts-destination", str(folder / "artifacts")],
        stdout=open(folder / "server.log", "wb"), stderr=subprocess.STDOUT, start_new_session=True, env=env,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    for _ in range(600):
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=1):
                return process, url
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"mlflow server did not start: {(folder / 'server.log').read_text()[-2000:]}")


def stop_server(server: subprocess.Popen) -> None:
    """SIGTERM to its process group; SIGKILL if it has not exited after 30 s (a loaded machine)."""
    os.killpg(server.pid, signal.SIGTERM)
    try:
        server.wait(30)
    except subprocess.TimeoutExpired:
        os.killpg(server.pid, signal.SIGKILL)
        server.wait()


def register(url: str, folder: str) -> None:
    """The model folder as a logged model (MLflow 3's default source), version 1 of NAME, ``@champion``."""
    import mlflow

    client = mlflow.MlflowClient(tracking_uri=url, registry_uri=url)
    experiment = client.create_experiment("bench-registry")
    logged = client.create_logged_model(experiment, name="model")
    client.log_model_artifacts(logged.model_id, folder)
    client.finalize_logged_model(logged.model_id, "READY")
    client.create_registered_model(NAME)
    client.create_model_version(NAME, f"models:/{logged.model_id}", model_id=logged.model_id)
    client.set_registered_model_alias(NAME, "champion", "1")


def main() -> int:
    args = parse_args()
    clock = time.perf_counter()

    def log(text: str) -> None:
        print(f"[{time.perf_counter() - clock:7.1f}s] {text}", file=sys.stderr, flush=True)

    set_patience(args.patience)
    info, code = machine_info(), code_state()
    data = generate_data(args.rows, log)
    joblib_models = {"lr": train_models(log)["lr"]}
    folder = peers.mlflow_models(joblib_models, log)["lr"]["folder"]
    reference = peers.reference_predictions(joblib_models["lr"], data)
    server_dir = Path(tempfile.mkdtemp(prefix="bench-registry-"))
    server, url = start_server(server_dir)
    log(f"mlflow server at {url}")
    try:
        register(url, folder)
        uri = f"models:/{NAME}@champion"
        base = dict(os.environ, MLFLOW_TRACKING_URI=url, MLFLOW_DISABLE_TELEMETRY="true")
        envs = {"rest": dict(base, **{SWITCH: "1"}), "mlflowclient": dict(base, **{SWITCH: "0"})}
        checked: dict[str, Any] = {}

        def resolve(mode: str) -> Any:
            def run() -> dict[str, Any]:
                target = DATA / "out" / f"resolve-{mode}"
                shutil.rmtree(target, ignore_errors=True)
                result = measure([sys.executable, "-c", RESOLVE, uri, str(target)], env=envs[mode])
                digest, resolved, inner_s, imported = result["stdout"].split()[-4:]
                result.update(digest=digest, resolved=resolved, in_process_s=float(inner_s), mlflow=imported)
                shutil.rmtree(target, ignore_errors=True)
                return result

            return run

        def score(mode: str) -> Any:
            def run() -> dict[str, Any]:
                model = folder if mode == "folder" else uri
                result = run_engine(model, data, 1, f"registry-{mode}", keep=True, env=envs.get(mode, base))
                if mode not in checked:
                    checked[mode] = peers.check_output(Path(result["sink"]), reference)
                    assert checked[mode]["ids_in_order"] and checked[mode]["prediction_mismatches"] == 0, checked
                shutil.rmtree(result["sink"], ignore_errors=True)
                return result

            return run

        configs = [(f"resolve-{m}", resolve(m)) for m in envs] + [(f"score-{m}", score(m)) for m in (*envs, "folder")]
        raw = run_rounds(
            configs, args.rounds, args.rounds, log,
            after_run=lambda name, r: f"wall {r['wall_s']:.2f}s cpu {r['cpu_s']:.2f}s others {r['foreign_cores']:.2f}",
            order=lambda index, todo: todo if index % 2 == 0 else list(reversed(todo)),
        )  # fmt: skip
    finally:
        stop_server(server)
        shutil.rmtree(server_dir, ignore_errors=True)
    digests = {r["digest"] for name in ("resolve-rest", "resolve-mlflowclient") for r in raw[name]}
    assert len(digests) == 1, digests  # one version, one digest, whichever client
    figures = {
        name: {
            "wall_s": round(median(r["wall_s"] for r in runs), 3),
            "cpu_s": round(median(r["cpu_s"] for r in runs), 3),
            "foreign_cores": round(median(r["foreign_cores"] for r in runs), 2),
            "load_before": round(median(r["load_before"] for r in runs), 2),
            "walls": [round(r["wall_s"], 2) for r in runs],
            **({"in_process_s": round(median(r["in_process_s"] for r in runs), 3),
                "imports_mlflow": sorted({r["mlflow"] for r in runs})} if name.startswith("resolve") else {}),
        }  # fmt: skip
        for name, runs in raw.items()
    }
    results = {"created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "machine": info, "code": code,
               "config": {"rows": args.rows, "rounds": args.rounds, "model": uri}, "figures": figures,
               "output_checks": checked, "digest": digests.pop()}  # fmt: skip
    rows = ["| Run | Wall s (median) | CPU s (median) | other processes (cores) | walls |", "|---|---:|---:|---:|---|"]
    for name, f in figures.items():
        rows.append(f"| {name} | {f['wall_s']:.2f} | {f['cpu_s']:.2f} | {f['foreign_cores']:.2f} | "
                    f"{', '.join(f'{w:.2f}' for w in f['walls'])} |")  # fmt: skip
    write_results("registry_rest", results, "\n".join(rows) + "\n", log)
    print(json.dumps({k: v.get("in_process_s") for k, v in figures.items() if "in_process_s" in v}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
