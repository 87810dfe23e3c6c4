"""The runtime image installs the package from its wheel, checked on the Dockerfile's text (no Docker engine here).

The wheel ``uv build --wheel`` writes is the one the Dockerfile copies and installs, the build context
(``Dockerfile.dockerignore``) admits that wheel and not the source tree, and every file a COPY needs is in the context.
"""

from __future__ import annotations

import fnmatch
import re
import shlex
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "runtime_image" / "Dockerfile"
IGNORE = ROOT / "runtime_image" / "Dockerfile.dockerignore"


def _instructions() -> list[tuple[str, str]]:
    """The Dockerfile's instructions (continuation lines joined, comments dropped) as (keyword, arguments)."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text(encoding="utf-8"))
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    instructions = [(line.split(None, 1)[0].upper(), line.split(None, 1)[1]) for line in lines]
    defaults = dict(args.split("=", 1) for keyword, args in instructions if keyword == "ARG" and "=" in args)
    # an ARG is read with its default (a model image passes its own requirements with --build-arg)
    return [(keyword, re.sub(r"\$\{(\w+)\}", lambda m: defaults.get(m[1], m[0]), args))
            for keyword, args in instructions]


def _wheel_name() -> str:
    pyproject = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    name, version = (re.search(rf'^{key} = "([^"]+)"', pyproject, re.M)[1] for key in ("name", "version"))
    return f"{name.replace('-', '_')}-{version}-py3-none-any.whl"


def _in_context(path: str) -> bool:
    """Whether the build context holds ``path``: the last .dockerignore pattern that matches it decides."""
    admitted = True
    for line in IGNORE.read_text(encoding="utf-8").splitlines():
        pattern = line.strip()
        if not pattern or pattern.startswith("#"):
            continue
        negate = pattern.startswith("!")
        pattern = pattern.removeprefix("!").rstrip("/")
        parts = path.split("/")
        prefixes = ["/".join(parts[:i]) for i in range(1, len(parts) + 1)]
        if any(fnmatch.fnmatch(prefix, pattern) or fnmatch.fnmatch(prefix, pattern.removeprefix("**/"))
               for prefix in prefixes):
            admitted = negate
    return admitted


def test_the_image_installs_the_built_wheel_without_dependencies():
    copies = [args.split() for keyword, args in _instructions() if keyword == "COPY"]
    [wheel_copy] = [args for args in copies if args[0].startswith("dist/")]
    source, target = wheel_copy
    assert fnmatch.fnmatch(f"dist/{_wheel_name()}", source), f"{source} does not match what uv build writes"
    installs = [shlex.split(args) for keyword, args in _instructions() if keyword == "RUN" and "pip install" in args]
    [package_install] = [words for words in installs if "--no-deps" in words]
    [installed] = [w for w in package_install if w.endswith(".whl")]
    assert installed.startswith(target) and fnmatch.fnmatch(target + _wheel_name(), installed)
    assert not any(keyword == "COPY" and "airflow_batch_scoring" in args.split()[0] and not args.startswith("dist/")
                   for keyword, args in _instructions()), "the image must not copy the source tree"
    # the pinned requirements' layer comes first, so that a change of the package does not reinstall them
    order = [i for i, (keyword, args) in enumerate(_instructions()) if keyword == "RUN" and "pip install" in args]
    assert "-r /tmp/requirements.txt" in _instructions()[order[0]][1] and "--no-deps" in _instructions()[order[1]][1]


def test_the_build_context_holds_the_wheel_and_not_the_sources():
    assert _in_context(f"dist/{_wheel_name()}")
    assert _in_context("runtime_image/requirements.txt")
    assert _in_context("model-requirements/churn-3.txt")  # a model image's requirements (--build-arg REQUIREMENTS)
    for outside in ("airflow_batch_scoring/__init__.py", "pyproject.toml", "tests/conftest.py", ".venv/bin/python",
                    f"dist/{_wheel_name().replace('.whl', '.tar.gz').replace('-py3-none-any', '')}"):
        assert not _in_context(outside), outside
    for keyword, args in _instructions():
        if keyword == "COPY":
            source = args.split()[0]
            assert _in_context(source.replace("*", "0.1.0") if "*" in source else source), source


def test_the_build_instructions_build_the_wheel_first():
    header = DOCKERFILE.read_text(encoding="utf-8").split("FROM ", 1)[0]
    assert "uv build --wheel --out-dir dist" in header
    assert header.index("uv build") < header.index("docker build")
