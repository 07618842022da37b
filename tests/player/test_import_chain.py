"""What `abrkit play` imports before it can open a window (docs/DESKTOP.md, "Cold start").

Each check runs a fresh interpreter and reads its `sys.modules`, so that what other tests imported
does not hide a regression. These guard the import chain, not a wall-clock time.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
# Never needed to play: research, training, plotting, clusters, the packager, the services.
NEVER_FOR_PLAY = ("sklearn", "matplotlib", "dask", "distributed", "scipy", "gymnasium", "tqdm",
                  "server.packager", "server.packaging", "server.stack", "server.auth", "server.gateway",
                  "player.research")
# Not even for the parser: `abrkit play --help` and building the play command's parser.
HEAVY_FOR_PARSER = ("aiohttp", "numpy", "av", "pyglet", "abr.registry", "player.client", "player.media.avsync")


def imported_modules(code: str) -> set[str]:
    """The modules a fresh interpreter has loaded after running `code` (no display: the window is
    never opened)."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    env.pop("DISPLAY", None)
    env.pop("WAYLAND_DISPLAY", None)
    script = f"{code}\nimport json, sys\nprint(json.dumps(sorted(sys.modules)))"
    done = subprocess.run([sys.executable, "-c", script], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    return set(json.loads(done.stdout.strip().splitlines()[-1]))


def offenders(modules: set[str], forbidden: tuple[str, ...]) -> list[str]:
    return sorted(m for m in modules if any(m == f or m.startswith(f + ".") for f in forbidden))


def test_the_parser_of_abrkit_play_imports_nothing_heavy() -> None:
    # What `abrkit play ...` loads before `run`: the CLI with the play command's parser alone.
    modules = imported_modules("import player.cli\nplayer.cli.build_parser('play').parse_args(['play'])")
    assert "player.commands.play" in modules  # the check saw the command load
    assert offenders(modules, HEAVY_FOR_PARSER + NEVER_FOR_PLAY) == []


def test_abrkit_play_help_works_from_a_fresh_interpreter() -> None:
    done = subprocess.run([sys.executable, "-m", "player", "play", "--help"], cwd=REPO, capture_output=True,
                          text=True, timeout=120, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert done.returncode == 0, done.stderr[-2000:]
    assert "--headless" in done.stdout and "--protocol" in done.stdout


def test_the_window_player_and_its_demo_stack_starter_import_no_research_packager_or_services() -> None:
    modules = imported_modules("import player.commands.play, player.desktop.app, player.desktop.player_thread, "
                               "player.client.harness, player.desktop.demostack")
    assert {"pyglet", "aiohttp", "player.desktop.app"} <= modules  # what it does need is there
    assert offenders(modules, NEVER_FOR_PLAY) == []


def test_the_demo_stack_starter_module_is_standard_library_only_in_the_parent() -> None:
    modules = imported_modules("import player.desktop.demostack")
    ours = sorted(m for m in modules if m.split(".")[0] in ("player", "server", "abr", "netsim"))
    assert ours == ["player", "player.desktop", "player.desktop.demostack", "player.errors"]


def test_the_play_parser_offers_the_protocols_the_client_knows() -> None:
    from player.client.bootstrap import PROTOCOLS as CLIENT_PROTOCOLS
    from player.commands.play import PROTOCOLS

    assert PROTOCOLS == CLIENT_PROTOCOLS


@pytest.mark.parametrize("forbidden", ["sklearn", "server.packager"])
def test_the_offender_check_catches_an_import(forbidden: str) -> None:
    assert offenders({"player", f"{forbidden}.sub"}, NEVER_FOR_PLAY) == [f"{forbidden}.sub"]
