"""Model environments: score a model in the Python environment it was made in (``model_environment="model"``), or in
the worker's own (``"worker"``, the default) with a warning when the model's recorded versions differ from it.

:func:`prepare_environment` is what the local runtime and ``batch-scoring score`` call once the model is processed:
it returns the interpreter the replicas run and the manifest's ``environment`` section.

Shared with the runtime: never imports Airflow.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from airflow_batch_scoring.environments.requirements import ModelRequirements, drift_warning, model_requirements
from airflow_batch_scoring.environments.settings import MODEL, EnvironmentSettings
from airflow_batch_scoring.errors import ConfigurationError
from airflow_batch_scoring.job import ModelSpec
from airflow_batch_scoring.specs import DataSpec

__all__ = [
    "EnvironmentSettings", "ModelRequirements", "PreparedEnvironment", "prepare_environment", "stores_of",
]


def stores_of(source: DataSpec, sink: DataSpec) -> tuple[str, ...]:
    """What replicas reading ``source`` and writing ``sink`` need in a model environment: the fsspec implementation
    of each object store, and what the source's and the sink's classes declare (``environment_requirements``)."""
    from airflow_batch_scoring.environments.requirements import store_requirements
    from airflow_batch_scoring.sinks import sink_class
    from airflow_batch_scoring.sources import source_class

    declared = [*getattr(source_class(source), "environment_requirements", ()),
                *getattr(sink_class(sink), "environment_requirements", ())]
    return tuple(sorted({*store_requirements([source.uri, sink.uri]), *declared}))


@dataclass(frozen=True)
class PreparedEnvironment:
    """Where a run's replicas run Python.

    :param python: the interpreter of the replicas.
    :param manifest: the manifest's ``environment`` section (mode; for a model environment its hash, Python
        version, requirements and resolved packages).
    """

    python: str
    manifest: dict[str, Any] = field(default_factory=dict)


def prepare_environment(
    model: ModelSpec,
    settings: EnvironmentSettings,
    log: Callable[[str], None] = print,
    stores: tuple[str, ...] = (),
) -> PreparedEnvironment:
    """The environment the replicas scoring ``model`` run in.

    ``"worker"``: this interpreter; the log warns once when the model's recorded pins differ from its packages.
    ``"model"``: the model's environment, built with uv from its requirements (or ``requirements=``) or reused from
    the cache.

    :param stores: what the run's sources and sinks need in a model environment
        (:func:`~airflow_batch_scoring.environments.requirements.store_requirements`).

    :raises ConfigurationError: ``"model"`` for a model that records no requirements and was given none.
    :raises ModelEnvironmentError: when the environment cannot be built (see
        :func:`~airflow_batch_scoring.environments.builder.ensure_environment`).
    """
    requirements = model_requirements(model.path, settings.requirements) if not _remote(model.path) else None
    if settings.mode != MODEL:
        if requirements is not None:
            warning = drift_warning(requirements)
            if warning:
                log(f"WARNING: {warning}")
        return PreparedEnvironment(sys.executable, {"mode": "worker"})
    if requirements is None or not requirements.names():
        raise ConfigurationError(
            f"model_environment='model' builds the model's environment from its recorded requirements, but "
            f"{model.uri!r} records none (an MLflow model folder's requirements.txt): name them with "
            "requirements=['scikit-learn==1.7.2', ...] or the path of a requirements file, or use "
            "model_environment='worker'."
        )
    from airflow_batch_scoring.environments.builder import ensure_environment

    environment = ensure_environment(replace(requirements, stores=stores), settings, log)
    if not environment.built:
        log(f"Reusing the model environment {environment.key} (Python {environment.python_version}) from the cache")
    return PreparedEnvironment(environment.python, environment.manifest())


def _remote(path: str) -> bool:
    return "://" in path


def replica_environment(names: list[str] | None) -> dict[str, Any]:
    """What a replica records of its own environment (the shard report's ``python``): its interpreter, Python
    version and the installed versions of ``names`` (the model's requirements)."""
    import platform

    from airflow_batch_scoring.environments.requirements import installed_version

    return {
        "executable": sys.executable,
        "version": platform.python_version(),
        "packages": {name: installed_version(name) for name in names or []},
    }
