"""Where a scoring task's replicas run: the :class:`ScoringRuntime` the operator holds, and the registry of runtimes.

The operator resolves its stage and arguments once into a frozen :class:`ResolvedTask` (in ``execute`` and again,
identically, in ``execute_complete``), picks the runtime by name from :data:`RUNTIMES`, and talks to it only through
the protocol: ``check_locations``, ``prepare`` (prestart), ``run``, ``resume`` (after a deferral), ``kill`` and
``close``. :class:`LocalRuntime` (processes on the worker) lives here; the Kubernetes runtime lives in
:mod:`airflow_batch_scoring.kubernetes.runtime` and is imported only when a task uses it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Protocol

from airflow_batch_scoring.coercion import to_bool, to_optional_float
from airflow_batch_scoring.driver.local import LocalLauncher
from airflow_batch_scoring.driver.run import execute_job
from airflow_batch_scoring.environments import PreparedEnvironment, prepare_environment, stores_of
from airflow_batch_scoring.environments.settings import MODEL, EnvironmentSettings, parse_mode
from airflow_batch_scoring.errors import ConfigurationError, ReplicaError
from airflow_batch_scoring.kubernetes.settings import TASK_ARGUMENTS, check_task_arguments
from airflow_batch_scoring.stages import Stage, model_for_stage

if TYPE_CHECKING:
    from airflow.sdk import Context

    from airflow_batch_scoring.io.files import InputFile
    from airflow_batch_scoring.job import ModelSpec, ScoringJob
    from airflow_batch_scoring.runtime.secrets import Credentials
    from airflow_batch_scoring.schema import ModelSchema
    from airflow_batch_scoring.specs import DataSpec

#: runtime name -> ``module:class`` of its :class:`ScoringRuntime` (imported when a task uses it).
RUNTIMES: dict[str, str] = {
    "local": "airflow_batch_scoring.operators.runtimes:LocalRuntime",
    "kubernetes": "airflow_batch_scoring.kubernetes.runtime:KubernetesRuntime",
}
DEFAULT_RUNTIME = "local"


@dataclass(frozen=True)
class ResolvedTask:
    """A scoring task's arguments after its stage applied: what ``execute`` and ``execute_complete`` both act on.

    :param model: the model reference to score (a stage's alias applied).
    :param runtime: the runtime's name (a key of :data:`RUNTIMES`).
    :param replicas: the replicas (an int, or the rendered text the driver checks).
    :param kubernetes: the Kubernetes pod settings (the stage's under the task's own; no :data:`TASK_ARGUMENTS`).
    :param if_exists: ``replace`` or ``fail``.
    :param keep_on_failure: Airflow will retry this try: completed shards stay staged for the retry, and running
        replicas may finish their shards after one failed.
    :param stage: the stage's name, or ``None``.
    :param deferrable: the Kubernetes runtime waits in the triggerer.
    :param kubernetes_conn_id: the Airflow connection of the cluster.
    :param poll_interval: seconds between two looks at a Kubernetes Job.
    :param environment: where the replicas run Python (``model_environment``: the task's, else the stage's).
    """

    model: str | Mapping[str, Any]
    runtime: str
    replicas: int | str
    kubernetes: Mapping[str, Any] = field(default_factory=dict)
    if_exists: str = "replace"
    keep_on_failure: bool = False
    stage: str | None = None
    deferrable: bool = False
    kubernetes_conn_id: str | None = "kubernetes_default"
    poll_interval: float = 10.0
    environment: EnvironmentSettings = field(default_factory=EnvironmentSettings)

    @classmethod
    def resolve(
        cls,
        *,
        model: str | Mapping[str, Any],
        runtime: str | None,
        replicas: int | str | None,
        kubernetes: Mapping[str, Any] | None,
        stage: Stage | None,
        try_number: int,
        retries: int | None,
        deferrable: Any = None,
        kubernetes_conn_id: str | None = "kubernetes_default",
        poll_interval: Any = 10.0,
        environment: EnvironmentSettings | None = None,
        model_environment: Any = None,
        **arguments: Any,
    ) -> ResolvedTask:
        """Apply ``stage`` (its alias, and its runtime, replicas and Kubernetes settings where the task sets none).

        A stage's ``kubernetes`` may set the :data:`TASK_ARGUMENTS` (``deferrable``, ``kubernetes_conn_id``,
        ``poll_interval``): they apply where the task's argument is its default. ``deferrable`` the task passed
        (even equal to the default) always wins: a stage only changes its default.

        :param deferrable: the task's ``deferrable`` (rendered: a bool or its text); ``None`` (not given): the
            stage's, else ``[operators] default_deferrable``.
        :param environment: the task's environment settings (:meth:`EnvironmentSettings.parse` of its arguments).
        :param model_environment: the task's ``model_environment``; ``None`` (not given): the stage's, else
            ``"worker"``.
        :param arguments: the other fields (``if_exists``, ...), as the operator has them.
        :raises ConfigurationError: for an unknown runtime, a Kubernetes connection setting in ``kubernetes``, a
            value of the wrong type, or a model a stage cannot pick through an alias.
        """
        model = model if isinstance(model, Mapping) else str(model)
        settings = dict(kubernetes or {})
        check_task_arguments(settings)  # a templated ``kubernetes`` is checked once rendered
        wait: bool | None = None if deferrable is None or deferrable == "" else to_bool(deferrable, "deferrable")
        if stage is not None:
            model = model_for_stage(str(model), stage)
            runtime = runtime or stage.runtime
            replicas = replicas if replicas is not None else stage.replicas
            staged = dict(stage.kubernetes)
            given = {key: staged.pop(key) for key in TASK_ARGUMENTS if key in staged}
            if "deferrable" in given and wait is None:
                wait = to_bool(given["deferrable"], f"stage {stage.name!r}: kubernetes['deferrable']")
            if "kubernetes_conn_id" in given and kubernetes_conn_id == "kubernetes_default":
                kubernetes_conn_id = given["kubernetes_conn_id"]
            if "poll_interval" in given and to_optional_float(poll_interval, "poll_interval") == 10.0:
                poll_interval = given["poll_interval"]
            settings = {**staged, **settings}
            if model_environment in (None, ""):
                model_environment = stage.model_environment
        poll = to_optional_float(poll_interval, "poll_interval")
        if poll is None or not 0 < poll < float("inf"):
            raise ConfigurationError(f"poll_interval must be a positive number of seconds, got {poll_interval!r}.")
        runtime = runtime or DEFAULT_RUNTIME
        runtime_class(runtime)  # an unknown runtime fails here, naming the known ones
        environment = replace(
            environment or EnvironmentSettings.parse(),
            mode=parse_mode(model_environment),
        )
        if environment.mode == MODEL and runtime != DEFAULT_RUNTIME:
            raise ConfigurationError(
                f"model_environment='model' builds the model's environment on the worker, for the local runtime; "
                f"the {runtime} runtime's replicas run in their image: build one from the model's requirements "
                "(docs/model_environments.md, 'Kubernetes') and set it as kubernetes={'image': ...}."
            )
        return cls(
            model=model,
            runtime=runtime,
            replicas=replicas if replicas is not None else 1,
            kubernetes=settings,
            keep_on_failure=try_number <= (retries or 0),
            stage=stage.name if stage is not None else None,
            deferrable=default_deferrable() if wait is None else wait,
            kubernetes_conn_id=str(kubernetes_conn_id) if kubernetes_conn_id else None,
            poll_interval=poll,
            environment=environment,
            **arguments,
        )


def default_deferrable() -> bool:
    """``[operators] default_deferrable``: ``deferrable``'s default, as for the community operators."""
    from airflow.providers.common.compat.sdk import conf

    return conf.getboolean("operators", "default_deferrable", fallback=False)


