"""The embedded default runtime: one local process per replica, each running the runtime's own command line.

A replica is ``python -m airflow_batch_scoring.runtime run-shard --job JOB.json --shard i`` (the same command the
runtime image runs in a pod), or, prestarted, ``run-shard --await-job``, which loads the model first and then reads
its job and shard. Its secret material arrives on its standard input; its progress lines are relayed into the
caller's log; a failed replica's own error is raised with its class and message, and the other replicas are stopped.

When the run will be retried (:attr:`LocalLauncher.finish_siblings`, set while Airflow retries remain or a ``--job-id``
run can be resumed) and the failure is one a retry can change (a replica killed or crashed, a store that could not be
reached), the replicas still running first get a grace period (``BATCH_SCORING_REPLICA_GRACE_S``, default 300 s) to
finish their shards, so that the retry reuses them instead of scoring them again.
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
from dataclasses import dataclass, field
from typing import Any

from airflow_batch_scoring import errors
from airflow_batch_scoring.job import ModelSpec
from airflow_batch_scoring.runtime.protocol import ERROR_MARKER, error_from_marker
from airflow_batch_scoring.runtime.remote_model import is_remote
from airflow_batch_scoring.runtime.shards import threads_per_replica
from airflow_batch_scoring.schema import ModelSchema

#: seconds the running replicas may take to finish their shards after one failed, when the run will be retried.
GRACE_VARIABLE = "BATCH_SCORING_REPLICA_GRACE_S"
DEFAULT_GRACE_S = 300.0
_THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


def replica_command(job_path: str, shard: int, python: str | None = None) -> list[str]:
    """The command line of replica ``shard`` (run by ``python``: default, this interpreter)."""
    return [python or sys.executable, "-m", "airflow_batch_scoring.runtime", "run-shard", "--job", job_path,
            "--shard", str(shard), "--secrets-stdin"]


def prestarted_command(python: str | None = None) -> list[str]:
    """The command line of a prestarted replica (it reads the model, then its job and shard, from stdin)."""
    return [python or sys.executable, "-m", "airflow_batch_scoring.runtime", "run-shard", "--await-job"]


def grace_period_s(environ: Mapping[str, str] | None = None) -> float:
    """The grace period of running replicas after one failed (``BATCH_SCORING_REPLICA_GRACE_S``; 0 stops them at once).

    :raises ConfigurationError: when the variable is not a number of seconds >= 0.
    """
    text = (os.environ if environ is None else environ).get(GRACE_VARIABLE, "").strip()
    if not text:
        return DEFAULT_GRACE_S
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value >= 0:
        raise errors.ConfigurationError(
            f"{GRACE_VARIABLE}={text!r} is not a number of seconds >= 0; set it to how long running replicas may "
            "take to finish their shards after one failed (0 stops them at once)."
        )
    return value


def _retry_can_help(error: Exception | None) -> bool:
    """Whether a retry can change the outcome of a replica's failure: a replica killed or crashed (no error of its
    own), a store that could not be reached; not a user error (bad input, schema, configuration, model)."""
    if error is None:
        return True
    retryable = getattr(error, "retryable", None)
    if isinstance(retryable, bool):
        return retryable
    return isinstance(error, (errors.ReplicaError, errors.StorageError))


@dataclass
class _Replica:
    process: subprocess.Popen[str]
    shard: int | None  # None while a prestarted replica waits for its shard
    error: str | None = None  # the payload of its error marker
    tail: list[str] = field(default_factory=list)  # its last 50 lines
    relay: threading.Thread | None = None


class LocalLauncher:
    """Runs the replicas of a job as local processes.

    Replicas can be started early: :meth:`start_early` starts them before the model is known (they import the
    runtime while the caller resolves and fetches the model), :meth:`prestart` hands them the model (or starts them
    with it) to load while the caller still lists and plans, and :meth:`run` then hands each its shard, so that the
    start and the model load are off the job's critical path.

    :param log: receives every line the replicas print (progress, warnings).
    :param python: the interpreter the replicas run (a model environment's); default, this one. Set it before
        :meth:`prestart` (replicas :meth:`start_early` started with another interpreter are replaced).
    """

    runtime = "local"

    def __init__(
        self, log: Callable[[str], None] = print, grace_s: float | None = None, python: str | None = None
    ):
        self.log = log
        self.python = python
        #: after a failure a retry can change, let the running replicas finish their shards (up to ``grace_s``).
        self.finish_siblings = False
        self.grace_s = grace_s
        self._replicas: list[_Replica] = []
        self._waiting: list[_Replica] = []  # prestarted, not yet given a shard
        self._prestart_key: tuple[int, tuple[tuple[str, str], ...] | None, str | None] | None = None
        self._awaiting_model = False  # the waiting replicas were started early: they wait for the model

    def start_early(self, replicas: int | str, *, env: Mapping[str, str] | None = None) -> None:
        """Start ``replicas`` processes now, before the model is known: they import the runtime, then wait for
        :meth:`prestart` to name the model (or for :meth:`discard`). Calling it again, or after :meth:`prestart`, is
        a no-op."""
        try:
            replicas = int(replicas)
        except (TypeError, ValueError):
            return  # an invalid setting: the job's own checks will say what is wrong
        if self._waiting or self._replicas or replicas < 1:
            return
        environment = self._environment(env, replicas)
        self._prestart_key = self._key(env, replicas)
        self._waiting = [
            self._spawn(prestarted_command(self.python), environment, shard=None) for _ in range(replicas)
        ]
        self._awaiting_model = True

    def prestart(
        self,
        model: ModelSpec,
        replicas: int | str,
        *,
        probabilities: bool = False,
        output_schema: ModelSchema | None = None,
        env: Mapping[str, str] | None = None,
    ) -> None:
        """Start ``replicas`` processes that load ``model`` now and then wait for :meth:`run` to give them a shard.

        Replicas :meth:`start_early` started for the same count and environment are handed the model instead (others
        are stopped). A model staged on an object store (the Kubernetes runtime's) is not prestarted. Calling it
        again is a no-op. Replicas :meth:`run` does not use (fewer shards to score, a different replica count) are
        stopped.
        """
        try:
            replicas = int(replicas)
        except (TypeError, ValueError):
            return  # an invalid setting: the job's own checks will say what is wrong
        early = self._waiting if self._awaiting_model else []
        self._awaiting_model = False
        if early:
            self._waiting = []
            if self._key(env, replicas) != self._prestart_key or is_remote(model.path):
                self._stop(early)  # started for another count or environment, or a model they cannot load early
                early = []
        if not early and (self._waiting or self._replicas or is_remote(model.path) or replicas < 1):
            return
        environment = self._environment(env, replicas)
        self._prestart_key = self._key(env, replicas)
        preload = json.dumps({
            "model": model.to_dict(), "probabilities": bool(probabilities),
            "output_schema": output_schema.to_json() if output_schema is not None else None,
        })
        for index in range(replicas):
            replica = (
                early[index] if index < len(early)
                else self._spawn(prestarted_command(self.python), environment, None)
            )
            try:
                assert replica.process.stdin is not None
                replica.process.stdin.write(preload + "\n")
                replica.process.stdin.flush()
            except BrokenPipeError:
                pass
            self._waiting.append(replica)

    def run(
        self,
        job_path: str,
        replicas: int,
        secrets: Mapping[str, Mapping[str, Any]] | None = None,
        env: Mapping[str, str] | None = None,
        shards: list[int] | None = None,
    ) -> None:
        """Run replicas (all, or the listed ``shards``) to completion.

        :raises BatchScoringError: the first failed replica's own error.
        """
        grace_s = self.grace_s if self.grace_s is not None else grace_period_s(env)
        environment = self._environment(env, replicas)
        shard_list = list(range(replicas)) if shards is None else shards
        waiting, self._waiting = self._waiting, []
        if self._awaiting_model or (
            waiting and (self._prestart_key != self._key(env, replicas) or len(waiting) < len(shard_list))
        ):  # started early and never given the model, or for another replica count or environment: start afresh
            self._awaiting_model = False
            self._stop(waiting)
            waiting = []
        self._replicas = []
        for index, shard in enumerate(shard_list):
            if index < len(waiting):
                replica = waiting[index]
                replica.shard = shard
                message = json.dumps({"job": job_path, "shard": shard, "secrets": dict(secrets or {})}) + "\n"
            else:
                replica = self._spawn(replica_command(job_path, shard, self.python), environment, shard=shard)
                message = json.dumps(dict(secrets or {}))
            self._replicas.append(replica)
            assert replica.process.stdin is not None
            try:
                replica.process.stdin.write(message)
                replica.process.stdin.close()
            except BrokenPipeError:
                pass  # it failed while loading the model: its own error is read below
        self._stop(waiting[len(shard_list):])
        try:
            failed = self._wait(grace_s if self.finish_siblings else 0.0)
        except BaseException:
            self.kill()
            raise
        for replica in self._replicas:
            assert replica.relay is not None
            replica.relay.join(timeout=10)
        if failed is not None:
            lost, code = failed
            if lost.error is not None:
                raise error_from_marker(lost.error)
            tail = "\n".join(lost.tail[-20:])
            reason = f"was killed by signal {-code}" if code < 0 else f"exited with code {code}"
            raise errors.ReplicaError(f"Replica {lost.shard} {reason}; nothing was published. Its last output:\n{tail}")

    def process_of(self, shard: int) -> subprocess.Popen[str]:
        """The process scoring ``shard`` in the current :meth:`run`."""
        return next(r.process for r in self._replicas if r.shard == shard)

    def _key(
        self, env: Mapping[str, str] | None, replicas: int
    ) -> tuple[int, tuple[tuple[str, str], ...] | None, str | None]:
        return replicas, None if env is None else tuple(sorted(env.items())), self.python

    def _environment(self, env: Mapping[str, str] | None, replicas: int) -> dict[str, str]:
        environment = dict(os.environ if env is None else env)
        if self.python and self.python != sys.executable:  # a model environment: nothing of the worker's leaks in
            for name in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV"):
                environment.pop(name, None)
        for name in _THREAD_VARIABLES:
            environment.setdefault(name, str(threads_per_replica(replicas)))
        return environment

    def _spawn(self, command: list[str], environment: dict[str, str], shard: int | None) -> _Replica:
        process = subprocess.Popen(
            command,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=environment,
            start_new_session=True,
        )
        replica = _Replica(process, shard)
        replica.relay = threading.Thread(target=self._relay, args=(replica,), daemon=True)
        replica.relay.start()
        return replica

    def _relay(self, replica: _Replica) -> None:
        """Relay a replica's lines into the log (its error marker is kept, not logged)."""
        assert replica.process.stdout is not None
        for line in replica.process.stdout:
            line = line.rstrip("\n")
            if line.startswith(ERROR_MARKER):
                replica.error = line[len(ERROR_MARKER):]
                continue
            replica.tail.append(line)
            del replica.tail[:-50]
            self.log(f"[replica {'starting' if replica.shard is None else replica.shard}] {line}")

    def _wait(self, grace_s: float = 0.0) -> tuple[_Replica, int] | None:
        """Wait for every process; on the first failure stop the others and return ``(replica, exit code)``.

        With ``grace_s`` > 0 and a failure a retry can change, the others first get up to ``grace_s`` seconds to
        finish their shards (their reports stay staged for the retry).
        """
        pending = list(self._replicas)
        while pending:
            for replica in list(pending):
                code = replica.process.poll()
                if code is None:
                    continue
                pending.remove(replica)
                if code != 0:
                    pending = [r for r in pending if r.process.poll() is None]
                    if pending and grace_s > 0 and _retry_can_help(self._error_of(replica)):
                        self._finish(replica, pending, grace_s)
                    self.kill()
                    for other in self._replicas:
                        other.process.wait()
                    return replica, code
            time.sleep(0.05)
        return None

    @staticmethod
    def _error_of(replica: _Replica) -> Exception | None:
        """The error a finished replica reported (its relay has read every line by then), or ``None``."""
        if replica.relay is not None:
            replica.relay.join(timeout=10)
        return error_from_marker(replica.error) if replica.error is not None else None

    def _finish(self, failed: _Replica, running: list[_Replica], grace_s: float) -> None:
        """Let ``running`` replicas finish their shards, for at most ``grace_s`` seconds, after ``failed`` failed."""
        shards = [r.shard for r in running]
        self.log(
            f"Replica {failed.shard} failed; the run will be retried: letting replica(s) {shards} finish their "
            f"shards (up to {grace_s:g}s, {GRACE_VARIABLE}) so that the retry reuses them"
        )
        deadline = time.monotonic() + grace_s
        while running and time.monotonic() < deadline:
            running = [r for r in running if r.process.poll() is None]
            if running:
                time.sleep(0.05)
        done = [r.shard for r in self._replicas if r is not failed and r.process.poll() == 0]
        if running:
            self.log(f"Stopping replica(s) {[r.shard for r in running]} after the grace period; finished: {done}")
        else:
            self.log(f"The other replicas ended; finished shard(s): {done}")

    def discard(self) -> None:
        """Stop the prestarted replicas that were never given a shard (the job failed or ended before launching)."""
        self._awaiting_model = False
        waiting, self._waiting = self._waiting, []
        self._stop(waiting)

    def kill(self) -> None:
        """Stop every replica still running (SIGTERM, then SIGKILL after 5 s)."""
        self._awaiting_model = False
        waiting, self._waiting = self._waiting, []
        self._stop(self._replicas + waiting)

    @staticmethod
    def _stop(replicas: list[_Replica]) -> None:
        for replica in replicas:
            if replica.process.poll() is None:
                try:
                    os.killpg(replica.process.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
        deadline = time.monotonic() + 5
        for replica in replicas:
            process = replica.process
            try:
                process.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(process.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                process.wait()
            if process.stdin is not None and not process.stdin.closed:
                try:
                    process.stdin.close()
                except OSError:
                    pass
