"""Model flavours: one module per kind of model artifact, each a :class:`~.base.Flavor` that detects, processes
(driver side) and loads (replica side) its artifacts, and this registry that finds them.

The built-in flavours are ``mlflow`` (:mod:`.mlflow`), ``sklearn`` (:mod:`.sklearn`), ``onnx`` (:mod:`.onnx`) and
``mojo`` (:mod:`.mojo`). Other packages add flavours through the ``airflow_batch_scoring.flavors`` entry point group:
the entry point's name is the flavour's name (what a processed model records as ``flavor``), its object a
:class:`~.base.Flavor` subclass (or instance). Such a package must be installed where the model is processed and where
the replicas run (the runtime image, for Kubernetes).

Importing this package imports no model library (MLflow, onnxruntime, Java): each flavour imports its own when it
processes or loads a model. Never imports Airflow.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from importlib.metadata import EntryPoint

from airflow_batch_scoring import entry_points
from airflow_batch_scoring.errors import ModelError
from airflow_batch_scoring.flavors.base import Flavor, Predictor
from airflow_batch_scoring.flavors.mlflow import MlflowFlavor
from airflow_batch_scoring.flavors.mojo import MojoFlavor
from airflow_batch_scoring.flavors.onnx import OnnxFlavor
from airflow_batch_scoring.flavors.sklearn import SklearnFlavor
from airflow_batch_scoring.job import ModelSpec
from airflow_batch_scoring.schema import ModelSchema

ENTRY_POINT_GROUP = "airflow_batch_scoring.flavors"
#: The built-in flavours, in the order ``artifact_type="auto"`` asks them.
BUILTIN: tuple[Flavor, ...] = (MlflowFlavor(), SklearnFlavor(), OnnxFlavor(), MojoFlavor())

__all__ = [
    "BUILTIN", "ENTRY_POINT_GROUP", "Flavor", "Predictor", "detect", "flavor_for_type", "flavor_named",
    "installed", "load_predictor", "plugin_names",
]


def _load(ep: EntryPoint) -> Flavor:
    """The flavour the entry point ``ep`` provides.

    :raises ModelError: when it cannot be loaded, is not a Flavor, or its name is not the entry point's.
    """
    try:
        loaded = ep.load()
        flavor = loaded() if isinstance(loaded, type) and issubclass(loaded, Flavor) else loaded
    except Exception as err:
        raise ModelError(
            f"The model flavour {ep.name!r} ({ep.value}) cannot be loaded: {type(err).__name__}: {err}"
        ) from err
    if not isinstance(flavor, Flavor):
        raise ModelError(
            f"The model flavour {ep.name!r} ({ep.value}) is a {type(flavor).__name__}; it must be a subclass (or an "
            "instance) of airflow_batch_scoring.flavors.base.Flavor."
        )
    if str(getattr(flavor, "name", "")).lower() != ep.name.lower() or not getattr(flavor, "artifact_type", ""):
        raise ModelError(
            f"The model flavour {ep.name!r} ({ep.value}) is named {getattr(flavor, 'name', None)!r}: give it "
            f"name = {ep.name!r} (the entry point's name) and an artifact_type."
        )
    return flavor


def plugin_names() -> list[str]:
    """The names of the flavours installed packages add (without loading them)."""
    builtin = {flavor.name for flavor in BUILTIN}
    return sorted({ep.name for ep in entry_points.group(ENTRY_POINT_GROUP) if ep.name.lower() not in builtin})


def _plugins(name: str | None = None) -> tuple[list[Flavor], list[ModelError]]:
    """The flavours installed packages add (only the one called ``name``, ignoring case, when given), and why each
    that cannot be loaded cannot."""
    builtin = {flavor.name for flavor in BUILTIN}
    found, broken = [], []
    for ep in entry_points.group(ENTRY_POINT_GROUP):
        if ep.name.lower() in builtin or (name is not None and ep.name.lower() != name.lower()):
            continue
        try:
            found.append(_load(ep))
        except ModelError as err:
            broken.append(err)
    return found, broken


def _first(fits: Callable[[Flavor], bool], *, strict: bool) -> Flavor | None:
    """The first flavour that ``fits``: built-in flavours first, then plug-ins.

    :param strict: when none fits and a plug-in cannot be loaded (it may be the one), raise why it cannot.
    """
    match = next((flavor for flavor in BUILTIN if fits(flavor)), None)
    if match is not None:
        return match
    found, broken = _plugins()
    match = next((flavor for flavor in found if fits(flavor)), None)
    if match is None and broken and strict:
        raise broken[0]
    return match


def installed() -> list[Flavor]:
    """Every flavour that can be loaded: the built-in ones, then those installed packages add."""
    return [*BUILTIN, *_plugins()[0]]


def flavor_named(name: str) -> Flavor:
    """The flavour a processed model names (``ModelSpec.flavor``).

    :raises ModelError: when no flavour of that name is installed, or it cannot be loaded.
    """
    for flavor in BUILTIN:
        if flavor.name == name:
            return flavor
    found, broken = _plugins(name) if name else ([], [])
    if found:
        return found[0]
    if broken:
        raise broken[0]
    names = ", ".join(repr(known) for known in [*(flavor.name for flavor in BUILTIN), *plugin_names()])
    raise ModelError(
        f"Unknown model flavor {name!r}: use one of {names} (process the model with ProcessArtifactOperator or "
        f"process_model to get a valid spec), or install the package that provides it through the "
        f"{ENTRY_POINT_GROUP!r} entry point where the replicas run."
    )


def flavor_for_type(artifact_type: str) -> Flavor | None:
    """The flavour whose artifact type (or one of its other spellings) is ``artifact_type``, ignoring case (``None``
    when none is: it may be an artifact processor's)."""
    wanted = artifact_type.strip().lower()
    return _first(lambda flavor: wanted == flavor.artifact_type.lower() or wanted in flavor.aliases, strict=False)


def detect(uri: str, path: str | None) -> Flavor | None:
    """The flavour of the model ``uri`` names: one that claims the URI, else (for the existing local ``path``) the
    first whose :meth:`~.base.Flavor.detect` says yes; built-in flavours are asked first.

    :raises ModelError: when none is and a plug-in flavour cannot be loaded.
    """
    return _first(lambda flavor: flavor.claims_uri(uri) or (path is not None and flavor.detect(path)), strict=True)


def load_predictor(spec: ModelSpec, *, probabilities: bool, output_schema: ModelSchema | None) -> Predictor:
    """Load the processed model at ``spec.path`` with its flavour, as it is (a replica loads a verified private copy:
    :func:`airflow_batch_scoring.runtime.verified.load_verified`).

    :param output_schema: names (and types) for the outputs; ``None`` uses the processed model's own.
    :raises ModelError: when the path does not exist, the flavour is unknown, or the path holds no loadable model.
    """
    if output_schema is None and spec.output_schema:
        output_schema = ModelSchema.parse(spec.output_schema)  # the processed model's own (metadata or signature)
    if not os.path.exists(spec.path):
        raise ModelError(f"The model path {spec.path!r} does not exist; check the model URI ({spec.uri!r}).")
    return flavor_named(spec.flavor).load(spec, probabilities=probabilities, output_schema=output_schema)
