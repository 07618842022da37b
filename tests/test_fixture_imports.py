"""Fixtures shared by several test modules live in a conftest.py, not in one of the modules that use
them: a module importing another's fixture runs that module's import-time code, shadows the fixture
(F811), and breaks when the owner renames it. The modules that still do it are listed; the list
only shrinks."""

from __future__ import annotations

import ast
from pathlib import Path

TESTS = Path(__file__).parent
# (importing module, module it imports fixtures from): to be moved into conftests, then taken off here.
STILL_IMPORTING: set[tuple[str, str]] = set()


def _fixtures(module: Path) -> set[str]:
    """Names of the functions decorated with pytest.fixture in `module`."""
    names = set()
    for node in ast.walk(ast.parse(module.read_text(encoding="utf-8"))):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            for decorator in node.decorator_list:
                target = decorator.func if isinstance(decorator, ast.Call) else decorator
                if "fixture" in ast.unparse(target):
                    names.add(node.name)
    return names


def test_no_test_module_imports_fixtures_from_another() -> None:
    found = set()
    for module in sorted(TESTS.rglob("test_*.py")):
        for node in ast.walk(ast.parse(module.read_text(encoding="utf-8"))):
            if not (isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("tests.")):
                continue
            source = TESTS.parent / (node.module.replace(".", "/") + ".py")
            if not source.name.startswith("test_") or not source.is_file():
                continue
            if {alias.name for alias in node.names} & _fixtures(source):
                found.add((str(module.relative_to(TESTS.parent)), str(source.relative_to(TESTS.parent))))
    assert found <= STILL_IMPORTING, f"move these fixtures into a conftest.py: {sorted(found - STILL_IMPORTING)}"
    assert found == STILL_IMPORTING, f"fixed, take off STILL_IMPORTING: {sorted(STILL_IMPORTING - found)}"
