"""A live session that fails before it starts (at the join: the clock sync, the first playlist reload)
is recorded as a failure later in the session is: an `error` event and the `end` event in the log, and
the report's `error`, not an exception that leaves a log with no end (and `abrkit play` a traceback-free
line but no report)."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
from aiohttp import web

from player.client.harness import UrlTarget, play_headless
from player.client.headless import PlayerConfig
from player.client.liveplay import LivePlayConfig
from tests.player.client.conftest import Origin

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@pytest.mark.parametrize("path,broken,named", [
    ("live/manifest.mpd", "/time", "the UTCTiming server answered 'not a date', not an xs:dateTime"),
    ("live/master.m3u8", ".m3u8", "HTTP 404"),
], ids=["dash-clock-sync", "hls-first-reload"])
async def test_a_live_join_that_fails_ends_the_log_and_the_report_with_its_error(
        live_origin: Origin, tmp_path: Path, path: str, broken: str, named: str) -> None:
    broke = [False]  # set once the bootstrap is done: the player's own first requests fail

    @web.middleware
    async def breaking(request: web.Request, handler: Handler) -> web.StreamResponse:
        if broke[0] and request.path.endswith(broken):
            return web.Response(text="not a date") if broken == "/time" else web.Response(status=404)
        return await handler(request)

    async def break_now() -> None:
        broke[0] = True

    url, statuses = await live_origin(low_latency=False, middlewares=(breaking,))
    log = tmp_path / "events.jsonl"
    report = await play_headless(UrlTarget(url=f"{url}/{path}"), PlayerConfig(abr="dynamic", decode="none"),
                                 log_path=log, before_playback=break_now, live=LivePlayConfig(duration_s=5.0))
    assert report.error is not None and named in report.error, report.error
    assert report.live is None and not report.records and not statuses["segment 200"]
    events = [json.loads(line) for line in log.read_text().splitlines()]
    assert [e["type"] for e in events][-2:] == ["error", "end"], events
    assert events[-2]["message"] == report.error and events[-1]["error"] == report.error
    assert "start" not in {e["type"] for e in events}  # the session never started
