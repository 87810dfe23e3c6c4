"""The embedded default runtime: one local process per replica, each running the runtime's own command line.

A replica is ``python -m airflow_batch_scoring.runtime run-shard --job JOB.json --shard i`` (the same command the
runtime image runs in a pod). Its secret material arrives on its standard input; its progress lines are relayed
into the caller's log; a failed replica's own error is raised with its class and message, and the other replicas
are stopped.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

from airflow_batch_scoring import errors
from airflow_batch_scoring.runtime.shards import threads_per_replica

ERROR_MARKER = "BATCH_SCORING_ERROR "
_THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


def replica_command(job_path: str, shard: int) -> list[str]:
    """The command line of replica ``shard``."""
    return [sys.executable, "-m", "airflow_batch_scoring.runtime", "run-shard", "--job", job_path,
            "--shard", str(shard), "--secrets-stdin"]


def error_from_marker(payload: str) -> Exception:
    """Rebuild the exception a replica reported (same class when it is one of ours)."""
    data = json.loads(payload)
    cls = getattr(errors, data.get("type", ""), None)
    if not (isinstance(cls, type) and issubclass(cls, errors.BatchScoringError)):
        cls = errors.ReplicaError
    error = cls.__new__(cls)
    Exception.__init__(error, data.get("message", "the replica failed"))
    return error


class LocalLauncher:
    """Runs the replicas of a job as local processes.

    :param log: receives every line the replicas print (progress, warnings).
    """

    def __init__(self, log: Callable[[str], None] = print):
        self.log = log
        self._processes: list[subprocess.Popen[str]] = []

    def run(
        self,
        job_path: str,
        replicas: int,
        secrets: Mapping[str, Any] | None = None,
        env: Mapping[str, str] | None = None,
        shards: list[int] | None = None,
    ) -> None:
        """Run replicas (all, or the listed ``shards``) to completion.

        :raises BatchScoringError: the first failed replica's own error.
        """
        environment = dict(os.environ if env is None else env)
        for name in _THREAD_VARIABLES:
            environment.setdefault(name, str(threads_per_replica(replicas)))
        secret_text = json.dumps(dict(secrets or {}))
        failures: dict[int, str] = {}
        tails: dict[int, list[str]] = {}
        relays = []
        shard_list = list(range(replicas)) if shards is None else shards
        self._processes = []
        for shard in shard_list:
            process = subprocess.Popen(
                replica_command(job_path, shard),
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                env=environment,
                start_new_session=True,
            )
            self._processes.append(process)
            assert process.stdin is not None
            try:
                process.stdin.write(secret_text)
                process.stdin.close()
            except BrokenPipeError:
                pass
            tails[shard] = []
            relay = threading.Thread(target=self._relay, args=(shard, process, failures, tails[shard]), daemon=True)
            relay.start()
            relays.append(relay)
        try:
            failed = self._wait()
        except BaseException:
            self.kill()
            raise
        for relay in relays:
            relay.join(timeout=10)
        if failed is not None:
            shard, code = failed
            if shard in failures:
                raise error_from_marker(failures[shard])
            tail = "\n".join(tails[shard][-20:])
            reason = f"was killed by signal {-code}" if code < 0 else f"exited with code {code}"
            raise errors.ReplicaError(f"Replica {shard} {reason}; nothing was published. Its last output:\n{tail}")

    def _relay(self, shard: int, process: subprocess.Popen[str], failures: dict[int, str], tail: list[str]) -> None:
        assert process.stdout is not None
        for line in process.stdout:
            line = line.rstrip("\n")
            if line.startswith(ERROR_MARKER):
                failures[shard] = line[len(ERROR_MARKER):]
                continue
            tail.append(line)
            del tail[:-50]
            self.log(f"[replica {shard}] {line}")

    def _wait(self) -> tuple[int, int] | None:
        """Wait for every process; on the first failure stop the others and return ``(shard, code)``."""
        pending = dict(enumerate(self._processes))
        shards = [int(p.args[p.args.index("--shard") + 1]) for p in self._processes]  # type: ignore[union-attr]
        while pending:
            for index, process in list(pending.items()):
                code = process.poll()
                if code is None:
                    continue
                del pending[index]
                if code != 0:
                    self.kill()
                    for other in self._processes:
                        other.wait()
                    return shards[index], code
            time.sleep(0.05)
        return None

    def kill(self) -> None:
        """Stop every replica still running (SIGTERM, then SIGKILL after 5 s)."""
        for process in self._processes:
            if process.poll() is None:
                try:
                    os.killpg(process.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
        deadline = time.monotonic() + 5
        for process in self._processes:
            try:
                process.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(process.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                process.wait()