class ScoringRuntime(Protocol):
    """Runs a resolved scoring task's replicas somewhere, for the operator.

    A runtime is built per ``execute`` (or ``execute_complete``) as ``cls(task, context, log)``.
    """

    name: str

    @classmethod
    def check_settings(cls, kubernetes: Mapping[str, Any] | None) -> None:
        """Refuse, when the DAG is parsed, settings this runtime cannot use (before templates are rendered)."""
        ...

    def check_locations(self, source: DataSpec, sink: DataSpec) -> None:
        """Refuse a source or sink the replicas cannot reach, before the model is fetched."""
        ...

    def start(self) -> None:
        """Start what can start before the model is resolved (the local runtime's replicas import the runtime)."""
        ...

    def prepare(self, model: ModelSpec, *, probabilities: bool, output_schema: ModelSchema | None) -> None:
        """Get ready while the driver lists and plans (the local runtime prestarts its replicas)."""
        ...

    def run(self, job: ScoringJob, files: list[InputFile], options: Credentials) -> dict[str, Any]:
        """Score ``job`` and publish it; return the summary.

        :param options: the task execution's credentials, taken once (a runtime never reads a connection itself).

        :raises TaskDeferred: (a deferrable runtime) the task resumes in :meth:`resume`.
        """
        ...

    def resume(self, event: Mapping[str, Any] | None, options: Credentials) -> dict[str, Any]:
        """Finish a deferred run (the trigger's ``event``): judge it, publish, return the summary."""
        ...

    def kill(self) -> None:
        """Stop every replica (the task was killed)."""
        ...

    def close(self) -> None:
        """Release what :meth:`prepare` started and :meth:`run` did not use (called when ``execute`` ends)."""
        ...


