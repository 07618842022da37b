"""The browser tests' shared ground: where the npm builds live, and a module-wide check that Chromium,
node and the players' builds are installed (a skip with the reason, a failure under CI, where .ci/run
installs them)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

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


@pytest.fixture(scope="module", autouse=True)
def browser_installed() -> None:
    missing = _missing()
    if missing is not None:
        if os.environ.get("CI"):
            pytest.fail(f"browser tests cannot run: {missing} (.ci/run installs them)")
        pytest.skip(missing)
