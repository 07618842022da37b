"""Playing our stack in a browser (tests/browser/test_players.py, test_live.py, test_llhls.py): the test
page and the players' npm builds served on an origin of their own, its URL, and Chromium driven
through tests/browser/run_player.mjs."""

from __future__ import annotations

import asyncio
import json
import shutil
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from functools import cached_property
from typing import Any
from urllib.parse import urlencode

from aiohttp import web

from server.stack import RunningStack
from tests.browser.conftest import BROWSER_DIR, LIBRARIES
from tests.browser.failures import Failures, sort_failures

TARGET_S = 5.0  # of the 10 s test clip: past the first segment boundary (4 s) and a license exchange
DRIVER_TIMEOUT_S = 120.0


@asynccontextmanager
async def page_server() -> AsyncIterator[str]:
    """The test page and the players' npm builds on 127.0.0.1 (a port of its own: another origin than
    the stack's services); yields its origin."""
    app = web.Application()
    app.router.add_static("/lib/dashjs/", LIBRARIES["dashjs"])
    app.router.add_static("/lib/shaka/", LIBRARIES["shaka"])
    app.router.add_static("/lib/hlsjs/", LIBRARIES["hlsjs"])
    app.router.add_static("/", BROWSER_DIR / "page")
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


@dataclass(frozen=True)
class BrowserRun:
    """What the page reported (`report`, see page/player.js) and what Chromium saw on the network
    (run_player.mjs: `failed` while the page played, `failed_after_done` once the driver stopped it)."""

    report: dict[str, Any]
    screenshot: dict[str, float]  # luma mean and std of a screenshot of the video element at the end
    responses: list[dict[str, Any]]
    failed: list[dict[str, Any]]
    failed_after_done: list[dict[str, Any]]
    in_flight_at_stop: list[dict[str, Any]]  # started, not finished, when the driver stopped the page
    console: list[str]
    browser: str

    @cached_property  # sorted once: the run is frozen (cached_property writes the instance's dict, not a field)
    def failures(self) -> Failures:
        """The failed requests by who failed them (tests/browser/failures.py)."""
        return sort_failures(self.failed, self.failed_after_done, self.responses, self.report.get("switches", []))

    def describe(self) -> str:
        return json.dumps({"report": self.report, "screenshot": self.screenshot, "failed": self.failed,
                           "failed_after_done": self.failed_after_done, "in_flight_at_stop": self.in_flight_at_stop,
                           "unexplained": self.failures.unexplained, "console": self.console[-20:]}, indent=1)

    def failures_line(self) -> str:
        """The failures' summary (times from the page's `done`) and what was in flight when the driver stopped."""
        summary = self.failures.summary(self.report.get("doneAt"), self.report.get("cancelled", []))
        return f"{summary}, {len(self.in_flight_at_stop)} in flight at stop"


async def play_in_chromium(page_url: str) -> BrowserRun:
    """Run tests/browser/run_player.mjs on `page_url` (bounded in time) and parse its JSON line."""
    config = json.dumps({"url": page_url, "chromium": shutil.which("chromium"), "timeout_s": DRIVER_TIMEOUT_S})
    process = await asyncio.create_subprocess_exec(
        "node", str(BROWSER_DIR / "run_player.mjs"), config, cwd=BROWSER_DIR,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    try:
        stdout, stderr = await asyncio.wait_for(process.communicate(), DRIVER_TIMEOUT_S + 60)
    except TimeoutError:
        process.kill()
        await process.wait()
        raise AssertionError(f"the browser driver did not finish within {DRIVER_TIMEOUT_S + 60} s") from None
    if process.returncode != 0 or not stdout.strip():
        raise AssertionError(f"the browser driver failed (exit {process.returncode}): {stderr.decode()[-2000:]}")
    out = json.loads(stdout.decode().strip().splitlines()[-1])
    if out.get("error") or out.get("report") is None:
        raise AssertionError(f"the page did not finish: {out.get('error')}\n{json.dumps(out)[-3000:]}")
    return BrowserRun(report=out["report"], screenshot=out["screenshot"], responses=out["responses"], failed=out["failed"],
                      failed_after_done=out["failed_after_done"], in_flight_at_stop=out["in_flight_at_stop"],
                      console=out["console"], browser=out["browser"])


def page_url(origin: str, stack: RunningStack, password: str, *, player: str, title: str,
             target_s: float = TARGET_S, **extra: str | float) -> str:
    """The test page's URL; `extra`: the page's optional parameters (page/player.js)."""
    query = {"gateway": stack.gateway_url, "username": "demo", "password": password, "title": title,
             "player": player, "target_s": target_s, "timeout_s": DRIVER_TIMEOUT_S - 20, **extra}
    return f"{origin}/player.html?{urlencode(query)}"
