"""A live session's event log ends as a VOD session's does: an `error` event where the session stops on
one, then an `end` event carrying the report (its error included), so a log reader sees why it
ended; the DASH and HLS live players, headless."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable

import pytest
from aiohttp import web

from netsim.sources import open_trace
from player.client.eventlog import EventLog
from player.client.harness import LinkConfig, UrlTarget, play_headless
from player.client.headless import PlayerConfig
from player.client.liveplay import LivePlayConfig
from tests.player.client.conftest import Origin

VIDEO_SEGMENT = re.compile(r"/live/video/[^/]+/\d+\.m4s$")


def _forbidding(nth: int) -> Callable[..., Awaitable[web.StreamResponse]]:
    """A middleware answering the `nth` video segment asked for (1-based) and every later one with a
    403 (an expired signature or a geo block: an answer that no retry changes)."""
    seen = 0

    @web.middleware
    async def forbid(request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
                     ) -> web.StreamResponse:
        nonlocal seen
        if VIDEO_SEGMENT.search(request.path):
            seen += 1
            if seen >= nth:
                return web.Response(status=403, text="forbidden")
        return await handler(request)

    return forbid


@pytest.mark.parametrize("path", ["manifest.mpd", "master.m3u8"], ids=["dash", "hls"])
async def test_a_live_session_stopped_by_an_error_logs_error_then_end(live_origin: Origin, path: str) -> None:
    url, _ = await live_origin(speed=10.0, low_latency=False, middlewares=(_forbidding(3),))
    log = EventLog()
    report = await play_headless(UrlTarget(url=f"{url}/live/{path}"),
                                 PlayerConfig(abr="rate", decode="none", speed=10.0, audio=False),
                                 link=LinkConfig(trace=open_trace("constant:5e6"), rtt_ms=20), events=log,
                                 live=LivePlayConfig(duration_s=60.0, target_latency_s=8.0))
    assert report.error is not None and "403" in report.error, report.error
    kinds = [e["type"] for e in log.events]
    assert kinds.count("error") == 1 and kinds.count("end") == 1 and kinds[-1] == "end", kinds
    error, end = log.of_type("error")[0], log.events[-1]
    assert error["message"] == report.error and kinds.index("error") > kinds.index("start")
    # the end event is the report, as a VOD session's: its error, counts and live summary
    assert end["error"] == report.error and end["live"] == report.live and end["t"] >= error["t"]
    assert end["requests"] == report.requests and "qualities" not in end and "media" not in end


async def test_a_live_session_that_plays_its_duration_ends_with_end(live_origin: Origin) -> None:
    url, _ = await live_origin(speed=10.0, low_latency=False)
    log = EventLog()
    report = await play_headless(UrlTarget(url=f"{url}/live/manifest.mpd"),
                                 PlayerConfig(abr="rate", decode="none", speed=10.0, audio=False),
                                 link=LinkConfig(trace=open_trace("constant:5e6"), rtt_ms=20), events=log,
                                 live=LivePlayConfig(duration_s=12.0, target_latency_s=8.0))
    assert report.error is None, report.error
    assert log.events[-1]["type"] == "end" and log.events[-1]["error"] is None and not log.of_type("error")
    assert log.events[-1]["live"]["played_s"] == report.live["played_s"]  # type: ignore[index]
