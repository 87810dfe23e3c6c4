"""What runs the replicas of a job: the :class:`Launcher` protocol the driver's ``execute_job`` is written against.

Two launchers implement it: :class:`~airflow_batch_scoring.driver.local.LocalLauncher` (local processes) and
:class:`~airflow_batch_scoring.kubernetes.launcher.KubernetesLauncher` (the pods of one Indexed Job). Every method is
part of the protocol; a launcher with nothing to do for one (the Kubernetes launcher does not prestart) implements it
as a no-op, so the driver never probes with ``hasattr``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

from airflow_batch_scoring.job import ModelSpec
from airflow_batch_scoring.schema import ModelSchema


class Launcher(Protocol):
    """Runs the replicas of a job.

    :ivar runtime: the runtime's name in the log and the summary (``local``, ``kubernetes``).
    :ivar finish_siblings: the run will be retried (the driver sets it): after a failure a retry can change, the other
        replicas may first finish their shards, which the retry then reuses.
    """

    runtime: str
    finish_siblings: bool

    def start_early(self, replicas: int | str, *, env: Mapping[str, str] | None = None) -> None:
        """Start the replicas before the model is known, so that they import the runtime while the driver resolves
        and fetches it; :meth:`prestart` then hands them the model (a no-op where unsupported)."""
        ...

    def prestart(
        self,
        model: ModelSpec,
        replicas: int | str,
        *,
        probabilities: bool = False,
        output_schema: ModelSchema | None = None,
        env: Mapping[str, str] | None = None,
    ) -> None:
        """Start the replicas early, loading ``model`` while the driver still plans (a no-op where unsupported, or
        when already started)."""
        ...

    def run(
        self,
        job_path: str,
        replicas: int,
        secrets: Mapping[str, Mapping[str, Any]] | None = None,
        env: Mapping[str, str] | None = None,
        shards: list[int] | None = None,
    ) -> None:
        """Run the replicas of ``shards`` (default: all) to completion.

        :raises BatchScoringError: why a replica failed (its own error when it reported one).
        """
        ...

    def discard(self) -> None:
        """Stop prestarted replicas that were never given a shard (a no-op where nothing was prestarted)."""
        ...

    def kill(self) -> None:
        """Stop every replica still running."""
        ...
