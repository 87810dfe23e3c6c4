"""Stages: DEV, SIT, UAT, PROD (or your own) as one parameter that picks the model and the runtime.

A stage names a registry alias (so ``models:/churn`` with ``stage="PROD"`` scores ``models:/churn@prod``) and may
carry runtime settings of its own: the runtime, the replicas, and the Kubernetes settings (namespace, node selector,
resources, ...). Stages are configured once for the deployment, in Airflow's configuration::

    [batch_scoring]
    stages = {"PROD": {"alias": "champion", "runtime": "kubernetes", "replicas": 8,
                       "kubernetes": {"namespace": "scoring-prod", "node_selector": {"pool": "scoring"}}},
              "DEV": {"alias": "dev"}}

(or ``AIRFLOW__BATCH_SCORING__STAGES``). Without configuration the four usual stages exist with the alias of their
lower-cased name (``DEV`` -> ``@dev``) and no runtime settings. Stage names ignore case.

The operator reads the configuration and passes it in.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from airflow_batch_scoring.environments.settings import parse_mode
from airflow_batch_scoring.errors import ConfigurationError

DEFAULT_STAGES = ("DEV", "SIT", "UAT", "PROD")
_KEYS = {"alias", "runtime", "replicas", "kubernetes", "description", "model_environment"}
_ALIAS = re.compile(r"^[A-Za-z0-9_-]+$")


@dataclass(frozen=True)
class Stage:
    """One stage: the registry alias it scores and the runtime settings it brings.

    :param name: the stage's name, upper-cased (``PROD``).
    :param alias: the registry alias the stage scores (``models:/name@<alias>``).
    :param runtime: ``local`` or ``kubernetes``; ``None`` keeps the operator's.
    :param replicas: replicas; ``None`` keeps the operator's.
    :param kubernetes: Kubernetes settings (the operator's ``kubernetes`` keys); the operator's own settings win.
    :param model_environment: ``worker`` or ``model`` (see :mod:`airflow_batch_scoring.environments`); ``None``
        keeps the operator's.
    """

    name: str
    alias: str
    runtime: str | None = None
    replicas: int | None = None
    kubernetes: dict[str, Any] = field(default_factory=dict)
    description: str | None = None
    model_environment: str | None = None


def parse_stages(config: str | Mapping[str, Any] | None) -> dict[str, Stage]:
    """Read the ``[batch_scoring] stages`` configuration (JSON text or a mapping); the defaults when empty.

    :raises ConfigurationError: naming the stage and the key that is wrong.
    """
    if config is None or (isinstance(config, str) and not config.strip()):
        return {name: Stage(name, name.lower()) for name in DEFAULT_STAGES}
    if isinstance(config, str):
        try:
            config = json.loads(config)
        except ValueError as err:
            raise ConfigurationError(
                f"[batch_scoring] stages is not valid JSON ({err}); write it as "
                '{"PROD": {"alias": "prod", "runtime": "kubernetes", "kubernetes": {"namespace": "..."}}}.'
            ) from None
    if not isinstance(config, Mapping):
        raise ConfigurationError("[batch_scoring] stages must be a JSON object keyed by stage name.")
    stages = {}
    for raw_name, settings in config.items():
        name = str(raw_name).strip().upper()
        settings = settings or {}
        if not isinstance(settings, Mapping):
            raise ConfigurationError(f"Stage {name!r} must be an object with the keys {sorted(_KEYS)}.")
        unknown = sorted(set(settings) - _KEYS)
        if unknown:
            raise ConfigurationError(f"Stage {name!r} has unknown key(s) {unknown}; the keys are {sorted(_KEYS)}.")
        alias = str(settings.get("alias") or name.lower())
        if not _ALIAS.match(alias):
            raise ConfigurationError(f"Stage {name!r}: alias {alias!r} must be letters, digits, '_' or '-'.")
        replicas = settings.get("replicas")
        if replicas is not None and (not isinstance(replicas, int) or isinstance(replicas, bool) or replicas < 1):
            raise ConfigurationError(f"Stage {name!r}: replicas must be a positive integer, got {replicas!r}.")
        kubernetes = settings.get("kubernetes") or {}
        if not isinstance(kubernetes, Mapping):
            raise ConfigurationError(f"Stage {name!r}: kubernetes must be an object of Kubernetes settings.")
        mode = settings.get("model_environment")
        stages[name] = Stage(
            name, alias, settings.get("runtime"), replicas, dict(kubernetes), settings.get("description"),
            parse_mode(mode, f"Stage {name!r}: model_environment") if mode is not None else None,
        )
    return stages


def get_stage(name: str, config: str | Mapping[str, Any] | None) -> Stage:
    """Return the stage ``name`` (any case) from the configuration.

    :raises ConfigurationError: for an unknown stage, listing the configured ones.
    """
    stages = parse_stages(config)
    key = str(name).strip().upper()
    if key not in stages:
        raise ConfigurationError(
            f"Unknown stage {name!r}: the configured stages are {sorted(stages)} (set them in [batch_scoring] "
            "stages, or AIRFLOW__BATCH_SCORING__STAGES)."
        )
    return stages[key]


def model_for_stage(model: str, stage: Stage) -> str:
    """The model reference a stage scores: ``models:/name`` becomes ``models:/name@<alias>``.

    :raises ConfigurationError: when the model already names a version or an alias, or is not a registry model
        (a stage picks the model through the registry).
    """
    if not model.startswith("models:/"):
        raise ConfigurationError(
            f"stage={stage.name!r} picks the model through a registry alias, so model must be a registry name "
            f"'models:/<name>', got {model!r}."
        )
    name = model[len("models:/"):].strip("/")
    if not name or "/" in name or "@" in name:
        raise ConfigurationError(
            f"stage={stage.name!r} picks the version through the alias {stage.alias!r}: give the model as "
            f"'models:/<name>' without a version or alias, got {model!r}."
        )
    return f"models:/{name}@{stage.alias}"
