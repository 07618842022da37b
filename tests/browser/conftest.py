"""The browser tests' shared ground: where the npm builds live, and a module-wide check that Chromium,
node and the players' builds are installed (a skip with the reason, a failure under CI, where .ci/run
installs them) that every module playing in a browser uses (`BROWSER` in its pytestmark; the unit tests
of failures.py need no browser)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import pytest

from server.config import StackConfig
from tests.conftest import CLEAR_TITLE, PackagedTitles

BROWSER_DIR = Path(__file__).resolve().parent
NODE_MODULES = BROWSER_DIR / "node_modules"
LIBRARIES = {"dashjs": NODE_MODULES / "dashjs" / "dist" / "modern" / "umd",
             "shaka": NODE_MODULES / "shaka-player" / "dist", "hlsjs": NODE_MODULES / "hls.js" / "dist"}


def _missing() -> str | None:
    if shutil.which("chromium") is None:
        return "Debian's chromium is not installed (apt-get install chromium)"
    if shutil.which("node") is None:
        return "node is not installed"
    for path in (*LIBRARIES.values(), NODE_MODULES / "playwright-core"):
        if not path.is_dir():
            return f"{path} is missing (run `npm ci` in {BROWSER_DIR})"
    return None


@pytest.fixture(scope="module")
def browser_installed() -> None:
    missing = _missing()
    if missing is not None:
        if os.environ.get("CI"):
            pytest.fail(f"browser tests cannot run: {missing} (.ci/run installs them)")
        pytest.skip(missing)


BROWSER = pytest.mark.usefixtures("browser_installed")


LIVE_PLAY_S = 12.0  # how long the live tests play: past the loop point (the test clip loops every 8 s)


def live_stack_config(tmp_path: Path, packaged: PackagedTitles, page_origin: str, **changes: Any) -> StackConfig:
    """A stack with one edge and the clear test title's low-latency live channel, open to the test page."""
    return StackConfig(**{"config_path": tmp_path / "stack.json", "content_root": packaged.content_root, "port": 0,
                          "edges": 1, "heartbeat_s": 0.25, "access_log": False, "allowed_origins": (page_origin,),
                          "live_title": CLEAR_TITLE, "low_latency": True, **changes})
