"""The README and the docs say what the code does: markers on every code block, the README's DAG is an example DAG's
code, its requirements and extras are pyproject.toml's, and every module, file and test it names exists.

Running the marked code is ``tests/system/test_docs_code.py``; building the docs with warnings as errors (which
catches every broken cross-reference) is ``.ci/run``'s docs step.
"""

from __future__ import annotations

import re
from importlib.metadata import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet

from tests.support.doc_blocks import ROOT, markdown_blocks, region, rst_blocks

README = ROOT / "README.md"
DOCS = ROOT / "docs"
#: pyproject.toml's [project] as installed (Python 3.10 has no tomllib): Requires-Python, Requires-Dist, extras
PROJECT = metadata("airflow-batch-scoring")
PAGES = sorted([*DOCS.rglob("*.md"), *DOCS.rglob("*.rst")])
PACKAGE = ROOT / "airflow_batch_scoring"


def test_readme_is_a_landing_page():
    lines = README.read_text().splitlines()
    assert len(lines) <= 160, f"README.md has {len(lines)} lines: move details into docs/"
    headings = [line for line in lines if line.startswith("## ")]
    assert headings[:3] == ["## What it is", "## What it guarantees", "## Requirements"], headings
    text = README.read_text()
    assert text.index("./scripts/demo") < text.index("bash .ci/run") < text.index("## What it is")


@pytest.mark.parametrize("page", [README, DOCS / "quickstart.rst"], ids=lambda p: p.name)
def test_every_code_block_says_what_the_doc_tests_do_with_it(page: Path):
    blocks = markdown_blocks(page) if page.suffix == ".md" else rst_blocks(page)
    assert blocks
    unmarked = [str(block) for block in blocks if block.action is None]
    assert not unmarked, f"code blocks without a doc-test marker (see tests/support/doc_blocks.py): {unmarked}"
    for block in blocks:
        if block.action == "skip":
            assert block.arg, f"{block}: say why it is not run"
        if block.action == "run":
            assert block.language == "bash", block


def test_readme_dag_is_the_example_dag_the_quickstart_runs():
    (dag,) = [block for block in markdown_blocks(README) if block.action == "same-as"]
    path, name = dag.arg.split()
    assert dag.text == region(ROOT / path, name)
    included = [block for block in rst_blocks(DOCS / "quickstart.rst") if block.action == "file"]
    assert dag.text in [block.text for block in included], "the quickstart runs another DAG than the README shows"
    assert 12 <= len(dag.text.splitlines()) <= 25


def test_readme_requirements_are_pyproject_s():
    """The two lines of README.md's Requirements quote pyproject.toml: update them with it."""
    text = README.read_text()
    (python,) = re.findall(r'`requires-python = "([^"]+)"`', text)
    assert SpecifierSet(python) == SpecifierSet(PROJECT["Requires-Python"]), "README.md's Python line is out of date"
    (airflow,) = re.findall(r"`apache-airflow([^`]+)`", text)
    required = [Requirement(dep) for dep in PROJECT.get_all("Requires-Dist") if not Requirement(dep).marker]
    (installed,) = [dep.specifier for dep in required if dep.name == "apache-airflow"]
    assert SpecifierSet(airflow) == installed, f"README.md's Airflow line says {airflow}, pyproject.toml {installed}"


def test_readme_extras_table_is_pyproject_s():
    rows = re.findall(r"^\| `([\w-]+)` \|", README.read_text(), re.M)
    assert sorted(rows) == sorted(PROJECT.get_all("Provides-Extra"))


def _module_exists(dotted: str) -> bool:
    """``airflow_batch_scoring.a.b[.Name[.attr]]`` names a module, or a class, function or constant in one."""
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        base = ROOT.joinpath(*parts[:cut])
        source = base.with_suffix(".py") if base.with_suffix(".py").exists() else base / "__init__.py"
        if source.exists():
            rest = parts[cut:]
            if not rest:
                return True
            defined = rf"^\s*(class|def) {rest[0]}\b|^{rest[0]}\b\s*[:=]|^from \S+ import .*\b{rest[0]}\b"
            return bool(re.search(defined, source.read_text(), re.M))
    return False


def _entry_point_groups() -> set[str]:
    """Entry-point groups the package reads (``airflow_batch_scoring.flavors`` ...): names, not modules."""
    text = "\n".join(path.read_text() for path in PACKAGE.rglob("*.py"))
    return set(re.findall(r"[\"'](airflow_batch_scoring\.\w+)[\"']", text))


@pytest.mark.parametrize("page", [README, *PAGES], ids=lambda p: str(p.relative_to(ROOT)))
def test_every_module_file_and_test_named_exists(page: Path):
    text = page.read_text()
    missing = []
    written = {block.arg for block in rst_blocks(page) if block.action == "file"} if page.suffix == ".rst" else set()
    for dotted in set(re.findall(r"\bairflow_batch_scoring(?:\.\w+)+", text)) - _entry_point_groups():
        if not _module_exists(dotted.rstrip(".")):
            missing.append(dotted)
    for module, names in re.findall(r"^\s*from (airflow_batch_scoring[\w.]*) import ([\w, ]+)$", text, re.M):
        missing += [f"{module}.{name}" for name in names.replace(" ", "").split(",")
                    if not _module_exists(f"{module}.{name}")]
    paths = re.findall(
        r"\b((?:airflow_batch_scoring|tests|dags|benchmarks|runtime_image|scripts|docs|\.ci)/[\w./-]*\w)", text)
    for path in set(paths):
        built = path == "docs/_build" or path.startswith("docs/_build/")  # made by the docs build, not checked in
        if path not in written and "*" not in path and not built and not (ROOT / path).exists():
            missing.append(path)
    assert not missing, f"{page.name} names what does not exist: {sorted(missing)}"


def test_internals_names_only_modules_that_exist():
    """The module table of docs/internals.md: each `x.py` or `x/` in a row exists under that row's package."""
    missing = []
    for row in re.findall(r"^\| (`[^|]+`) \| (.+) \|$", (DOCS / "internals.md").read_text(), re.M):
        folders = [PACKAGE / name.strip("`") for name in re.findall(r"`[\w/]+/`", row[0])] or [PACKAGE]
        for name in re.findall(r"`([\w/]+(?:\.py|/))`", " ".join(row)):
            candidates = [PACKAGE / name, ROOT / name, *(folder / name for folder in folders)]
            if not any(candidate.exists() for candidate in candidates):
                missing.append(name)
    assert not missing, f"docs/internals.md names modules that do not exist: {missing}"
