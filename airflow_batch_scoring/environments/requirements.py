"""A model's recorded requirements (MLflow's ``requirements.txt`` and ``python_env.yaml``, or ``requirements=``),
what the model environment installs beside them, and how they differ from the worker's own packages.

Shared with the runtime: never imports Airflow.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from importlib import metadata

from airflow_batch_scoring.errors import ConfigurationError

#: what this provider's runtime needs beside the model's own libraries, without Airflow (as the runtime image's
#: ``runtime_image/requirements.in``); unpinned but bounded like the provider's dependencies, so that resolving them
#: together with the model's pinned requirements never moves one of the model's pins.
RUNTIME_REQUIREMENTS = (
    "pyarrow>=17,<27",
    "numpy>=1.26,<3",
    "pandas>=2.1,<4",
    "fsspec>=2024.6",
    "cloudpickle>=2.2,<4",
    "pyyaml>=6,<7",
    "joblib>=1.3,<2",
)
#: the fsspec implementation a replica needs for each store scheme a run reads or writes (installed beside the runtime)
STORE_REQUIREMENTS = {
    "s3": "s3fs", "s3a": "s3fs", "gs": "gcsfs", "gcs": "gcsfs", "abfs": "adlfs", "abfss": "adlfs", "az": "adlfs",
}
#: MLflow models record ``mlflow``; the runtime loads their pyfunc with the client-only distribution.
_SUBSTITUTES = {"mlflow": "mlflow-skinny"}
_NAME = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)")


def canonical_name(name: str) -> str:
    """A distribution's name as the package index compares it (PEP 503: ``Scikit_Learn`` -> ``scikit-learn``)."""
    return re.sub(r"[-_.]+", "-", name).lower()


@dataclass(frozen=True)
class ModelRequirements:
    """What a model needs to load and predict as it was made.

    :param lines: its requirement lines (comments and blank lines dropped), as recorded.
    :param python: the Python version it was made with (``python_env.yaml``), if recorded.
    :param origin: where they come from, for messages (``the model's requirements.txt``, ``requirements=``).
    :param stores: what the run's sources and sinks need beside the runtime (:func:`store_requirements`).
    """

    lines: tuple[str, ...]
    python: str | None = None
    origin: str = "requirements="
    stores: tuple[str, ...] = ()

    def pins(self) -> dict[str, str]:
        """The exactly pinned (``name==version``) requirements, by canonical name."""
        pins = {}
        for line in self.lines:
            match = re.match(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)(\[[^\]]*\])?\s*==\s*([^\s;,]+)\s*(;.*)?$", line)
            if match and "*" not in match.group(3):
                pins[canonical_name(match.group(1))] = match.group(3)
        return pins

    def names(self) -> list[str]:
        """The distributions the lines name (options such as ``--index-url`` left out)."""
        names = []
        for line in self.lines:
            match = None if line.lstrip().startswith("-") else _NAME.match(line)
            if match:
                names.append(canonical_name(match.group(1)))
        return names

    def python_minor(self) -> str | None:
        """``3.11`` of ``3.11.7``: the version the environment is built with (wheels are built per minor version)."""
        if not self.python:
            return None
        match = re.match(r"^\s*(\d+)\.(\d+)", self.python)
        return f"{match.group(1)}.{match.group(2)}" if match else self.python.strip()

    def install_lines(self) -> list[str]:
        """The lines the model environment installs: the model's (``mlflow`` as ``mlflow-skinny``), then the
        runtime's own dependencies and what the run's stores need."""
        lines = []
        for line in self.lines:
            match = None if line.lstrip().startswith("-") else _NAME.match(line)
            name = canonical_name(match.group(1)) if match else None
            if match and name in _SUBSTITUTES:
                line = _SUBSTITUTES[name] + line[match.end():]
            lines.append(line)
        return [*lines, *RUNTIME_REQUIREMENTS, *self.stores]


