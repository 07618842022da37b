"""A server that thinks before it answers, for the warp clock's tests (tests/netsim/test_clock.py,
test_clock_exact.py) and the abandonment checks on its timers (tests/player/client/test_abandon_checks.py)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from aiohttp import web

from tests.player.conftest import serving_app

BODY_BYTES = 100_000


@asynccontextmanager
async def slow_server(think_s: float) -> AsyncIterator[str]:
    """An HTTP server (host:port) that thinks `think_s` loop seconds before it answers with BODY_BYTES."""

    async def handler(request: web.Request) -> web.Response:
        await asyncio.sleep(think_s)
        return web.Response(body=b"x" * BODY_BYTES)

    app = web.Application()
    app.router.add_get("/seg", handler)
    async with serving_app(app) as base:
        yield base.removeprefix("http://")
