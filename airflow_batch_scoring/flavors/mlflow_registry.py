"""A ``models:/`` reference resolved to one fixed registry version, whichever client asks the registry.

Two clients answer the same questions (:class:`Registry`): MLflow's own ``MlflowClient`` (any tracking or registry
URI MLflow knows: a database, Databricks, a plug-in's store) and :class:`~.mlflow_rest.RestRegistry` (an HTTP(S)
tracking server through its REST API, without importing MLflow). :func:`resolve_reference` turns their answers into
the fixed URI, the version and the source metadata, and raises the same errors for both.

References (as MLflow reads them): ``models:/name/<version>``, ``models:/name@alias``, ``models:/name/latest`` (the
highest version) and ``models:/name/<stage>`` (the highest version in that stage, e.g. ``Production``).

Never imports Airflow or MLflow.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Protocol

from airflow_batch_scoring.errors import ModelError

REFERENCE = re.compile(r"^models:/(?P<name>[^/@]+)(?:@(?P<alias>[^/]+)|/(?P<suffix>[^/]+))/?$")
LATEST = "latest"
#: where a lookup error tells the user to look
WHERE = "the tracking/registry URI (MLFLOW_TRACKING_URI, or the MLflow connection)"


class RegistryLookupError(Exception):
    """The registry answered that the model, version, alias or stage does not exist (``message`` is its words)."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@dataclass(frozen=True)
class VersionInfo:
    """What the provider keeps of a registry model version."""

    name: str
    version: str
    run_id: str | None
    source: str | None
    tags: dict[str, str]
    aliases: list[str]
    creation_timestamp: int | None


class Registry(Protocol):
    """The registry calls a ``models:/`` reference needs; each raises :class:`RegistryLookupError` when the registry
    says the thing asked for does not exist."""

    def version_by_alias(self, name: str, alias: str) -> VersionInfo: ...

    def version(self, name: str, version: str) -> VersionInfo: ...

    def latest_versions(self, name: str, stage: str | None) -> list[str]:
        """The latest version of each stage (of ``stage`` only, when given)."""
        ...


@dataclass(frozen=True)
class ModelReference:
    """A parsed ``models:/`` reference: exactly one of ``version``, ``alias`` or ``stage`` is set, or none of them
    for ``latest``."""

    uri: str
    name: str
    version: str | None = None
    alias: str | None = None
    stage: str | None = None


def parse_reference(uri: str) -> ModelReference:
    """Parse ``models:/name/<version>``, ``models:/name@alias``, ``models:/name/latest`` or ``models:/name/<stage>``.

    :raises ModelError: for anything else.
    """
    match = REFERENCE.match(uri)
    if match is None or not match["name"].strip():
        raise ModelError(
            f"Cannot read the model reference {uri!r}: use models:/<name>/<version>, models:/<name>@<alias>, "
            "models:/<name>/latest or models:/<name>/<stage>."
        )
    name, alias, suffix = match["name"], match["alias"], match["suffix"]
    if alias is not None:
        return ModelReference(uri, name, alias=alias)
    if suffix.isdigit():
        return ModelReference(uri, name, version=suffix)
    if suffix.lower() == LATEST:
        return ModelReference(uri, name)
    return ModelReference(uri, name, stage=suffix)


def resolve_reference(
    reference: ModelReference, registry: Registry, registry_uri: str | None
) -> tuple[str, str, str, dict[str, Any]]:
    """Return ``(name, version, fixed uri, source metadata)``: the version ``reference`` names *now*.

    :param registry_uri: the registry's URI as the metadata records it (without credentials).
    :raises ModelError: when the model, version, alias or stage is not in the registry (not retried).
    """
    uri, name = reference.uri, reference.name
    metadata: dict[str, Any] = {}
    if reference.alias is not None:
        try:
            info = registry.version_by_alias(name, reference.alias)
        except RegistryLookupError as err:
            raise ModelError(
                f"Cannot resolve {uri!r}: the registry has no alias {reference.alias!r} on model {name!r} "
                f"({err.message}). Check the name and the alias, and {WHERE}."
            ) from err
        metadata["alias"] = reference.alias
    elif reference.version is not None:
        try:
            info = registry.version(name, reference.version)
        except RegistryLookupError as err:
            raise ModelError(
                f"Cannot find {uri!r} in the registry ({err.message}). Check the name and the version, and {WHERE}."
            ) from err
    else:
        which = f"in stage {reference.stage!r}" if reference.stage is not None else "at all"
        try:
            versions = registry.latest_versions(name, reference.stage)
        except RegistryLookupError as err:
            raise ModelError(
                f"Cannot resolve {uri!r}: the registry has no model {name!r} ({err.message}). Check the name, "
                f"and {WHERE}."
            ) from err
        if not versions:
            raise ModelError(
                f"Cannot resolve {uri!r}: the model {name!r} has no version {which}. Register one, or name a "
                "version or an alias (models:/<name>@<alias>)."
            )
        latest = str(max(int(v) for v in versions))
        try:
            info = registry.version(name, latest)
        except RegistryLookupError as err:  # deleted in between
            raise ModelError(f"Cannot find version {latest} of {name!r} in the registry ({err.message}).") from err
        metadata["stage" if reference.stage is not None else "latest"] = reference.stage or True
    metadata.update(
        {
            "registry_uri": registry_uri,
            "run_id": info.run_id,
            "source": info.source,
            "tags": dict(info.tags),
            "aliases": list(info.aliases),
            "creation_timestamp": info.creation_timestamp,
        }
    )
    return name, info.version, f"models:/{name}/{info.version}", metadata
