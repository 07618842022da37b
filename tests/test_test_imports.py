"""Test modules take shared helpers from a kit (`tests/server/edgekit.py`, `tests/player/avcontent.py`)
or a conftest, not from another test module: importing `test_x.py` runs its module-level code and
ties two files' edits together (tests/server/test_edge.py, 619 lines, was imported for one helper).
Kits and conftests are held to it too: a kit that imported a test module would only hide the tie.
The last ten such imports moved to kits in wave 11 (stackkit, chunkkit, browserkit, desktop livekit,
simkit, clockkit); a new one fails here."""

from __future__ import annotations

import ast
from pathlib import Path

TESTS = Path(__file__).resolve().parent


def test_module_imports(text: str) -> set[str]:
    """The test modules (`tests....test_*`) that `text` imports, at any depth."""
    found = set()
    for node in ast.walk(ast.parse(text)):
        names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                 else [node.module] if isinstance(node, ast.ImportFrom) and node.module else [])
        found.update(n for n in names if n.startswith("tests.") and n.split(".")[-1].startswith("test_"))
    return found


test_module_imports.__test__ = False  # type: ignore[attr-defined]  # a helper, not a test


def test_the_check_finds_both_spellings_and_leaves_kits_alone() -> None:
    text = ("from tests.server.test_edge import cli_edge\nimport tests.a.test_b\n"
            "from tests.server.edgekit import get\nfrom tests.conftest import CLEAR_TITLE\n"
            "def f():\n    from tests.c.test_d import x\n")
    assert test_module_imports(text) == {"tests.server.test_edge", "tests.a.test_b", "tests.c.test_d"}


def test_no_test_module_kit_or_conftest_imports_a_test_module() -> None:
    found = set()
    for path in sorted(TESTS.rglob("*.py")):
        importer = ".".join(("tests", *path.relative_to(TESTS).with_suffix("").parts))
        found.update((importer, imported) for imported in test_module_imports(path.read_text(encoding="utf-8")))
    assert not found, f"move these helpers to a kit module or a conftest: {sorted(found)}"
