"""Launchers for tests: shards run in this process, or real replicas of which one is killed on cue."""

from __future__ import annotations

import os
import signal
import threading
from typing import Any

from airflow_batch_scoring.driver.local import LocalLauncher
from airflow_batch_scoring.job import ScoringJob
from airflow_batch_scoring.runtime.engine import run_shard


class InProcessLauncher:
    """Runs each shard with the engine in this process (the driver and the commit are the real ones)."""

    runtime = "local"
    finish_siblings = False

    def start_early(self, replicas: Any, **options: Any) -> None:
        pass

    def prestart(self, model: Any, replicas: Any, **options: Any) -> None:
        pass

    def run(self, job_path: str, replicas: int, secrets: Any = None, env: Any = None, shards: Any = None) -> None:
        with open(job_path) as f:
            job = ScoringJob.from_json(f.read())
        for shard in shards if shards is not None else range(replicas):
            run_shard(job, shard, storage_options=secrets, log=lambda line: None)

    def discard(self) -> None:
        pass

    def kill(self) -> None:
        pass


class KillWhenOthersFinish(LocalLauncher):
    """Kills replica ``victim`` with SIGKILL once every other replica has finished its shard."""

    def __init__(self, victim: int, replicas: int):
        self.victim, self.finished, self.lines = victim, set(), []
        self.done = threading.Event()
        super().__init__(self._log)
        self.replicas = replicas

    def _log(self, line: str) -> None:
        self.lines.append(line)
        if "finished in" in line:
            self.finished.add(int(line.split("]", 1)[0].removeprefix("[replica ")))
        if self.finished >= set(range(self.replicas)) - {self.victim} and not self.done.is_set():
            self.done.set()
            process = self.process_of(self.victim)
            os.kill(process.pid, signal.SIGKILL)
