"""Artifact processors added by other packages, through the ``airflow_batch_scoring.artifact_processors`` entry point.

The entry point's name is the artifact type users write (``artifact_type="acme/model"``); its object is either

- a Python callable ``processor(source_path, target_path, **options)``, or
- a command (a string or a list of arguments, or a :class:`CommandProcessor`), run with the environment variables
  ``SOURCE_PATH`` and ``TARGET_PATH`` set.

``SOURCE_PATH`` is the model as the user named it (downloaded first when it is an MLflow URI); ``TARGET_PATH`` is an
empty folder the processor fills with a model this package can score: an MLflow model folder, a ``.onnx`` file, a
``.joblib``/``.pkl`` file, an H2O MOJO ``.zip``, or an artifact of a flavour a plug-in adds
(:mod:`airflow_batch_scoring.flavors`). A callable may return a mapping that says more: ``artifact_type`` (the
flavour's artifact type of what it wrote), ``path`` (the artifact inside the folder), ``input_schema``,
``output_schema`` and ``metadata`` (recorded as source metadata).

Shared with the runtime: never imports Airflow.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from airflow_batch_scoring import entry_points
from airflow_batch_scoring.errors import ModelError

ENTRY_POINT_GROUP = "airflow_batch_scoring.artifact_processors"


class CommandProcessor:
    """Run a command that reads ``$SOURCE_PATH`` and writes the processed model into ``$TARGET_PATH``.

    :param command: the command, as a list of arguments or one string (split like a shell would, never run by one).
    :param timeout: seconds before the command is stopped; ``None`` waits for it.
    """

    def __init__(self, command: str | Sequence[str], timeout: float | None = None):
        self.command = shlex.split(command) if isinstance(command, str) else [str(part) for part in command]
        if not self.command:
            raise ModelError("A command processor needs a command to run; it was given an empty one.")
        self.timeout = timeout

    def __call__(self, source_path: str, target_path: str, **options: Any) -> None:
        env = dict(os.environ, SOURCE_PATH=source_path, TARGET_PATH=target_path)
        for key, value in options.items():
            env[f"PROCESSOR_{key.upper()}"] = str(value)
        try:
            done = subprocess.run(
                self.command, env=env, capture_output=True, text=True, timeout=self.timeout, check=False
            )
        except (OSError, subprocess.TimeoutExpired) as err:
            raise ModelError(f"The artifact processor command {self.command} could not run: {err}") from err
        if done.returncode != 0:
            tail = (done.stderr or done.stdout or "").strip()[-2000:]
            raise ModelError(
                f"The artifact processor command {self.command} failed with exit code {done.returncode}: {tail}"
            )


def plugin_names() -> list[str]:
    """The artifact types installed plug-ins provide."""
    return sorted({ep.name for ep in entry_points.group(ENTRY_POINT_GROUP)})


def find_plugin(name: str) -> Callable[..., Any] | None:
    """The processor the entry point ``name`` (ignoring case) provides, or ``None`` when none is installed.

    :raises ModelError: when the entry point cannot be loaded or is neither a callable nor a command.
    """
    for ep in entry_points.group(ENTRY_POINT_GROUP):
        if ep.name.lower() != name.lower():
            continue
        try:
            loaded = ep.load()
        except Exception as err:
            raise ModelError(
                f"The artifact processor {name!r} ({ep.value}) cannot be loaded: {type(err).__name__}: {err}"
            ) from err
        if isinstance(loaded, (str, list, tuple)):
            return CommandProcessor(loaded)
        if not callable(loaded):
            raise ModelError(
                f"The artifact processor {name!r} ({ep.value}) is a {type(loaded).__name__}; it must be a callable "
                "(source_path, target_path, **options) or a command (a string or a list of arguments)."
            )
        return loaded
    return None


def run_processor(
    name: str, processor: Callable[..., Any], source_path: str, target_path: str, options: Mapping[str, Any]
) -> dict[str, Any]:
    """Run a plug-in into a fresh ``target_path`` and return what it says about its output.

    :raises ModelError: when it fails, returns something other than a mapping, or writes nothing.
    """
    if os.path.exists(target_path):
        shutil.rmtree(target_path)
    os.makedirs(target_path)
    try:
        result = processor(source_path, target_path, **dict(options))
    except ModelError:
        raise
    except Exception as err:
        raise ModelError(
            f"The artifact processor {name!r} failed on {source_path!r}: {type(err).__name__}: {err}"
        ) from err
    if result is not None and not isinstance(result, Mapping):
        raise ModelError(
            f"The artifact processor {name!r} returned a {type(result).__name__}; it must return None or a mapping "
            "(artifact_type, path, input_schema, output_schema, metadata)."
        )
    result = dict(result or {})
    path = result.get("path")
    if path:
        path = path if os.path.isabs(path) else os.path.join(target_path, path)
    elif os.path.isfile(os.path.join(target_path, "MLmodel")):
        path = target_path
    else:
        entries = [e for e in sorted(os.listdir(target_path)) if not e.startswith((".", "_"))]
        if len(entries) != 1:
            raise ModelError(
                f"The artifact processor {name!r} wrote {entries or 'nothing'} into TARGET_PATH {target_path!r}: it "
                "must write one model there (an MLflow model folder, a .onnx, .joblib/.pkl or MOJO .zip file), or "
                "return {'path': ...} naming it."
            )
        path = os.path.join(target_path, entries[0])
    if not os.path.exists(path):
        raise ModelError(f"The artifact processor {name!r} said it wrote {path!r}, but there is no such file.")
    result["path"] = path
    return result
