"""The tests' own layout rules, checked on their source: every test module is in a level's folder, shared code is in
``tests.support`` (no test module imports another one), and nothing edits ``sys.path`` by hand (pyproject's
``pythonpath`` puts the checkout on it; a DAG is imported as ``tests.system.dags.<name>``)."""

from __future__ import annotations

import ast
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]
LEVELS = ("unit", "integration", "system")
SOURCES = sorted(p for p in TESTS.rglob("*.py") if ".node" not in p.parts)


def _where(path: Path, node: ast.AST) -> str:
    return f"{path.relative_to(TESTS.parent)}:{getattr(node, 'lineno', 0)}"


def test_every_test_module_is_in_a_level():
    misplaced = [str(p.relative_to(TESTS)) for p in SOURCES if p.name.startswith("test_")
                 and p.relative_to(TESTS).parts[0] not in LEVELS]
    assert misplaced == [], f"put these in tests/unit, tests/integration or tests/system: {misplaced}"


def test_no_module_imports_a_test_module():
    found = []
    for path in SOURCES:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            found += [f"{_where(path, node)} imports {name}" for name in names
                      if name.rpartition(".")[2].startswith("test_") or name.startswith("conftest")]
    assert found == [], "move what is shared to tests/support (or a conftest fixture):\n" + "\n".join(found)


def test_nothing_edits_sys_path():
    found = []
    for path in SOURCES:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Attribute) and node.attr in ("insert", "append", "extend") \
                    and isinstance(node.value, ast.Attribute) and node.value.attr == "path" \
                    and isinstance(node.value.value, ast.Name) and node.value.value.id == "sys":
                found.append(_where(path, node))
    assert found == [], "import through the tests package instead of editing sys.path: " + ", ".join(found)
