"""Check the built distributions in a folder (``uv build`` output): what the wheel and the sdist hold.

    python scripts/check_dist.py dist/

The wheel holds the package (every module of the checkout's ``airflow_batch_scoring/``, and ``py.typed``), the
provider entry point (``apache_airflow_provider``), the ``batch-scoring`` console script, the declared Airflow bound
and extras, and nothing else (no tests, no virtual environment, no demo state). The sdist holds the sources and no
local state. Exits non-zero with every problem listed. The metadata's rendering is ``twine check``'s job.
"""

from __future__ import annotations

import configparser
import re
import sys
import tarfile
import zipfile
from email.parser import Parser
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = "airflow_batch_scoring"
#: local state that must never be packaged (a virtual environment, the demo's Airflow home, caches, node modules)
LOCAL_STATE = (".venv/", ".airflow-demo/", "__pycache__/", ".node/", "node_modules/", ".mypy_cache/", "dist/",
               ".ruff_cache/", "mlruns/", "mlflow.db")


def _one(folder: Path, pattern: str) -> Path:
    found = sorted(folder.glob(pattern))
    if len(found) != 1:
        raise SystemExit(f"expected one {pattern} in {folder}, found {[p.name for p in found]}: rebuild into an "
                         "empty folder (rm -rf dist && uv build)")
    return found[0]


def wheel_problems(wheel: Path) -> list[str]:
    """What is wrong with ``wheel`` (an empty list when nothing is)."""
    problems = []
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        info = next(n for n in names if n.endswith(".dist-info/METADATA")).rpartition("/")[0]
        metadata = Parser().parsestr(archive.read(f"{info}/METADATA").decode())
        entry_points = configparser.ConfigParser()
        entry_points.read_string(archive.read(f"{info}/entry_points.txt").decode())
    expected = {p.relative_to(ROOT).as_posix() for p in (ROOT / PACKAGE).rglob("*.py")} | {f"{PACKAGE}/py.typed"}
    missing = sorted(expected - set(names))
    if missing:
        problems.append(f"the wheel lacks {missing}")
    stray = [n for n in names if not n.startswith((f"{PACKAGE}/", f"{info}/"))]
    stray += [n for n in names if any(part in n for part in LOCAL_STATE) or "/tests/" in n or n.startswith("tests/")]
    if stray:
        problems.append(f"the wheel holds files that are not the package's: {sorted(set(stray))[:20]}")
    provider = entry_points.get("apache_airflow_provider", "provider_info", fallback=None)
    if provider != f"{PACKAGE}.get_provider_info:get_provider_info":
        problems.append(f"the apache_airflow_provider entry point is {provider!r}")
    script = entry_points.get("console_scripts", "batch-scoring", fallback=None)
    if script != f"{PACKAGE}.cli:console":
        problems.append(f"the batch-scoring console script is {script!r}")
    requires = metadata.get_all("Requires-Dist") or []
    airflow = [set(r.replace(" ", "").split(";")[0][len("apache-airflow"):].split(",")) for r in requires
               if re.match(r"apache-airflow[<>=!~ ]", r)]
    if len(airflow) != 1 or "<4" not in airflow[0] or not any(s.startswith(">=3.") for s in airflow[0]):
        problems.append(f"no single apache-airflow>=3.X,<4 requirement in {requires[:5]}...")
    extras = set(metadata.get_all("Provides-Extra") or [])
    for extra in ("amazon", "google", "azure", "kubernetes", "postgres", "onnx", "h2o", "openlineage"):
        if extra not in extras:
            problems.append(f"the extra {extra!r} is not declared")
    if not metadata.get("Requires-Python"):
        problems.append("no Requires-Python")
    return problems


def sdist_problems(sdist: Path) -> list[str]:
    """What is wrong with ``sdist`` (an empty list when nothing is)."""
    with tarfile.open(sdist) as archive:
        names = [n.partition("/")[2] for n in archive.getnames()]
    problems = []
    for needed in ("pyproject.toml", "README.md", "PKG-INFO", f"{PACKAGE}/__init__.py", f"{PACKAGE}/py.typed"):
        if needed not in names:
            problems.append(f"the sdist lacks {needed}")
    stray = sorted(n for n in names if any(part in n + "/" for part in LOCAL_STATE))
    if stray:
        problems.append(f"the sdist holds local state: {stray[:20]}")
    return problems


def main(argv: list[str]) -> int:
    folder = Path(argv[1] if len(argv) > 1 else "dist")
    wheel, sdist = _one(folder, f"{PACKAGE}-*.whl"), _one(folder, f"{PACKAGE}-*.tar.gz")
    problems = wheel_problems(wheel) + sdist_problems(sdist)
    for problem in problems:
        print(f"check_dist: {problem}", file=sys.stderr)
    if not problems:
        print(f"check_dist: {wheel.name} and {sdist.name} hold what they should")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
