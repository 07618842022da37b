"""A live channel over the session's packaged test clip (10 s, 4 s segments: a loop of two), and
`live_stack`: that channel's origin on a real socket with an edge in front of it, counting requests by path."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from aiohttp import web

from server.edge import EdgeConfig, RunningEdge, start_edge
from server.keys import ed25519_public
from server.live.channel import LiveChannel, LiveConfig
from server.origin import OriginConfig, create_app
from tests.conftest import CLEAR_TITLE, ENCRYPTED_TITLE, PackagedTitles


def make_channel(packaged: PackagedTitles, *, start_s: float | None = None, encrypted: bool = False,
                 **changes: object) -> LiveChannel:
    config = LiveConfig(source_title=ENCRYPTED_TITLE if encrypted else CLEAR_TITLE,
                        availability_start_s=time.time() if start_s is None else start_s, **changes)  # type: ignore[arg-type]
    return LiveChannel(config, packaged.content_root)


@pytest.fixture
def channel(packaged: PackagedTitles) -> LiveChannel:
    return make_channel(packaged, start_s=1_000_000.0, low_latency=True)


COUNTS = web.AppKey("counts", Counter)
VERIFY_KEY = ed25519_public(bytes(range(32)))


@web.middleware
async def _count(request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
                 ) -> web.StreamResponse:
    request.app[COUNTS][request.path] += 1
    return await handler(request)


class Stack:
    def __init__(self, channel: LiveChannel, origin_url: str, counts: Counter[str], edge: RunningEdge | None) -> None:
        self.channel, self.origin_url, self.counts, self.edge = channel, origin_url, counts, edge


StackFactory = Callable[..., Awaitable[Stack]]


@pytest.fixture
async def live_stack(packaged: PackagedTitles) -> AsyncIterator[StackFactory]:
    cleanups: list[Callable[[], Awaitable[None]]] = []

    async def factory(*, since_start_s: float, coalescing: bool = True, edge_speed: float = 1.0,
                      **changes: Any) -> Stack:
        live = LiveConfig(source_title=CLEAR_TITLE, availability_start_s=time.time() - since_start_s,
                          low_latency=True, **changes)
        app = create_app(OriginConfig(content_root=packaged.content_root, port=0, live=live))
        app.middlewares.append(_count)
        app[COUNTS] = Counter()
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        cleanups.append(runner.cleanup)
        origin_url = f"http://127.0.0.1:{site.port}"
        edge = await start_edge(EdgeConfig(edge_id="edge-live", origin_url=origin_url, url_verify_key=VERIFY_KEY,
                                           require_signature=False, live_channels=("live",),
                                           live_coalescing=coalescing, license_url="http://license.test/license",
                                           live_speed=edge_speed,
                                           live_player_clocks=bool(changes.get("player_clocks", False))))
        cleanups.append(edge.stop)
        return Stack(LiveChannel(live, packaged.content_root), origin_url, app[COUNTS], edge)

    yield factory
    for cleanup in reversed(cleanups):
        await cleanup()
