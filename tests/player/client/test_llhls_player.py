"""LL-HLS in the live HLS player (player/client/hlslive.py): the parts of a playlist read, and our
low-latency channel played by parts with blocking playlist reloads, at 1x and time-warped at K=4, near the
target latency (PART-HOLD-BACK) where whole segments sit three target durations behind."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from typing import Any

import pytest
from aiohttp import ClientSession, web

from netsim.sources import open_trace
from player.client.harness import LinkConfig, UrlTarget, play_headless
from player.client.headless import PlaybackReport, PlayerConfig
from player.client.hls import HlsError, MediaPlaylist, parse_playlist
from player.client.hls.limits import NoSegmentsYet
from player.client.liveplay import LivePlayConfig
from server.formats.names import CHANNEL_LAG_HEADER
from tests.player.client.conftest import Origin
from tests.player.conftest import serving_app

URL = "http://h/live/playlist.m3u8"
LL = ("#EXTM3U\n#EXT-X-TARGETDURATION:4\n#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,PART-HOLD-BACK=2,HOLD-BACK=12\n"
      "#EXT-X-PART-INF:PART-TARGET=0.5\n#EXT-X-MEDIA-SEQUENCE:7\n#EXT-X-MAP:URI=\"init.mp4\"\n"
      '#EXT-X-PART:DURATION=0.5,URI="7.0.m4s",INDEPENDENT=YES\n#EXT-X-PART:DURATION=0.5,URI="7.1.m4s"\n'
      "#EXTINF:1,\n7.m4s\n"
      '#EXT-X-PART:DURATION=0.5,URI="all.m4s",BYTERANGE="100@0",INDEPENDENT=YES\n'
      '#EXT-X-PART:DURATION=0.5,URI="all.m4s",BYTERANGE="50"\n'
      '#EXT-X-PRELOAD-HINT:TYPE=PART,URI="all.m4s",BYTERANGE-START=150\n')


def test_parts_and_the_preload_hint_are_read() -> None:
    playlist = parse_playlist(LL, URL)
    assert isinstance(playlist, MediaPlaylist) and playlist.part_count == 4
    assert [(p.sequence, p.index, p.independent) for p in playlist.parts] == [
        (7, 0, True), (7, 1, False), (8, 0, True), (8, 1, False)]
    assert playlist.parts[0].uri == "http://h/live/7.0.m4s" and playlist.parts[3].byte_range == (100, 149)
    hint = playlist.preload_hint
    assert hint is not None and (hint.sequence, hint.index, hint.byte_range) == (8, 2, (150, -1))
    assert playlist.part(8, 1) is playlist.parts[3] and playlist.part(8, 2) is None
    for bad, expected in [('URI="7.1.m4s"', "URI is missing"), ("DURATION=0.5,URI=\"7.0", "DURATION is missing"),
                          ('BYTERANGE="100@0"', "no @offset"), ("TYPE=PART,", "TYPE=")]:
        text = LL.replace(bad, {"DURATION is missing": 'URI="7.0', "TYPE=": "TYPE=NOPE,"}.get(expected, "X=1"), 1)
        with pytest.raises(HlsError, match=expected):
            parse_playlist(text, URL)
    with pytest.raises(HlsError, match="gaps"):
        parse_playlist(LL.replace(",INDEPENDENT=YES\n", ",GAP=YES\n", 1), URL)
    with pytest.raises(HlsError, match="parts per segment"):
        parse_playlist(LL + '#EXT-X-PART:DURATION=0.01,URI="x.m4s"\n' * 200, URL)


def test_a_live_playlist_in_its_first_segment_says_so() -> None:
    """Only parts listed (a channel in its first segment): the loader is told what to wait for; an
    ended playlist with no segment stays malformed."""
    only_parts = LL.split("#EXTINF")[0]
    with pytest.raises(NoSegmentsYet, match="lists no complete segment yet") as caught:
        parse_playlist(only_parts, URL)
    assert (caught.value.media_sequence, caught.value.can_block_reload, caught.value.wait_s) == (7, True, 0.5)
    with pytest.raises(HlsError, match="lists no segments"):
        parse_playlist(only_parts + "#EXT-X-ENDLIST\n", URL)


async def _play(url: str, *, speed: float, duration_s: float, play_parts: bool = True,
                core_free: bool = False) -> PlaybackReport:
    """`core_free`: the link's clock leaves out the loop's wait for a core, and the channel follows it
    (the origin must honour the lag header: `live_origin(player_clocks=True)`)."""
    config = PlayerConfig(abr="dynamic", decode="none", speed=speed)
    link = LinkConfig(trace=open_trace("constant:5e6"), rtt_ms=40, exclude_core_waits=core_free)
    live = LivePlayConfig(duration_s=duration_s, play_parts=play_parts)
    return await asyncio.wait_for(play_headless(UrlTarget(url=f"{url}/live/master.m3u8"), config, link=link,
                                                live=live), 60)


def _played(report: PlaybackReport, statuses: Counter[str], duration_s: float, *, stalls: int = 0) -> dict[str, Any]:
    """The checks that hold at any load, then the stall count."""
    assert report.error is None, report.error
    live = dict(report.live or {})
    assert live["played_s"] >= duration_s - 0.5 and live["early_requests"] == 0, live
    assert statuses["segment 404"] == 0, statuses  # parts too: none asked for before it was listed or hinted
    assert live["stalls"] <= stalls, live
    return live


@pytest.mark.wallclock
@pytest.mark.parametrize("speed", [1.0, 4.0])
async def test_plays_our_low_latency_channel_by_parts(live_origin: Origin, speed: float) -> None:
    # The link's clock leaves out the loop's wait for a core and the channel follows the player's clock,
    # so the timing claims are judged at any load (wave 12 skipped them past a bunched wait:
    # docs/LIVE-SERVER.md, "Under load").
    url, statuses = await live_origin(low_latency=True, speed=speed, player_clocks=True)
    duration_s = 5.0 * speed
    slack_s = 0.6 * max(1.0, speed / 5)
    report = await _play(url, speed=speed, duration_s=duration_s, core_free=True)
    # Time-warped at 4x (a part is 125 wall ms; at 10x, 50 ms, a loaded 2-core machine stalls a part
    # request now and then): one late wake-up may still come late enough for a short stall, as for
    # the DASH player's chunks at 10x (test_liveplay.py).
    assert report.error is None, report.error
    live = dict(report.live or {})
    assert live.get("ll_hls_parts") == "played" and live["chunk_s"] == 0.5, live
    assert live["target_latency_s"] == 2.0  # PART-HOLD-BACK, the MPD's target too
    assert live["part_requests"] >= 4 and statuses["segment 200"] >= live["part_requests"]
    assert live["blocking_reloads"] >= 4
    _played(report, statuses, duration_s, stalls=int(speed > 1))
    assert abs(live["latency_p50_s"] - 2.0) <= slack_s, live


@pytest.mark.wallclock
async def test_joins_a_channel_still_in_its_first_segment(live_origin: Origin) -> None:
    """0.2 s after the channel starts its playlists list parts only: the player waits for the first
    segment with a blocking reload (hls.js only logs levelEmptyError meanwhile) and plays."""
    url, statuses = await live_origin(low_latency=True, speed=4.0, availability_start_s=time.time() - 0.2)
    live = _played(await _play(url, speed=4.0, duration_s=8.0), statuses, 8.0, stalls=1)
    assert live["ll_hls_parts"] == "played"


@pytest.mark.wallclock
async def test_whole_segments_where_parts_are_not_played(live_origin: Origin) -> None:
    """`LivePlayConfig(play_parts=False)`: `--no-hls-low-latency-mode` (hls.js lowLatencyMode off)."""
    url, statuses = await live_origin(low_latency=True, speed=10.0)
    report = await _play(url, speed=10.0, duration_s=40.0, play_parts=False)
    live = _played(report, statuses, 40.0)
    assert live["ll_hls_parts"] == "offered, not played" and live["chunk_s"] is None
    assert live["target_latency_s"] == 12.0 and live["part_requests"] == 0  # HOLD-BACK: 3 target durations


@pytest.mark.wallclock
async def test_parts_without_blocking_reload_are_polled_for(live_origin: Origin) -> None:
    """A server that lists parts but cannot block (no CAN-BLOCK-RELOAD): the player reloads every half
    part target while it waits for one, and still plays by parts near PART-HOLD-BACK."""
    # The link's clock leaves out the loop's wait for a core and the channel follows the player's clock
    # (the proxy passes the lag on, both ways), so the timing claims are judged at any load (wave 12
    # skipped them past a bunched wait: docs/LIVE-SERVER.md, "Under load").
    url, statuses = await live_origin(low_latency=True, speed=4.0, player_clocks=True)
    queries: list[str] = []

    async def proxy(request: web.Request) -> web.StreamResponse:
        queries.append(request.query_string)
        lag = {k: v for k, v in request.headers.items() if k.lower() == CHANNEL_LAG_HEADER.lower()}
        # no query: no blocking
        async with ClientSession() as http, http.get(url + request.path, headers=lag) as response:
            body = await response.read()
            if request.path.endswith("playlist.m3u8"):
                body = body.replace(b"CAN-BLOCK-RELOAD=YES,", b"")
            headers = {"Content-Type": response.headers.get("Content-Type", "")}
            if CHANNEL_LAG_HEADER in response.headers:
                headers[CHANNEL_LAG_HEADER] = response.headers[CHANNEL_LAG_HEADER]
            return web.Response(status=response.status, body=body, headers=headers)

    app = web.Application()
    app.router.add_get("/{path:.*}", proxy)
    async with serving_app(app) as base:
        report = await _play(base, speed=4.0, duration_s=20.0, core_free=True)
    assert report.error is None, report.error
    live = dict(report.live or {})
    assert live.get("ll_hls_parts") == "played" and live["blocking_reloads"] == 0 and live["part_requests"] >= 8, live
    assert not any("_HLS_" in q for q in queries)
    _played(report, statuses, 20.0, stalls=1)
    assert abs(live["latency_p50_s"] - 2.0) <= 1.2, live


async def test_parts_already_published_are_asked_for_one_after_another(live_origin: Origin) -> None:
    # Joined 1.5 s further behind than PART-HOLD-BACK over a 2 Mbit/s, 40 ms link, the player reaches
    # segments whose later parts are already listed. Each is asked for as the one before is nearly in (or
    # has ended), so they cross in turn, the first (which playback needs first) first: asked for all
    # at once, they shared the link and part 0 came nearly last (player/client/hlslive.py).
    url, _ = await live_origin(low_latency=True, speed=4.0)
    players: list[Any] = []
    report = await asyncio.wait_for(play_headless(
        UrlTarget(url=f"{url}/live/master.m3u8"), PlayerConfig(abr="bola", decode="none", speed=4.0, audio=False),
        link=LinkConfig(trace=open_trace("constant:2e6"), rtt_ms=40),
        live=LivePlayConfig(duration_s=12.0, target_latency_s=3.5), on_live_player=players.append), 60)
    assert report.error is None, report.error
    (player,) = players
    log = {(p.segment, p.index): p for p in player.part_log}
    ahead = [p for p in player.part_log if p.ahead]
    assert len(ahead) >= 4, player.part_log  # on a quiet machine 10: parts 1-7 of the first segment and more
    for part in ahead:
        before = log[(part.segment, part.index - 1)]
        assert part.requested_s >= before.first_byte_s, (before, part)
