"""`abrkit serve` tells at startup what browser players need (docs/BROWSER.md)."""

from __future__ import annotations

import signal
import subprocess
from pathlib import Path

import pytest

from server.commands.serve import browser_hint
from tests.conftest import PackagedTitles
from tests.server.stackkit import abrkit_serve


@pytest.mark.parametrize(("origins", "expected"), [
    ((), "need --allow-origin ORIGIN"),
    (("*",), "never grants credentials"),
    (("http://localhost:3000",), None),
    (("*", "http://localhost:3000"), None),
])
def test_the_browser_hint_names_what_is_missing(origins: tuple[str, ...], expected: str | None) -> None:
    hint = browser_hint(origins)
    assert hint is None if expected is None else expected in (hint or "")


@pytest.mark.parametrize("allow_origin", [None, "http://localhost:3000"])
def test_abrkit_serve_says_browser_players_need_allow_origin_only_when_none_is_set(
        tmp_path: Path, packaged: PackagedTitles, allow_origin: str | None) -> None:
    flags = ["--allow-origin", allow_origin] if allow_origin else []
    with abrkit_serve("--content", str(packaged.content_root), "--config", str(tmp_path / "stack.json"),
                      "--port", "0", "--edges", "1", "--no-access-log", *flags,
                      stderr=subprocess.DEVNULL) as (proc, lines):
        assert lines[-1].startswith("ready ")
        shown = "".join(lines)
        assert ("browser players (dash.js, Shaka Player) need --allow-origin ORIGIN" in shown) == (allow_origin is None)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