def runtime_class(name: str) -> type[ScoringRuntime]:
    """The runtime registered as ``name`` in :data:`RUNTIMES`.

    :raises ConfigurationError: for an unknown name, listing the known ones.
    """
    from importlib import import_module

    if name not in RUNTIMES:
        raise ConfigurationError(f"runtime must be one of {tuple(RUNTIMES)}, got {name!r}.")
    module, _, attribute = RUNTIMES[name].partition(":")
    runtime: type[ScoringRuntime] = getattr(import_module(module), attribute)
    return runtime


def runtime_for(task: ResolvedTask, context: Context, log: Callable[[str], None]) -> ScoringRuntime:
    """Build the runtime ``task`` runs on."""
    return runtime_class(task.runtime)(task, context, log)  # type: ignore[call-arg]


class LocalRuntime:
    """The embedded default: each replica a local process on the worker (:class:`LocalLauncher`), prestarted so
    that the model loads while the input is listed and planned."""

    name = "local"

    def __init__(self, task: ResolvedTask, context: Context, log: Callable[[str], None]):
        self.task = task
        self.log = log
        self.launcher = LocalLauncher(log)
        self.environment: PreparedEnvironment | None = None
        self.stores: tuple[str, ...] = ()  # what the source and sink need in a model environment

    @classmethod
    def check_settings(cls, kubernetes: Mapping[str, Any] | None) -> None:
        """Nothing to check: the local runtime ignores the Kubernetes settings (a stage may bring them)."""

    def check_locations(self, source: DataSpec, sink: DataSpec) -> None:
        """Every location the worker can reach is fine (a model environment installs what they need)."""
        self.stores = stores_of(source, sink)

    def start(self) -> None:
        """Start the replicas now: they import the runtime while the model is resolved and fetched (not with
        ``model_environment="model"``: their interpreter is known once the model's requirements are)."""
        if self.task.environment.mode != MODEL:
            self.launcher.start_early(self.task.replicas)

    def prepare(self, model: ModelSpec, *, probabilities: bool, output_schema: ModelSchema | None) -> None:
        """Pick the replicas' environment (build or reuse the model's; or warn when the worker's differs from the
        model's recorded one), then hand the replicas the model: they load it while the input is listed, planned and
        checked."""
        self.environment = prepare_environment(model, self.task.environment, self.log, self.stores)
        self.launcher.python = self.environment.python
        self.launcher.prestart(model, self.task.replicas, probabilities=probabilities, output_schema=output_schema)

    def run(self, job: ScoringJob, files: list[InputFile], options: Credentials) -> dict[str, Any]:
        if self.environment is not None:
            job = replace(job, environment=self.environment.manifest)
        return execute_job(
            job, files, storage_options=options, log=self.log, launcher=self.launcher, if_exists=self.task.if_exists,
            # Completed shards stay staged while Airflow will retry, so that the retry re-runs only the rest.
            keep_on_failure=self.task.keep_on_failure,
        )

    def resume(self, event: Mapping[str, Any] | None, options: Credentials) -> dict[str, Any]:
        raise ReplicaError(
            f"A task on the local runtime never defers, but it resumed (event {dict(event or {})!r}); retry it."
        )

    def kill(self) -> None:
        self.launcher.kill()

    def close(self) -> None:
        self.launcher.discard()  # prestarted replicas a failure before the launch left waiting