def store_requirements(uris: Iterable[str | None]) -> tuple[str, ...]:
    """What replicas reading and writing ``uris`` need in a model environment: the fsspec implementation of each
    object store (``s3://`` -> ``s3fs``, ...)."""
    needed = set()
    for uri in uris:
        scheme = uri.split("://", 1)[0].lower() if uri and "://" in uri else ""
        if scheme in STORE_REQUIREMENTS:
            needed.add(STORE_REQUIREMENTS[scheme])
    return tuple(sorted(needed))


def _lines(text: str, folder: str | None) -> tuple[str, ...]:
    """The requirement lines of a requirements file's text; a ``-r``/``-c`` file is named by its absolute path."""
    lines = []
    for raw in text.splitlines():
        line = raw.split(" #", 1)[0].strip()
        if not line or line.startswith("#"):
            continue
        include = re.match(r"^(-r|-c|--requirement|--constraint)\s*(\S+)$", line)
        if include and folder is not None and not os.path.isabs(include.group(2)):
            line = f"{include.group(1)} {os.path.join(folder, include.group(2))}"
        lines.append(line)
    return tuple(lines)


def _recorded_python(folder: str) -> str | None:
    """``python:`` of the model folder's ``python_env.yaml``, if any."""
    path = os.path.join(folder, "python_env.yaml")
    if not os.path.isfile(path):
        return None
    import yaml

    try:
        with open(path, encoding="utf-8") as stream:
            content = yaml.safe_load(stream)
    except (OSError, yaml.YAMLError):
        return None
    version = content.get("python") if isinstance(content, dict) else None
    return str(version) if version else None


def model_requirements(model_path: str, given: Sequence[str] | str | None = None) -> ModelRequirements | None:
    """The requirements of the model at ``model_path``: ``given`` (``requirements=``: specifiers, or a file's path)
    when set, else the MLflow folder's ``requirements.txt`` (and ``python_env.yaml``); ``None`` when it records none.

    :raises ConfigurationError: when the requirements file cannot be read.
    """
    folder = model_path if os.path.isdir(model_path) else None
    python = _recorded_python(folder) if folder else None
    if isinstance(given, str):
        try:
            with open(given, encoding="utf-8") as stream:
                text = stream.read()
        except OSError as err:
            raise ConfigurationError(f"Cannot read the requirements file {given!r} ({err}).") from None
        return ModelRequirements(_lines(text, os.path.dirname(given)), python, f"requirements={given!r}")
    if given:
        return ModelRequirements(tuple(given), python, "requirements=")
    if folder is None or not os.path.isfile(os.path.join(folder, "requirements.txt")):
        return None
    with open(os.path.join(folder, "requirements.txt"), encoding="utf-8") as stream:
        text = stream.read()
    return ModelRequirements(_lines(text, folder), python, "the model's requirements.txt")


def installed_version(name: str) -> str | None:
    """The version of distribution ``name`` installed here, or ``None``."""
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def differing_pins(
    requirements: ModelRequirements, installed: Callable[[str], str | None] = installed_version
) -> list[tuple[str, str, str | None]]:
    """The model's pinned requirements this environment does not have at that version: ``(name, recorded, here)``,
    ``here`` being ``None`` when the distribution is not installed."""
    return [
        (name, version, here)
        for name, version in sorted(requirements.pins().items())
        if (here := installed(name)) != version
    ]


def drift_warning(requirements: ModelRequirements, installed: Callable[[str], str | None] = installed_version) -> str:
    """The warning for a model scored in the worker's environment whose pins differ from it ('' when none do)."""
    differing = differing_pins(requirements, installed)
    if not differing:
        return ""
    listed = ", ".join(
        f"{name} {recorded} recorded, {here or 'not installed'} here" for name, recorded, here in differing
    )
    return (
        f"The model's recorded requirements ({requirements.origin}) differ from this worker's packages: {listed}. "
        "It may fail to load or predict differently here; set model_environment='model' to score it in an "
        "environment built from its requirements."
    )
