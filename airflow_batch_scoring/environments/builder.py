"""Build (or reuse) a model's own Python environment with ``uv``: the model's requirements, this provider's runtime
without Airflow, cached by a hash of (requirements, Python version, provider version).

An environment is built in a temporary folder beside its final one and renamed into place once complete (a reader
never sees half an environment); a file lock per environment makes concurrent builds of the same one build it once
(the others wait, then reuse it). Each environment keeps its build's log (``build.log``), the resolved packages
(``freeze.txt``) and a description (``environment.json``); ``<cache>/builds.log`` gets one line per build.

Shared with the runtime: never imports Airflow.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import IO, Any

import airflow_batch_scoring
from airflow_batch_scoring.environments.requirements import ModelRequirements, canonical_name
from airflow_batch_scoring.environments.settings import EnvironmentSettings
from airflow_batch_scoring.errors import ConfigurationError, ModelEnvironmentError

#: bumped when the layout of a built environment changes (part of every key).
LAYOUT = 2
BUILDS_LOG = "builds.log"
_CREDENTIALS = re.compile(r"(?<=://)[^/\s@]+@")


def mask_credentials(text: str) -> str:
    """``https://user:token@host/simple`` -> ``https://***@host/simple`` (index URLs in uv's messages)."""
    return _CREDENTIALS.sub("***@", text)


def find_uv() -> str:
    """The ``uv`` binary: the ``uv`` Python package's (the ``environments`` extra), else ``uv`` on ``PATH``.

    :raises ConfigurationError: when neither exists.
    """
    try:
        from uv import find_uv_bin  # type: ignore[import-not-found,unused-ignore]

        return str(find_uv_bin())
    except (ImportError, FileNotFoundError):
        pass
    found = shutil.which("uv")
    if found:
        return found
    raise ConfigurationError(
        "model_environment='model' builds the model's environment with uv, which is not installed: install the "
        "provider with its 'environments' extra (pip install 'airflow-batch-scoring[environments]') or put uv on "
        "PATH; or use model_environment='worker'."
    )


def _package_folder() -> str:
    return os.path.dirname(os.path.abspath(airflow_batch_scoring.__file__))


def _source_tree() -> str | None:
    """The source tree the provider is installed from (an editable install or a checkout), else ``None``."""
    parent = os.path.dirname(_package_folder())
    pyproject = os.path.join(parent, "pyproject.toml")
    try:
        with open(pyproject, encoding="utf-8") as stream:
            text = stream.read()
    except OSError:
        return None
    return parent if re.search(r'(?m)^name\s*=\s*"airflow-batch-scoring"', text) else None


def provider_version() -> str:
    """This provider's version and a digest of its code (an environment built for other code is not reused)."""
    digest = hashlib.sha256()
    root = _package_folder()
    for folder, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if d != "__pycache__")
        for name in sorted(files):
            if name.endswith((".py", ".typed")):
                path = os.path.join(folder, name)
                digest.update(os.path.relpath(path, root).encode() + b"\0")
                with open(path, "rb") as stream:
                    digest.update(stream.read())
    return f"{airflow_batch_scoring.__version__}+{digest.hexdigest()[:12]}"


def environment_key(requirements: ModelRequirements, python: str, provider: str) -> str:
    """The cache key of an environment: a hash of what it installs, its Python version and the provider's version."""
    document = {"layout": LAYOUT, "install": requirements.install_lines(), "python": python, "provider": provider}
    return hashlib.sha256(json.dumps(document, sort_keys=True).encode()).hexdigest()[:24]


@dataclass(frozen=True)
class ModelEnvironment:
    """A built model environment.

    :param key: its cache key (the hash of requirements, Python version and provider version).
    :param folder: its folder in the cache.
    :param python_version: the interpreter's version (``3.11.7``).
    :param packages: the installed distributions and their versions (``uv pip freeze``), by canonical name.
    :param requirements: the model's requirement lines it was built from.
    :param built: ``True`` when this call built it, ``False`` when it came from the cache.
    :param build_s: seconds its build took.
    """

    key: str
    folder: str
    python_version: str
    packages: dict[str, str] = field(default_factory=dict)
    requirements: tuple[str, ...] = ()
    built: bool = False
    build_s: float = 0.0

    @property
    def python(self) -> str:
        """The interpreter the replicas run."""
        return os.path.join(self.folder, "bin", "python")

    def manifest(self) -> dict[str, Any]:
        """The manifest's ``environment`` section."""
        return {
            "mode": "model", "hash": self.key, "python_version": self.python_version,
            "requirements": list(self.requirements), "packages": dict(self.packages),
        }

    @classmethod
    def read(cls, folder: str, built: bool = False) -> ModelEnvironment:
        """The environment built into ``folder`` (its ``environment.json``)."""
        with open(os.path.join(folder, "environment.json"), encoding="utf-8") as stream:
            data = json.load(stream)
        return cls(
            key=data["key"], folder=folder, python_version=data["python_version"], packages=dict(data["packages"]),
            requirements=tuple(data["requirements"]), built=built, build_s=float(data.get("build_s", 0.0)),
        )


