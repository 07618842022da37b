"""A live session's event log ends as a VOD session's does: an `error` event where the session stops on
one, then an `end` event carrying the report (its error included), so a log reader sees why it
ended; the DASH and HLS live players, headless and on the window's path (whose decoder is closed,
not finished, and what it finds as it closes comes before `end`)."""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from netsim.sources import open_trace
from player.client.bootstrap import PlaybackSource
from player.client.eventlog import EventLog
from player.client.harness import LinkConfig, UrlTarget, play_headless
from player.client.headless import PlayerConfig
from player.client.liveplay import LivePlayConfig
from player.media.pipeline import DecodePipeline
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


async def test_the_harness_own_log_goes_to_its_file_and_is_not_kept(live_origin: Origin, tmp_path: Path) -> None:
    # With no sink given, the harness logs to `log_path` and keeps nothing in memory: nobody reads it
    # there, and a window's live session (decisions, downloads, chunks, rate changes) plays for hours.
    url, _ = await live_origin(speed=10.0, low_latency=True)
    players: list[Any] = []
    path = tmp_path / "events.jsonl"
    report = await play_headless(UrlTarget(url=f"{url}/live/manifest.mpd"),
                                 PlayerConfig(abr="rate", decode="none", speed=10.0, audio=False), log_path=path,
                                 live=LivePlayConfig(duration_s=6.0), on_live_player=players.append)
    assert report.error is None, report.error
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert len(lines) > 20 and lines[-1]["type"] == "end" and any(e["type"] == "download" for e in lines)
    (player,) = players
    assert isinstance(player.events, EventLog) and player.events.events == []


class _FailingAsItCloses(DecodePipeline):
    """A decoder whose close finds one more failure: the segment it was decoding as the session ended
    (`DecodePipeline.close` lets that one finish), as a window's decoder, closed and never finished, may."""

    def __init__(self, source: PlaybackSource) -> None:
        super().__init__(source, mode="none")
        self.closes = 0

    def close(self) -> None:
        super().close()
        self.closes += 1
        if self.closes == 1:
            self.errors.add("video segment 9 of v1: failed as the decoder closed")


@pytest.mark.parametrize("path", ["manifest.mpd", "master.m3u8"], ids=["dash", "hls"])
async def test_the_windows_live_decoder_is_closed_before_end_and_what_it_finds_is_logged(
        live_origin: Origin, path: str) -> None:
    url, _ = await live_origin(speed=10.0, low_latency=False)
    decoders: list[_FailingAsItCloses] = []

    def factory(source: PlaybackSource) -> DecodePipeline:
        decoders.append(_FailingAsItCloses(source))
        return decoders[-1]

    log = EventLog()
    report = await play_headless(UrlTarget(url=f"{url}/live/{path}"),
                                 PlayerConfig(abr="rate", decode="none", speed=10.0, audio=False),
                                 link=LinkConfig(trace=open_trace("constant:5e6"), rtt_ms=20), events=log,
                                 decoder_factory=factory, on_live_player=lambda player: None,  # the window's path
                                 live=LivePlayConfig(duration_s=12.0, target_latency_s=8.0))
    assert report.error is None, report.error
    assert decoders[0].closes == 2  # by the session's end, then (doing nothing) by the harness
    kinds = [e["type"] for e in log.events]
    assert kinds[-2:] == ["decode_error", "end"], kinds
    assert log.events[-2]["message"] == "video segment 9 of v1: failed as the decoder closed"
