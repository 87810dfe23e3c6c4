"""The layering rules of the package, checked on its source (``ast``; every import counts, also one inside a function):

- the engine (what a replica or a shell run needs) never imports Airflow, nor the package's Airflow side;
- sources and sinks never import the driver, and the replica (``runtime/``) never imports the driver;
- no import cycles anywhere in the package.

A package that does not exist (yet) has nothing to check. The runtime image proves the first rule at run time too
(``tests/integration/test_runtime_image.py`` refuses ``import airflow``); this test names the offending line.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

import pytest

PACKAGE = "airflow_batch_scoring"
ROOT = Path(__file__).resolve().parents[2] / PACKAGE

#: the engine: packages and modules that run without Airflow (in a replica, the runtime image, a shell)
ENGINE_PACKAGES = ("runtime", "io", "artifacts", "flavors", "sources", "sinks", "driver")
ENGINE_MODULES = ("schema", "job", "specs", "formats", "options", "coercion", "errors", "stages", "sql_spec")
#: the Airflow side of the package: hooks, operators, triggers, the Kubernetes runtime, links, lineage, params
AIRFLOW_SIDE = ("hooks", "operators", "triggers", "kubernetes", "links", "lineage", "params")

@dataclass(frozen=True)
class Import:
    """One import statement's target, where it is (``path:line``) and the module it is in."""

    module: str
    target: str
    where: str


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES = {_module_name(path): path for path in sorted(ROOT.rglob("*.py"))}


def _imports(path: Path) -> list[Import]:
    """Every import in ``path`` (module level and inside functions), relative ones resolved; ``from x import y``
    yields ``x``, and ``x.y`` too when that is a module of the package."""
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        where = f"{path.relative_to(ROOT.parent)}:{getattr(node, 'lineno', 0)}"
        if isinstance(node, ast.Import):
            found += [Import(name, alias.name, where) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            found.append(Import(name, module, where))
            found += [Import(name, f"{module}.{a.name}", where) for a in node.names if f"{module}.{a.name}" in MODULES]
    return found


IMPORTS = [found for path in MODULES.values() for found in _imports(path)]


def _inside(module: str, *parts: str) -> bool:
    """Whether ``module`` is ``PACKAGE.<parts...>`` or inside it."""
    prefix = ".".join((PACKAGE, *parts))
    return module == prefix or module.startswith(prefix + ".")


def _package_module(target: str) -> str | None:
    """The package module an import target loads (``a.b.name`` -> ``a.b`` when ``name`` is not a module)."""
    while target and target not in MODULES:
        target = target.rpartition(".")[0]
    return target or None


def _engine(module: str) -> bool:
    return any(_inside(module, p) for p in ENGINE_PACKAGES) or any(_inside(module, m) for m in ENGINE_MODULES)


def _violations(source, forbidden) -> list[str]:
    return sorted(
        f"{i.where}: {i.module} imports {i.target}" for i in IMPORTS if source(i.module) and forbidden(i.target)
    )


def test_the_engine_never_imports_airflow():
    found = _violations(_engine, lambda target: target == "airflow" or target.startswith("airflow."))
    assert found == [], "the engine runs without Airflow (replicas, the runtime image, shells):\n" + "\n".join(found)


def test_the_engine_never_imports_the_airflow_side_of_the_package():
    found = _violations(_engine, lambda target: any(_inside(target, side) for side in AIRFLOW_SIDE))
    assert found == [], "the engine must not import hooks, operators, triggers, kubernetes, links, lineage or " \
                        "params; pass what it needs in (credentials, settings) instead:\n" + "\n".join(found)


@pytest.mark.parametrize(("source", "forbidden"), [("sources", "driver"), ("sinks", "driver"), ("runtime", "driver")])
def test_layers_below_the_driver_never_import_it(source: str, forbidden: str):
    found = _violations(lambda module: _inside(module, source), lambda target: _inside(target, forbidden))
    assert found == [], f"{source}/ is used by {forbidden}/, never the other way round:\n" + "\n".join(found)


def _cycles() -> set[frozenset[str]]:
    """The strongly connected components (more than one module) of the package's import graph. A package and its
    own submodules importing each other do not count (``__init__`` re-exports)."""
    graph: dict[str, set[str]] = {name: set() for name in MODULES}
    for i in IMPORTS:
        target = _package_module(i.target)
        if target and target != i.module and not target.startswith(i.module + ".") \
                and not i.module.startswith(target + "."):
            graph[i.module].add(target)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: set[frozenset[str]] = set()

    def visit(v: str) -> None:  # Tarjan's algorithm
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = set()
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.add(w)
                if w == v:
                    break
            if len(component) > 1:
                found.add(frozenset(component))

    for name in sorted(graph):
        if name not in index:
            visit(name)
    return found


def test_no_import_cycles():
    found = sorted(" <-> ".join(sorted(cycle)) for cycle in _cycles())
    assert found == [], "import cycles (module-level or inside functions); move the shared part down a layer:\n" + \
        "\n".join(found)


def test_the_checks_see_the_package():
    """The walk finds the modules and the imports it must judge (a broken path would make every check pass)."""
    assert f"{PACKAGE}.job" in MODULES and f"{PACKAGE}.operators.batch_scoring" in MODULES
    assert any(i.target.startswith("airflow") for i in IMPORTS if _inside(i.module, "operators"))
    assert any(_package_module(i.target) == f"{PACKAGE}.errors" for i in IMPORTS if _engine(i.module))