class _Build:
    """One build: its steps run with uv, each logged into ``log``, within one deadline."""

    def __init__(self, uv: str, log: IO[str], deadline: float, timeout_s: float):
        self.uv = uv
        self.log = log
        self.deadline = deadline
        self.timeout_s = timeout_s

    def run(self, command: list[str]) -> subprocess.CompletedProcess[str]:
        remaining = self.deadline - time.monotonic()
        self.log.write(f"$ {' '.join(command)}\n")
        self.log.flush()
        environment = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME")}
        environment.setdefault("UV_NO_PROGRESS", "1")
        try:
            if remaining <= 0:
                raise subprocess.TimeoutExpired(command, 0)
            done = subprocess.run(
                command, capture_output=True, text=True, timeout=remaining, env=environment, stdin=subprocess.DEVNULL
            )
        except subprocess.TimeoutExpired:
            self.log.write("(timed out)\n")
            raise ModelEnvironmentError(
                f"Building the model's environment took longer than {self.timeout_s:g}s "
                "(environment_build_timeout, or BATCH_SCORING_ENV_BUILD_TIMEOUT_S): nothing was scored. Raise the "
                "timeout, or pre-build the environment by running the task once with a longer one."
            ) from None
        self.log.write(mask_credentials(done.stdout + done.stderr) + f"(exit {done.returncode})\n")
        self.log.flush()
        return done


def _tail(text: str, lines: int = 15) -> str:
    return "\n".join(mask_credentials(text).strip().splitlines()[-lines:])


def _install_failure(requirements: ModelRequirements, output: str) -> ModelEnvironmentError:
    """The error of an install uv refused, naming the requirement(s) uv's message names."""
    said = canonical_name(output)
    named = [name for name in requirements.names() if re.search(rf"(?<![\w-]){re.escape(name)}(?![\w-])", said)]
    which = f" ({', '.join(named)})" if named else ""
    return ModelEnvironmentError(
        f"The model's requirements{which} from {requirements.origin} cannot be resolved or installed; nothing was "
        f"scored. uv said:\n{_tail(output)}\nFix the requirements (or give requirements=[...]), or score with "
        "model_environment='worker'."
    )


def _python_failure(python: str, requirements: ModelRequirements, output: str) -> ModelEnvironmentError:
    where = "python_env.yaml" if requirements.python else "the worker's version"
    return ModelEnvironmentError(
        f"Python {python} (the model's {where}) is not available to uv, so its environment cannot be built; nothing "
        f"was scored. uv said:\n{_tail(output, 6)}\nInstall it (uv python install {python}), or score with "
        "model_environment='worker'."
    )


def _freeze(text: str) -> dict[str, str]:
    packages = {}
    for line in text.splitlines():
        name, sep, version = line.strip().partition("==")
        if sep:
            packages[canonical_name(name)] = version.strip()
        elif " @ " in line:  # installed from a folder or a file (this provider)
            name = canonical_name(line.split(" @ ", 1)[0].strip())
            packages[name] = airflow_batch_scoring.__version__ if name == "airflow-batch-scoring" else line.strip()
    return packages


@contextlib.contextmanager
def _locked(path: str, deadline: float, timeout_s: float, log: Callable[[str], None]) -> Iterator[None]:
    """Hold the file lock ``path`` (waiting for another build of the same environment until ``deadline``)."""
    with open(path, "a") as handle:
        said = False
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if not said:
                    log("Another task is building the same model environment: waiting for it")
                    said = True
                if time.monotonic() > deadline:
                    raise ModelEnvironmentError(
                        f"Another build of the same model environment held its lock {path!r} for longer than "
                        f"{timeout_s:g}s (environment_build_timeout); nothing was scored. Retry once it finished."
                    ) from None
                time.sleep(0.2)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def ensure_environment(
    requirements: ModelRequirements, settings: EnvironmentSettings, log: Callable[[str], None] = print
) -> ModelEnvironment:
    """The model's environment from the cache, built first when it is not there yet.

    :raises ModelEnvironmentError: when the requirements cannot be resolved or installed (naming the package and
        quoting uv, index credentials masked), the Python version is not available, or the build times out.
    :raises ConfigurationError: when uv is not installed.
    """
    python = requirements.python_minor() or f"{sys.version_info.major}.{sys.version_info.minor}"
    key = environment_key(requirements, python, provider_version())
    os.makedirs(settings.cache_dir, exist_ok=True)
    final = os.path.join(settings.cache_dir, key)
    if os.path.isfile(os.path.join(final, "environment.json")):
        return ModelEnvironment.read(final)
    deadline = time.monotonic() + settings.build_timeout_s
    with _locked(os.path.join(settings.cache_dir, f"{key}.lock"), deadline, settings.build_timeout_s, log):
        if os.path.isfile(os.path.join(final, "environment.json")):  # built by the task that held the lock
            log(f"Model environment {key} was built meanwhile by another task: reusing it")
            return ModelEnvironment.read(final)
        log(f"Building the model environment {key} (Python {python}; {requirements.origin}) in {settings.cache_dir}")
        return _build(requirements, python, key, settings, deadline, log)


