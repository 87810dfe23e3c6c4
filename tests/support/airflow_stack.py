"""A real Airflow 3.3 on loopback for end-to-end tests: api-server, scheduler and dag-processor, plus an MLflow server.

Each component runs in its own process group with a temporary AIRFLOW_HOME (SQLite, LocalExecutor), on free ports
bound to 127.0.0.1, and is stopped with SIGTERM, then SIGKILL after a grace period (see shared LOCAL_SERVICES.md).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.support.servers import free_port
from tests.support.waiting import wait_for

BIN = Path(sys.executable).parent
COMPONENTS = ("api-server", "scheduler", "dag-processor")
#: The scheduler's log server binds every interface (it has no host setting): the components share one AIRFLOW_HOME,
#: so the api-server reads task logs from the files, and the scheduler serves none.
COMPONENT_FLAGS = {"scheduler": ("--skip-serve-logs",)}


def _http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError):
        return False


@dataclass
class Stack:
    home: Path
    env: dict[str, str]
    url: str
    mlflow_url: str
    processes: dict[str, subprocess.Popen] = field(default_factory=dict)
    token: str = ""

    # --- REST API -----------------------------------------------------------------------------------------------
    def request(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        """Call the REST API; a "Database error" (SQLite busy while the scheduler writes) is retried."""
        for _ in range(5):
            status, answer = self._request(method, path, body)
            if status != 500 or "Database error" not in json.dumps(answer):
                break
            time.sleep(2)
        return status, answer

    def _request(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(f"{self.url}{path}", data=data, method=method)
        request.add_header("Content-Type", "application/json")
        if self.token:
            request.add_header("Authorization", f"Bearer {self.token}")
        try:
            # (longer than the database's busy timeout, 30 s: a request SQLite kept waiting answers 'Database
            # error', which request() retries, instead of the client giving up first)
            with urllib.request.urlopen(request, timeout=90) as response:
                text = response.read().decode()
                return response.status, json.loads(text) if text else None
        except urllib.error.HTTPError as err:
            text = err.read().decode()
            try:
                return err.code, json.loads(text)
            except ValueError:
                return err.code, text

    def get(self, path: str) -> Any:
        status, body = self.request("GET", path)
        assert status == 200, (path, status, body)
        return body

    def runs(self, dag_id: str) -> list[dict]:
        body = self.get(f"/api/v2/dags/{dag_id}/dagRuns?order_by=logical_date&limit=100")
        return body["dag_runs"]

    def run(self, dag_id: str, run_id: str) -> dict:
        return self.get(f"/api/v2/dags/{dag_id}/dagRuns/{urllib.parse.quote(run_id, safe='')}")

    def task_instances(self, dag_id: str, run_id: str) -> dict[str, dict]:
        body = self.get(f"/api/v2/dags/{dag_id}/dagRuns/{urllib.parse.quote(run_id, safe='')}/taskInstances")
        return {ti["task_id"]: ti for ti in body["task_instances"]}

    def wait_run(self, dag_id: str, run_id: str, states=("success", "failed"), timeout: float = 240) -> dict:
        return wait_for(lambda: (r := self.run(dag_id, run_id))["state"] in states and r, timeout,
                        f"{dag_id} {run_id} in {states}")

    # --- processes ----------------------------------------------------------------------------------------------
    def log(self, name: str) -> str:
        path = self.home / f"{name}.log"
        return path.read_text(errors="replace")[-4000:] if path.exists() else ""

    def listening(self) -> dict[str, list[tuple[str, int]]]:
        """The addresses every process of the stack (each component and its child processes) listens on: TCP in
        LISTEN state, and bound UDP sockets without a peer."""
        import psutil

        found: dict[str, list[tuple[str, int]]] = {}
        for name, process in self.processes.items():
            try:
                tree = [psutil.Process(process.pid)]
                tree += tree[0].children(recursive=True)
            except psutil.NoSuchProcess:
                continue
            for member in tree:
                try:
                    connections = member.net_connections(kind="inet")
                except (psutil.NoSuchProcess, psutil.AccessDenied):
                    continue
                for conn in connections:
                    tcp_listen = conn.type == socket.SOCK_STREAM and conn.status == psutil.CONN_LISTEN
                    udp_bound = conn.type == socket.SOCK_DGRAM and not conn.raddr
                    if tcp_listen or udp_bound:
                        found.setdefault(f"{name} (pid {member.pid}: {member.name()})", []).append(
                            (conn.laddr.ip, conn.laddr.port))
        return found

    def stop(self) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        deadline = time.monotonic() + 20
        for process in self.processes.values():
            try:
                process.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()


def _spawn(name: str, command: list[str], env: dict[str, str], home: Path) -> subprocess.Popen:
    return subprocess.Popen(command, env=env, cwd=home, stdout=open(home / f"{name}.log", "wb"),
                            stderr=subprocess.STDOUT, start_new_session=True)


def airflow_env(home: Path, dags: Path, api_port: int, extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of every component: loopback ports, a temp home, the test DAGs folder."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW__", "AIRFLOW_CONN_", "MLFLOW_"))}
    env.update(
        PATH=f"{BIN}{os.pathsep}{env.get('PATH', '')}",
        AIRFLOW_HOME=str(home / "airflow"),
        AIRFLOW__CORE__DAGS_FOLDER=str(dags),
        # SQLite: wait up to 30 s for a lock rather than failing a request after 5 s.
        AIRFLOW__DATABASE__SQL_ALCHEMY_CONN=f"sqlite:///{home / 'airflow' / 'airflow.db'}?timeout=30",
        AIRFLOW__CORE__LOAD_EXAMPLES="False",
        AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION="False",
        AIRFLOW__CORE__EXECUTOR="LocalExecutor",
        AIRFLOW__CORE__PARALLELISM="4",
        AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS="True",
        AIRFLOW__CORE__EXECUTION_API_SERVER_URL=f"http://127.0.0.1:{api_port}/execution/",
        AIRFLOW__CORE__UNIT_TEST_MODE="False",
        AIRFLOW__API__HOST="127.0.0.1",
        AIRFLOW__API__PORT=str(api_port),
        AIRFLOW__API__WORKERS="1",
        AIRFLOW__API__BASE_URL=f"http://127.0.0.1:{api_port}",
        AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT=str(free_port()),
        AIRFLOW__SCHEDULER__SCHEDULER_HEALTH_CHECK_SERVER_PORT=str(free_port()),
        AIRFLOW__TRIGGERER__TRIGGERER_HEALTH_CHECK_SERVER_PORT=str(free_port()),
        AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC="2",
        AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL="10",
        AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL="30",
        AIRFLOW__DAG_PROCESSOR__PARSING_PROCESSES="1",
        BATCH_SCORING_PROGRESS_S="0",
    )
    env.update(extra or {})
    return env


def start_stack(home: Path, dags: Path, extra_env: dict[str, str] | None = None) -> Stack:
    """Migrate a fresh metadata DB, start an MLflow server, then the three Airflow components; wait until healthy."""
    api_port, mlflow_port = free_port(), free_port()
    mlflow_url = f"http://127.0.0.1:{mlflow_port}"
    env = airflow_env(home, dags, api_port, {"MLFLOW_TRACKING_URI": mlflow_url, **(extra_env or {})})
    stack = Stack(home=home, env=env, url=f"http://127.0.0.1:{api_port}", mlflow_url=mlflow_url)
    (home / "mlflow").mkdir(exist_ok=True)
    mlflow_env = {k: v for k, v in env.items() if not k.startswith("MLFLOW_TRACKING")}
    mlflow_env["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] = "false"  # (MLflow 3's job runner: processes nothing here needs)
    stack.processes["mlflow"] = _spawn("mlflow", [
        str(BIN / "mlflow"), "server", "--host", "127.0.0.1", "--port", str(mlflow_port), "--workers", "1",
        "--backend-store-uri", f"sqlite:///{home / 'mlflow' / 'mlflow.db'}",
        "--artifacts-destination", str(home / "mlflow" / "artifacts"),
    ], mlflow_env, home)
    try:
        migrate = subprocess.run([str(BIN / "airflow"), "db", "migrate"], env=env, cwd=home, capture_output=True,
                                 text=True)
        assert migrate.returncode == 0, migrate.stdout[-3000:] + migrate.stderr[-3000:]
        # The api-server (and its execution API) answers before the scheduler can start a task: a task started
        # earlier (a catch-up run of an hourly DAG) could not reach it and would fail before it ran.
        stack.processes["api-server"] = _spawn("api-server", [str(BIN / "airflow"), "api-server"], env, home)
        for name, url in (("mlflow", f"{mlflow_url}/health"), ("api-server", f"{stack.url}/api/v2/monitor/health")):
            wait_for(lambda url=url, name=name: _alive(stack, name) and _http_ok(url), 120, f"{name} to answer")
        for name in COMPONENTS[1:]:
            stack.processes[name] = _spawn(name, [str(BIN / "airflow"), name, *COMPONENT_FLAGS.get(name, ())], env,
                                           home)
        with urllib.request.urlopen(f"{stack.url}/auth/token", timeout=10) as response:
            stack.token = json.loads(response.read())["access_token"]
    except BaseException:
        stack.stop()
        raise
    return stack


def _alive(stack: Stack, name: str) -> bool:
    process = stack.processes[name]
    if process.poll() is not None:
        raise AssertionError(f"{name} exited with {process.returncode}:\n{stack.log(name)}")
    return True
