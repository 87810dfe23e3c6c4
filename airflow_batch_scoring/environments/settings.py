"""The ``model_environment`` settings of one run, parsed and checked in one place (operator, CLI, stages).

Shared with the runtime: never imports Airflow.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from airflow_batch_scoring.coercion import to_optional_float
from airflow_batch_scoring.errors import ConfigurationError

#: score in the worker's own Python environment (the default), or in one built from the model's requirements.
WORKER = "worker"
MODEL = "model"
MODES = (WORKER, MODEL)

#: the folder the model environments are cached in (default: ``<user cache dir>/airflow-batch-scoring/environments``).
CACHE_VARIABLE = "BATCH_SCORING_ENV_CACHE"
#: seconds one environment build may take (default :data:`DEFAULT_BUILD_TIMEOUT_S`).
TIMEOUT_VARIABLE = "BATCH_SCORING_ENV_BUILD_TIMEOUT_S"
DEFAULT_BUILD_TIMEOUT_S = 900.0


def parse_mode(value: Any, name: str = "model_environment") -> str:
    """``"worker"`` or ``"model"`` (any case; ``None`` or empty: ``"worker"``).

    :raises ConfigurationError: for any other value.
    """
    text = WORKER if value is None else str(value).strip().lower() or WORKER
    if text not in MODES:
        raise ConfigurationError(
            f"{name} must be 'worker' (score in the worker's own Python environment) or 'model' (build the "
            f"model's environment from its recorded requirements), got {value!r}."
        )
    return text


def default_cache_dir(environ: Mapping[str, str] | None = None) -> str:
    """``BATCH_SCORING_ENV_CACHE``, else ``$XDG_CACHE_HOME/airflow-batch-scoring/environments`` (``~/.cache`` when
    ``XDG_CACHE_HOME`` is not set)."""
    env = os.environ if environ is None else environ
    if env.get(CACHE_VARIABLE, "").strip():
        return os.path.abspath(os.path.expanduser(env[CACHE_VARIABLE].strip()))
    base = env.get("XDG_CACHE_HOME", "").strip() or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "airflow-batch-scoring", "environments")


def _requirements(value: Any) -> tuple[str, ...] | str | None:
    """``requirements=``: a list of requirement specifiers, or the path of a requirements file."""
    if value is None or value == "" or value == []:
        return None
    if isinstance(value, str):
        path = os.path.expanduser(value.strip())
        if not os.path.isfile(path):
            raise ConfigurationError(
                f"requirements={value!r} is not a file: give the path of a requirements file, or a list of "
                "requirement specifiers such as ['scikit-learn==1.7.2']."
            )
        return os.path.abspath(path)
    if isinstance(value, (list, tuple)) and all(isinstance(item, str) and item.strip() for item in value):
        return tuple(item.strip() for item in value)
    raise ConfigurationError(
        f"requirements must be a list of requirement specifiers (['scikit-learn==1.7.2']) or the path of a "
        f"requirements file, got {value!r}."
    )


@dataclass(frozen=True)
class EnvironmentSettings:
    """Where a run's replicas run Python: the worker's environment or the model's own.

    :param mode: ``"worker"`` or ``"model"``.
    :param requirements: the model's requirements when it records none (a bare joblib file) or to override them: a
        tuple of specifiers, or the path of a requirements file; ``None``: the model's recorded ones.
    :param cache_dir: the folder built environments are cached in.
    :param build_timeout_s: seconds one build may take.
    """

    mode: str = WORKER
    requirements: tuple[str, ...] | str | None = None
    cache_dir: str = field(default_factory=default_cache_dir)
    build_timeout_s: float = DEFAULT_BUILD_TIMEOUT_S

    @classmethod
    def parse(
        cls,
        *,
        model_environment: Any = None,
        requirements: Any = None,
        cache_dir: Any = None,
        build_timeout: Any = None,
        environ: Mapping[str, str] | None = None,
    ) -> EnvironmentSettings:
        """Parse the user's values (their rendered template text too); ``None`` means the default.

        :raises ConfigurationError: naming the argument and the value that is wrong.
        """
        env = os.environ if environ is None else environ
        timeout = to_optional_float(
            build_timeout if build_timeout not in (None, "") else env.get(TIMEOUT_VARIABLE) or None,
            "environment_build_timeout",
        )
        if timeout is None:
            timeout = DEFAULT_BUILD_TIMEOUT_S
        if not 0 < timeout < float("inf"):
            raise ConfigurationError(
                f"environment_build_timeout ({TIMEOUT_VARIABLE}) must be a positive number of seconds, got "
                f"{build_timeout if build_timeout not in (None, '') else env.get(TIMEOUT_VARIABLE)!r}."
            )
        folder = str(cache_dir).strip() if cache_dir not in (None, "") else default_cache_dir(env)
        return cls(
            mode=parse_mode(model_environment),
            requirements=_requirements(requirements),
            cache_dir=os.path.abspath(os.path.expanduser(folder)),
            build_timeout_s=timeout,
        )
