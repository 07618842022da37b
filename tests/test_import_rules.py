"""The import rules of docs/ARCHITECTURE.md, read from the source with `ast` (lazy imports included).

- `abr`, `netsim` and `server` import nothing of `player`; `abr` imports nothing of ours but `abr`.
- `server.formats` is a leaf: only the standard library (numpy if it must) and itself.
- `player` imports of `server` only the formats leaf and what starts a local stack
  (`server.stack`, `server.config`, `server.users`); `player.cli` may also import `server.commands`.
- `netsim` imports of `server` only the formats leaf (the shaper reads `Server-Timing` there), and
  `server` imports nothing of `netsim`.
- `player.session` imports no room; `player.client` and `player.media` import none of
  `player.research`, `player.desktop`, `player.commands`; and there is no cycle between the player's
  rooms (each top-level module counts as a room of its own) except the few justified in `JUSTIFIED`.
Each rule is tested on fake sources first, so a checker that cannot fail would be caught.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
OUR_PACKAGES = ("abr", "netsim", "player", "server")
PLAYER_ROOMS = ("client", "media", "desktop", "research", "commands")
PLAYER_MAY_IMPORT_FROM_SERVER = ("server.formats", "server.stack", "server.config", "server.users")
CLI_MAY_ALSO_IMPORT = ("server.commands",)
FORMATS_THIRD_PARTY = frozenset({"numpy"})
# Module-level imports that close a cycle between rooms, and why each is acceptable for now.
JUSTIFIED: Mapping[tuple[str, str], str] = {
    ("player.client.headless", "player.media.modes"):
        "a constants module that imports nothing: the player's config names a decode mode",
    ("player.client.harness", "player.media.pipeline"):
        "headless_session composes the client with the decoder, lazily and only when decoding",
    ("player.video", "player.client.mpd"):
        "lazy: a Pensieve size folder's Manifest.mpd is read with the MPD parser for its bitrates",
}


@dataclass(frozen=True, slots=True)
class Import:
    importer: str
    imported: str  # absolute; `from a import b` gives `a.b` when that is a module, else `a`
    line: int


Sources = Mapping[str, tuple[str, bool]]  # module name -> (source text, is a package __init__)


def repo_sources() -> dict[str, tuple[str, bool]]:
    sources = {}
    for package in OUR_PACKAGES:
        for path in sorted((REPO / package).rglob("*.py")):
            parts = list(path.relative_to(REPO).with_suffix("").parts)
            is_package = parts[-1] == "__init__"
            name = ".".join(parts[:-1] if is_package else parts)
            sources[name] = (path.read_text(encoding="utf-8"), is_package)
    return sources


def collect(sources: Sources, modules: Collection[str] = ()) -> list[Import]:
    """Every import statement of every module, at any depth (functions, `if TYPE_CHECKING:`, ...);
    `modules` names modules besides `sources` that `from package import name` may mean."""
    known = set(sources) | set(modules)
    found = []
    for module, (text, is_package) in sources.items():
        for node in ast.walk(ast.parse(text, filename=module)):
            if isinstance(node, ast.Import):
                found += [Import(module, alias.name, node.lineno) for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    package = module.split(".") if is_package else module.split(".")[:-1]
                    package = package[: len(package) - (node.level - 1)]
                    base = ".".join(package + ([node.module] if node.module else []))
                for alias in node.names:
                    full = f"{base}.{alias.name}"
                    found.append(Import(module, full if full in known else base, node.lineno))
    return found


def _within(name: str, prefixes: Iterable[str]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def _ours(name: str) -> bool:
    return _within(name, OUR_PACKAGES)


def rule_violations(imports: Iterable[Import]) -> list[str]:
    """What breaks the layering rules, one line each (module:line imports what, and the rule)."""
    problems = []
    for imp in imports:
        where, target = f"{imp.importer}:{imp.line} imports {imp.imported}", imp.imported
        top = target.split(".")[0]
        if _within(imp.importer, ("abr", "netsim", "server")) and _within(target, ("player",)):
            problems.append(f"{where}: abr, netsim and server import nothing of player")
        if _within(imp.importer, ("abr",)) and _ours(target) and not _within(target, ("abr",)):
            problems.append(f"{where}: abr imports nothing of ours but abr")
        if _within(imp.importer, ("server.formats",)):
            if _ours(target) and not _within(target, ("server.formats",)):
                problems.append(f"{where}: server.formats is a leaf (nothing else of ours)")
            elif not _ours(target) and top not in sys.stdlib_module_names and top not in FORMATS_THIRD_PARTY:
                problems.append(f"{where}: server.formats imports the standard library only (no PyAV, no aiohttp)")
        if _within(imp.importer, ("netsim",)) and _within(target, ("server",)) and not _within(
                target, ("server.formats",)):
            problems.append(f"{where}: netsim imports of server only server.formats")
        if _within(imp.importer, ("server",)) and _within(target, ("netsim",)):
            problems.append(f"{where}: server imports nothing of netsim")
        if _within(imp.importer, ("player",)) and _within(target, ("server",)):
            allowed = PLAYER_MAY_IMPORT_FROM_SERVER + (CLI_MAY_ALSO_IMPORT if imp.importer == "player.cli" else ())
            if not _within(target, allowed):
                problems.append(f"{where}: player imports of server only {', '.join(allowed)}")
        if imp.importer == "player.session" and _within(target, tuple(f"player.{r}" for r in PLAYER_ROOMS)):
            problems.append(f"{where}: the session core imports no room")
        if _within(imp.importer, ("player.client", "player.media")) and _within(
                target, ("player.research", "player.desktop", "player.commands")):
            problems.append(f"{where}: client and media import no research, desktop or commands")
    return problems


def room_of(module: str) -> str | None:
    """A player room (`player.client`, ...), or the top-level module itself (`player.video`)."""
    parts = module.split(".")
    if parts[0] != "player":
        return None
    return ".".join(parts[:2]) if len(parts) > 1 else module


def room_cycles(imports: Iterable[Import], justified: Mapping[tuple[str, str], str] = JUSTIFIED) -> list[str]:
    """Cycles between player rooms, each as 'room -> room -> ...: module imports' (empty when none)."""
    edges: dict[str, dict[str, list[str]]] = {}
    for imp in imports:
        source, target = room_of(imp.importer), room_of(imp.imported)
        if source is None or target is None or source == target or (imp.importer, imp.imported) in justified:
            continue
        edges.setdefault(source, {}).setdefault(target, []).append(f"{imp.importer}:{imp.line}->{imp.imported}")
    cycles: list[str] = []
    state: dict[str, int] = {}  # 1 on the DFS stack, 2 done

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(edges.get(node, {})):
            if state.get(nxt) == 1:
                loop = path[path.index(nxt):] + [nxt]
                evidence = [edges[a][b][0] for a, b in zip(loop, loop[1:])]
                cycles.append(" -> ".join(loop) + ": " + ", ".join(evidence))
            elif nxt not in state:
                visit(nxt, path + [nxt])
        state[node] = 2

    for node in sorted(edges):
        if node not in state:
            visit(node, [node])
    return cycles


# --------------------------------------------------------------------------- the checker can fail
def fake(**modules: str) -> list[Import]:
    """Imports of fake modules given as name=source (`__` in a name stands for `.`), beside the real ones."""
    return collect({name.replace("__", "."): (text, False) for name, text in modules.items()}, repo_sources())


def test_the_collector_sees_lazy_relative_and_type_checking_imports() -> None:
    imports = collect({
        "player.client.x": ("def f():\n    from server.edge import y\n", False),
        "player.client": ("from . import x\n", True),
        "player.client.z": ("from .x import f\nif TYPE_CHECKING:\n    import server.auth\n", False),
        "player.client.w": ("from .. import video\n", False),
        "player.video": ("", False),
    })
    assert {(i.importer, i.imported, i.line) for i in imports} == {
        ("player.client.x", "server.edge", 2), ("player.client", "player.client.x", 1),
        ("player.client.z", "player.client.x", 1), ("player.client.z", "server.auth", 3),
        ("player.client.w", "player.video", 1)}


@pytest.mark.parametrize(("modules", "rule"), [
    ({"server__edge": "from player.errors import CliError"}, "import nothing of player"),
    ({"netsim__link": "def f():\n    import player.session"}, "import nothing of player"),
    ({"abr__bba": "from netsim.trace import Trace"}, "abr imports nothing of ours"),
    ({"server__formats__cmcd": "from server.observability import redact_path"}, "leaf"),
    ({"server__formats__boxes": "import av"}, "standard library only"),
    ({"server__formats__b64": "def f():\n    from aiohttp import web"}, "standard library only"),
    ({"player__video": "def f():\n    from server.packager import load_segments_json"}, "player imports of server"),
    ({"player__research__chaos": "from server.edge import internal_token"}, "player imports of server"),
    ({"player__commands__serve": "from server.commands import CommandError"}, "player imports of server"),
    ({"netsim__shaper": "from server.edgelive import LiveObject"}, "netsim imports of server only"),
    ({"netsim__clock": "def f():\n    import server.live.origin"}, "netsim imports of server only"),
    ({"server__edgelive": "from netsim.clock import WarpClock"}, "server imports nothing of netsim"),
    ({"player__session": "from player.client.fetch import Fetcher"}, "session core imports no room"),
    ({"player__client__fetch": "from player.research.sim import simulate"}, "client and media import no"),
    ({"player__media__decoder": "def f():\n    import player.desktop.app"}, "client and media import no"),
])
def test_each_rule_catches_a_module_that_breaks_it(modules: dict[str, str], rule: str) -> None:
    problems = rule_violations(fake(**modules))
    assert problems and all(rule in p for p in problems), problems


@pytest.mark.parametrize("modules", [
    {"player__cli": "from server import commands\nfrom server.commands import CommandError"},
    {"player__client__bootstrap": "from server.formats.segments import parse_segments_json"},
    {"player__research__chaos": "from server.stack import RunningStack\nfrom server.config import StackConfig"},
    {"server__formats__segments": "import json\nfrom server.formats.names import SEGMENTS_NAME"},
    {"server__edge": "from server.formats.cmcd import parse_cmcd\nimport aiohttp"},
    {"netsim__shaper": "from server.formats.servertiming import head_end"},
])
def test_allowed_imports_pass(modules: dict[str, str]) -> None:
    assert rule_violations(fake(**modules)) == []


def test_a_cycle_between_rooms_is_found_unless_justified() -> None:
    imports = fake(player__media__pipeline="from player.client.fetch import Fetcher",
                   player__client__harness="def f():\n    from player.media.pipeline import DecodePipeline",
                   player__client__fetch="", player__video="from player.client import bootstrap")
    assert room_cycles(imports, {}) == [
        "player.client -> player.media -> player.client: player.client.harness:2->player.media.pipeline, "
        "player.media.pipeline:1->player.client.fetch"]
    assert room_cycles(imports, {("player.client.harness", "player.media.pipeline"): "why"}) == []


# --------------------------------------------------------------------------- the repository
@pytest.fixture(scope="module")
def repo_imports() -> list[Import]:
    return collect(repo_sources())


def test_the_layering_rules_hold(repo_imports: list[Import]) -> None:
    assert rule_violations(repo_imports) == []


def test_the_player_rooms_form_no_cycle_beyond_the_justified(repo_imports: list[Import]) -> None:
    assert room_cycles(repo_imports) == []


def test_every_justified_import_still_exists(repo_imports: list[Import]) -> None:
    present = {(i.importer, i.imported) for i in repo_imports}
    assert [pair for pair in JUSTIFIED if pair not in present] == []  # drop a justification once it is moot


@pytest.mark.parametrize("module", ["player.client.headless", "server.playback", "server.edge", "player.video",
                                    "server.formats.boxes"])
def test_importing_loads_no_pyav(module: str) -> None:
    code = f"import sys, {module}; assert 'av' not in sys.modules, 'av'"
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_the_formats_leaf_loads_none_of_ours_and_no_aiohttp() -> None:
    code = ("import sys, pkgutil, importlib, server.formats as f\n"
            "for info in pkgutil.iter_modules(f.__path__): importlib.import_module('server.formats.' + info.name)\n"
            "ours = sorted(m for m in sys.modules if m.split('.')[0] in ('abr', 'netsim', 'player', 'server')\n"
            "              and m != 'server' and not m.startswith('server.formats'))\n"
            "assert not ours and 'aiohttp' not in sys.modules and 'av' not in sys.modules, ours")
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
