"""The code a contender runs: this checkout, or a second one (another revision or directory) for before/after
comparisons in the same run.

A git revision is exported read-only (``git archive <commit> airflow_batch_scoring pyproject.toml``) into
``benchmarks/data/compare/<commit>/``: no worktree, branch, index or file of this checkout is touched. Both sides run
with the same interpreter and libraries (this virtualenv) and ``PYTHONPATH`` pointing at their own checkout, which
comes before the editable install's path (and ``PYTHONSAFEPATH``, so the working directory does not), so the CLI and
every replica it starts import that checkout's package (checked by :meth:`Checkout.verify`). Both sides get their
bytecode compiled first, so neither pays for compiling.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import tomllib

from harness.data import DATA, HERE
from harness.provenance import code_state, git

PACKAGE = "airflow_batch_scoring"
ROOT = HERE.parent


@dataclass(frozen=True)
class Checkout:
    """One side of a comparison.

    :param label: ``before`` or ``after`` (names the runs and the table's columns).
    :param root: the directory holding ``airflow_batch_scoring/`` and ``pyproject.toml``.
    :param revision: the commit measured (with ``+uncommitted`` when the working tree differs from it).
    """

    label: str
    root: Path
    revision: str

    def env(self) -> dict[str, str]:
        """This process's environment with ``PYTHONPATH`` starting at the checkout, and ``PYTHONSAFEPATH`` set: the
        CLI (``python -c``) and the replicas (``python -m``) would otherwise put the working directory first."""
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(self.root), env.get("PYTHONPATH", "")) if p)
        env["PYTHONSAFEPATH"] = "1"
        return env

    def cli(self) -> list[str]:
        """The ``batch-scoring`` command of this checkout: its ``[project.scripts]`` entry, run by this interpreter."""
        pyproject = tomllib.loads((self.root / "pyproject.toml").read_text())
        module, _, function = pyproject["project"]["scripts"]["batch-scoring"].partition(":")
        return [sys.executable, "-c", f"import sys; from {module} import {function}; sys.exit({function}())"]

    def verify(self) -> Path:
        """Check that the checkout's own package is what its processes import; return the package's folder."""
        probe = f"import os, {PACKAGE}; print(os.path.dirname(os.path.realpath({PACKAGE}.__file__)))"
        found = subprocess.run(
            [sys.executable, "-c", probe], env=self.env(), capture_output=True, text=True, check=True
        ).stdout.strip()
        expected = (self.root / PACKAGE).resolve()
        if Path(found) != expected:
            raise SystemExit(f"the {self.label} side imports {PACKAGE} from {found}, not from {expected}")
        return expected

    def compile(self) -> None:
        """Compile the package's bytecode (git-ignored ``__pycache__``), as an installed package would have it."""
        subprocess.run(
            [sys.executable, "-m", "compileall", "-q", "-j", "0", str(self.root / PACKAGE)],
            check=True, stdout=subprocess.DEVNULL,
        )


def this_checkout(label: str = "after") -> Checkout:
    """The checkout this benchmark belongs to, as it is on disk (uncommitted changes included)."""
    state = code_state(ROOT)
    suffix = "+uncommitted" if state["uncommitted_engine_changes"] else ""
    return Checkout(label, ROOT, (state["head"][:12] or "unknown") + suffix)


def other_checkout(spec: str, label: str = "before") -> Checkout:
    """The checkout ``spec`` names: a directory holding ``airflow_batch_scoring/``, or a git revision of this
    repository (commit, branch, tag), exported into ``benchmarks/data/compare/<commit>/`` once."""
    path = Path(spec).expanduser()
    if (path / PACKAGE).is_dir() and (path / "pyproject.toml").is_file():
        state = code_state(path.resolve())
        suffix = "+uncommitted" if state["uncommitted_engine_changes"] else ""
        return Checkout(label, path.resolve(), (state["head"][:12] or str(path)) + suffix)
    commit = git(ROOT, "rev-parse", "--verify", "--quiet", f"{spec}^{{commit}}").strip()
    if not commit:
        raise SystemExit(
            f"--compare-with {spec!r}: neither a directory holding {PACKAGE}/ and pyproject.toml nor a revision of "
            f"{ROOT}; give a commit, branch or tag (see `git log --oneline`) or the path of another checkout"
        )
    target = DATA / "compare" / commit[:12]
    marker = target / ".revision"
    if not (marker.exists() and marker.read_text().strip() == commit):
        shutil.rmtree(target, ignore_errors=True)
        target.mkdir(parents=True)
        archive = subprocess.run(
            ["git", "archive", "--format=tar", commit, PACKAGE, "pyproject.toml"],
            cwd=ROOT, capture_output=True, check=True,
        ).stdout
        subprocess.run(["tar", "-x", "-C", str(target)], input=archive, check=True)
        marker.write_text(commit + "\n")
    return Checkout(label, target, commit[:12])
