"""What every flavour's processing shares: the request, local paths, staging into the target, schema metadata.

A flavour's :meth:`~airflow_batch_scoring.flavors.base.Flavor.process` turns the model the user named into a processed
artifact (under the target folder when it is downloaded or copied) that a replica loads, and describes it as a
:class:`~airflow_batch_scoring.job.ModelSpec`.

Shared with the runtime: never imports Airflow.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote, urlparse

from airflow_batch_scoring.errors import ModelError, SchemaError
from airflow_batch_scoring.schema import ModelSchema


@dataclass
class ArtifactRequest:
    """What a processor is asked to do.

    :param uri: the model as the user named it.
    :param target_dir: the folder the processed artifact is written to (when it is downloaded or copied).
    :param tracking_uri: the MLflow tracking URI (``None``: ``MLFLOW_TRACKING_URI``).
    :param registry_uri: the MLflow registry URI (``None``: the tracking URI).
    :param copy: copy a local artifact into ``target_dir`` (``False``: use it in place).
    :param options: processor-specific options (plug-ins receive them as keyword arguments).
    """

    uri: str
    target_dir: str
    tracking_uri: str | None = None
    registry_uri: str | None = None
    copy: bool = False
    options: dict[str, Any] = field(default_factory=dict)


def local_path(uri: str) -> str | None:
    """The local path ``uri`` names (a plain path or ``file://``), or ``None`` for any other scheme."""
    if uri.startswith("file://"):
        return unquote(urlparse(uri).path)
    if "://" not in uri and not uri.startswith(("models:", "runs:")):
        return os.path.abspath(os.path.expanduser(uri))
    return None


def require_local(uri: str, artifact_type: str, what: str) -> str:
    """Return the existing local path ``uri`` names.

    :raises ModelError: for a non-local URI or a path that does not exist.
    """
    path = local_path(uri)
    if path is None:
        raise ModelError(
            f"A {artifact_type} model is read from a local path or file:// URI, got {uri!r}. Copy it to a "
            f"location the worker can read and name that {what}."
        )
    if not os.path.exists(path):
        raise ModelError(f"The model path {path!r} does not exist: name an existing {what}.")
    return path


def stage(path: str, target_dir: str, copy: bool) -> str:
    """Return where the processed artifact lives: ``path`` itself, or a fresh copy of it in ``target_dir``.

    A previous copy of the same name is replaced, so a retried processing task ends with the same content.
    """
    if not copy:
        return path
    os.makedirs(target_dir, exist_ok=True)
    destination = os.path.join(target_dir, os.path.basename(path.rstrip("/")) or "model")
    if os.path.abspath(destination) == os.path.abspath(path):
        return path
    if os.path.isdir(destination):
        shutil.rmtree(destination)
    elif os.path.exists(destination):
        os.remove(destination)
    if os.path.isdir(path):
        shutil.copytree(path, destination)
    else:
        shutil.copyfile(path, destination)
    return destination


def schemas_from_metadata(
    metadata: Mapping[str, Any] | None, where: str
) -> tuple[ModelSchema | None, ModelSchema | None]:
    """Read ``input_schema`` / ``output_schema`` from metadata (MLmodel metadata, registry tags, ONNX metadata).

    Each value is a JSON list (or its text) of ``{"name": ..., "type": ...}`` with one of the seven types.

    :raises SchemaError: naming ``where`` the malformed schema was found.
    """
    if not metadata:
        return None, None
    found = []
    for key in ("input_schema", "output_schema"):
        value = metadata.get(key)
        try:
            found.append(ModelSchema.parse(value) if value not in (None, "") else None)
        except SchemaError as err:
            raise SchemaError(f"The {key} in {where} is invalid: {err}") from err
    return found[0], found[1]


def first_schema(*candidates: ModelSchema | None) -> ModelSchema | None:
    """The first schema that is known."""
    return next((c for c in candidates if c is not None), None)


def schema_json(schema: ModelSchema | None) -> list[dict[str, str]] | None:
    return schema.to_json() if schema is not None else None


def redact_uri(uri: str | None) -> str | None:
    """``uri`` without a user name or password (``https://u:p@host/x`` -> ``https://host/x``)."""
    if not uri or "@" not in uri:
        return uri
    parsed = urlparse(uri)
    if not parsed.netloc or "@" not in parsed.netloc:
        return uri
    return parsed._replace(netloc=parsed.netloc.rsplit("@", 1)[1]).geturl()


def json_safe(value: Any) -> Any:
    """``value`` made JSON-serialisable (metadata goes to XCom and the manifest)."""
    return json.loads(json.dumps(value, default=str))