def _build(
    requirements: ModelRequirements, python: str, key: str, settings: EnvironmentSettings, deadline: float,
    log: Callable[[str], None],
) -> ModelEnvironment:
    uv = find_uv()
    started = time.monotonic()
    for stale in os.listdir(settings.cache_dir):  # an earlier build of this key that was killed (we hold its lock)
        if stale.startswith(f".{key}.") and stale.endswith(".tmp"):
            shutil.rmtree(os.path.join(settings.cache_dir, stale), ignore_errors=True)
    temporary = os.path.join(settings.cache_dir, f".{key}.{uuid.uuid4().hex[:8]}.tmp")
    failed_log = os.path.join(settings.cache_dir, f"{key}.failed.log")
    os.makedirs(temporary)
    log_path = os.path.join(temporary, "build.log")
    try:
        with open(log_path, "w", encoding="utf-8") as stream:
            stream.write(f"# model environment {key}: Python {python}, provider {provider_version()}\n")
            build = _Build(uv, stream, deadline, settings.build_timeout_s)
            done = build.run([uv, "venv", "--relocatable", "--allow-existing", "--python", python, temporary])
            if done.returncode != 0:
                raise _python_failure(python, requirements, done.stderr or done.stdout)
            interpreter = os.path.join(temporary, "bin", "python")
            wanted = os.path.join(temporary, "requirements.txt")
            with open(wanted, "w", encoding="utf-8") as f:
                f.write("\n".join(requirements.install_lines()) + "\n")
            # compiled now, once: replicas start faster, and a worker with PYTHONDONTWRITEBYTECODE never caches it
            done = build.run([uv, "pip", "install", "--compile-bytecode", "--python", interpreter, "-r", wanted])
            with open(wanted, "w", encoding="utf-8") as f:  # kept for the record, without index credentials
                f.write(mask_credentials("\n".join(requirements.install_lines())) + "\n")
            if done.returncode != 0:
                raise _install_failure(requirements, done.stderr or done.stdout)
            tree = _source_tree()
            if tree is not None:  # the provider itself, without its dependencies (Airflow, MLflow, ...)
                done = build.run([uv, "pip", "install", "--no-deps", "--compile-bytecode", "--python", interpreter,
                                  tree])
                if done.returncode != 0:
                    raise ModelEnvironmentError(
                        f"Installing this provider into the model's environment failed:\n{_tail(done.stderr)}"
                    )
            else:  # an installed wheel: copy its package into the environment
                _copy_package(interpreter, build)
            done = build.run([interpreter, "-c", "import airflow_batch_scoring.runtime.cli, platform; "
                              "print(platform.python_version())"])
            if done.returncode != 0:
                raise ModelEnvironmentError(
                    f"The model's environment was built but the runtime does not start in it:\n{_tail(done.stderr)}"
                )
            version = done.stdout.strip().splitlines()[-1]
            frozen = build.run([uv, "pip", "freeze", "--python", interpreter])
            with open(os.path.join(temporary, "freeze.txt"), "w", encoding="utf-8") as f:
                f.write(frozen.stdout)
            build_s = round(time.monotonic() - started, 3)
            description = {
                "key": key, "python_version": version,
                "requirements": [mask_credentials(line) for line in requirements.lines],
                "packages": _freeze(frozen.stdout), "provider": provider_version(), "build_s": build_s,
                "built_at": datetime.now(timezone.utc).isoformat(),
            }
            stream.write(f"# built in {build_s:.1f}s\n")
        with open(os.path.join(temporary, "environment.json"), "w", encoding="utf-8") as f:
            json.dump(description, f, indent=2, sort_keys=True)
        os.rename(temporary, os.path.join(settings.cache_dir, key))  # atomic: complete, or not there
    except BaseException:
        with contextlib.suppress(OSError):
            shutil.copyfile(log_path, failed_log)
        shutil.rmtree(temporary, ignore_errors=True)
        raise
    with open(os.path.join(settings.cache_dir, BUILDS_LOG), "a", encoding="utf-8") as f:
        f.write(f"{description['built_at']} built {key} in {build_s:.1f}s (Python {version})\n")
    log(f"Built the model environment {key} in {build_s:.1f}s (Python {version})")
    return ModelEnvironment.read(os.path.join(settings.cache_dir, key), built=True)


def _copy_package(interpreter: str, build: _Build) -> None:
    """Copy the installed provider package into the environment's site-packages (no source tree to install)."""
    done = build.run([interpreter, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"])
    target = os.path.join(done.stdout.strip().splitlines()[-1], "airflow_batch_scoring")
    shutil.copytree(_package_folder(), target, ignore=shutil.ignore_patterns("__pycache__"))
    build.log.write(f"copied {_package_folder()} to {target}\n")
