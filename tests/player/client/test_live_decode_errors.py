"""A corrupt live segment is in the event log as it happens: the live players (DASH and HLS) log the
decoder's errors as `decode_error` events the way the VOD player does (`watch_decode_errors`, every
50 ms, and once when the session is over), and the session plays on past it."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable

import numpy as np
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


def _corrupting(nth: int) -> Callable[..., Awaitable[web.StreamResponse]]:
    """A middleware answering the `nth` video segment asked for (1-based) with noise of its size
    (a damaged segment behind a 200, as a broken encoder or cache serves)."""
    seen = 0

    @web.middleware
    async def corrupt(request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
                      ) -> web.StreamResponse:
        nonlocal seen
        response = await handler(request)
        if not VIDEO_SEGMENT.search(request.path) or response.status != 200:
            return response
        seen += 1
        if seen != nth:
            return response
        assert isinstance(response, web.Response) and response.body is not None  # whole segments
        size = len(bytes(response.body))  # type: ignore[arg-type]
        noise = np.random.default_rng(7).integers(0, 256, size, dtype=np.uint8).tobytes()
        return web.Response(body=noise, content_type=response.content_type)

    return corrupt


@pytest.mark.parametrize("window", [True, False], ids=["window", "headless"])
@pytest.mark.parametrize("path", ["manifest.mpd", "master.m3u8"], ids=["dash", "hls"])
async def test_a_corrupt_live_segment_is_logged_as_it_happens_and_playback_goes_on(live_origin: Origin,
                                                                                    path: str, window: bool) -> None:
    url, _ = await live_origin(speed=10.0, low_latency=False, middlewares=(_corrupting(2),))
    decoders: list[DecodePipeline] = []

    def factory(source: PlaybackSource) -> DecodePipeline:
        decoders.append(DecodePipeline(source, mode="all"))
        return decoders[-1]

    log = EventLog()
    # The window's path (`on_live_player` set: its decoder is never finished) and the headless one (the
    # session's end finishes the decoder and the report counts its frames), at 10x: about 3 s of wall
    # time, 4 s segments.
    report = await play_headless(UrlTarget(url=f"{url}/live/{path}"),
                                 PlayerConfig(abr="rate", decode="none", speed=10.0, audio=False),
                                 link=LinkConfig(trace=open_trace("constant:5e6"), rtt_ms=20), events=log,
                                 decoder_factory=factory, on_live_player=(lambda player: None) if window else None,
                                 live=LivePlayConfig(duration_s=28.0, target_latency_s=8.0))
    assert report.error is None, report.error
    events = [e for e in log.events if e["type"] in ("download", "decode_error")]
    downloads = [e for e in events if e["type"] == "download"]
    errors = [e for e in events if e["type"] == "decode_error"]
    assert len(downloads) >= 4, events
    # one event, naming the second segment downloaded (the one served damaged), with the VOD schema
    assert len(errors) == 1, errors
    assert set(errors[0]) == {"t", "type", "message"}, errors[0]
    assert errors[0]["message"].startswith(f"video segment {downloads[1]['segment']} of "), (errors, downloads)
    # logged as it happened: after that download, before the session's last downloads
    at = events.index(errors[0])
    assert events.index(downloads[1]) < at < events.index(downloads[-1]), [e["type"] for e in events]
    # and the session went on: the segments after it decoded
    summary = decoders[0]._summary()  # closed by the harness: what it decoded by then
    assert summary.failed_segments == 1 and summary.segments >= 3, summary
    assert summary.frames_decoded > 0, summary
    if window:  # the window's decoder plays on: the report has no frame counts
        assert report.frames_decoded == 0 and report.decode_error_count == 0, report
    else:  # headless: every downloaded segment decoded before the report, as in VOD
        assert report.frames_decoded == summary.frames_decoded > 0, report
        assert report.frames_failed > 0 and report.decode_error_count == 1, report
        assert report.first_frame_s is not None and report.first_frame_s > 0, report
