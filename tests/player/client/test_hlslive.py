"""The live HLS player (player/client/hlslive.py): our channel's live media playlists, FFmpeg's HLS
muxer in live mode behind a plain HTTP server, and live playlists that misbehave the way real
servers do (each a clear error naming what was wrong)."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import http.server
import math
import shutil
import subprocess
import threading
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiohttp import ClientSession, web

from netsim.clock import warp_of
from netsim.sources import open_trace
from player.client.bootstrap import BootstrapError
from player.client.harness import LinkConfig, TitleTarget, UrlTarget, play_headless
from player.client.headless import PlaybackReport, PlayerConfig
from player.client.hls import HlsError, MediaPlaylist, parse_playlist
from player.client.liveplay import LivePlayConfig, LivePlayer
from server.live.channel import warped_clock
from server.stack import start_stack
from tests.player.client.conftest import Origin, live_stack_config
from tests.player.conftest import serving_app
from tests.server.conftest import PASSWORD

HANG_GUARD_S = 60.0


async def _play(url: str, *, speed: float = 1.0, duration_s: float, target_s: float | None = None,
                abr: str = "dynamic", trace: str = "constant:5e6") -> PlaybackReport:
    config = PlayerConfig(abr=abr, decode="none", speed=speed)
    link = LinkConfig(trace=open_trace(trace), rtt_ms=40)
    return await asyncio.wait_for(play_headless(UrlTarget(url=url), config, link=link, live=LivePlayConfig(
        duration_s=duration_s, target_latency_s=target_s)), HANG_GUARD_S)


def _check_played(report: PlaybackReport, *, duration_s: float, slack_s: float) -> dict[str, Any]:
    assert report.error is None, report.error
    live = dict(report.live or {})
    assert live["protocol"] == "hls" and live["early_requests"] == 0
    assert live["played_s"] >= duration_s - 0.5, live
    assert live["playlist_reloads"] >= 2 and len(report.records) >= 2
    assert live["stalls"] == 0, live
    assert abs(live["latency_p50_s"] - live["target_latency_s"]) <= slack_s, live
    return live


# --------------------------------------------------------------------------- the playlist tags
def test_live_tags_are_read_dates_extrapolated_and_bad_ones_refused() -> None:
    text = ("#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXT-X-MEDIA-SEQUENCE:7\n"
            "#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,HOLD-BACK=6.5,PART-HOLD-BACK=1.5\n#EXT-X-PART-INF:PART-TARGET=0.5\n"
            "#EXTINF:2,\n#EXT-X-PROGRAM-DATE-TIME:2026-12-05T09:10:37.795+0000\n7.m4s\n#EXTINF:2,\n8.m4s\n"
            '#EXT-X-PART:DURATION=0.5,URI="9.0.m4s"\n')
    playlist = parse_playlist(text, "http://h/live.m3u8")
    assert isinstance(playlist, MediaPlaylist) and not playlist.ended
    assert playlist.can_block_reload and playlist.hold_back_s == 6.5 and playlist.part_hold_back_s == 1.5
    assert playlist.part_target_s == 0.5 and playlist.part_count == 1
    first, second = playlist.segments
    assert first.program_date_time_s == pytest.approx(1796461837.795)  # FFmpeg's "+0000" zone form
    assert second.program_date_time_s == pytest.approx(1796461839.795)  # extrapolated by the EXTINF
    for bad, expected in [("2026-13-05T09:10:37Z", "is not an ISO 8601 date-time"),
                          ("2026-12-05T09:10:37", "has no time zone")]:
        with pytest.raises(HlsError, match=expected):
            parse_playlist(text.replace("2026-12-05T09:10:37.795+0000", bad), "http://h/live.m3u8")
    with pytest.raises(HlsError, match="PART-TARGET is missing"):
        parse_playlist(text.replace("PART-TARGET=0.5", "X=1"), "http://h/live.m3u8")


# --------------------------------------------------------------------------- our channel
async def test_plays_our_channels_live_playlists(live_origin: Origin) -> None:
    url, statuses = await live_origin(low_latency=False)  # 4 s segments, EXT-X-TARGETDURATION:4
    report = await _play(f"{url}/live/master.m3u8", duration_s=6.0, target_s=8.0)
    live = _check_played(report, duration_s=6.0, slack_s=1.0)
    # The origin answers 404 to a segment asked for before it exists: never, since only listed ones are.
    fetched = len(report.records) + len(report.audio_records)
    assert statuses["segment 404"] == 0 and fetched <= statuses["segment 200"] <= fetched + 2  # + in flight
    assert live["ll_hls_parts"] == "none offered" and live["chunk_s"] is None
    # Its other answers' sizes, as the DASH player reports them: a video playlist (reloads and the
    # join's clock sync, a reload too) and an init segment.
    async with ClientSession() as http, http.get(f"{url}/live/video/v216p/playlist.m3u8") as response:
        playlist_bytes = len(await response.read())
    sizes = live["control_bytes"]
    assert sizes["manifest"] == pytest.approx(playlist_bytes, rel=0.1), sizes
    # the join's playlist: shorter, as this channel (20 s old) is younger than its time-shift window
    assert 300 < sizes["sync"] <= sizes["manifest"] and sizes["init"] > 500, sizes
    # The audio rendition's playlist is played beside the video's, segment for segment.
    audio = [r.segment_index for r in report.audio_records]
    assert len(audio) >= 2 and audio[:len(report.records)] == [r.segment_index for r in report.records][:len(audio)]


async def test_plays_our_channel_sped_up(live_origin: Origin) -> None:
    url, statuses = await live_origin(low_latency=False, speed=10.0)
    report = await _play(f"{url}/live/master.m3u8", speed=10.0, duration_s=40.0)  # 4 s of wall time
    live = _check_played(report, duration_s=40.0, slack_s=2.0)
    assert live["target_latency_s"] == 12.0  # three target durations (RFC 8216 6.3.3)
    assert statuses["segment 404"] == 0


async def test_a_sped_up_channel_at_1x_is_a_clear_error(live_origin: Origin) -> None:
    url, _ = await live_origin(low_latency=False, speed=10.0)
    report = await _play(f"{url}/live/master.m3u8", speed=1.0, duration_s=30.0, target_s=8.0)
    assert report.error is not None and "runs faster than the player's" in report.error


# --------------------------------------------------------------------------- FFmpeg, a plain HTTP server
class _Quiet(http.server.SimpleHTTPRequestHandler):
    statuses: Counter[int]

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (the stdlib's name)
        pass

    def send_response(self, code: int, message: str | None = None) -> None:
        if self.path.endswith(".m4s"):
            self.statuses[code] += 1
        super().send_response(code, message)


@contextlib.contextmanager
def _ffmpeg_live(tmp: Path) -> Iterator[tuple[str, Counter[int]]]:
    """FFmpeg's HLS muxer making a two-rung live stream in real time (1 s fMP4 segments, a sliding
    window of 6 with dates), served from its directory by Python's http.server."""
    ffmpeg = shutil.which("ffmpeg")
    if ffmpeg is None:
        pytest.skip("ffmpeg is not installed")
    process = subprocess.Popen(
        [ffmpeg, "-hide_banner", "-loglevel", "error", "-re", "-f", "lavfi", "-i", "testsrc2=size=320x180:rate=25",
         "-t", "60", "-map", "0:v", "-map", "0:v", "-c:v", "libx264", "-preset", "ultrafast", "-g", "25",
         "-keyint_min", "25", "-sc_threshold", "0", "-b:v:0", "200k", "-b:v:1", "600k", "-f", "hls", "-hls_time", "1",
         "-hls_list_size", "6", "-hls_flags", "delete_segments+program_date_time+temp_file+independent_segments",
         "-hls_segment_type", "fmp4", "-master_pl_name", "master.m3u8", "-var_stream_map", "v:0 v:1",
         "-hls_segment_filename", "v%v/seg%d.m4s", "v%v/live.m3u8"],
        cwd=tmp, stdin=subprocess.DEVNULL)
    statuses: Counter[int] = Counter()
    handler = functools.partial(type("Handler", (_Quiet,), {"statuses": statuses}), directory=str(tmp))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 20
        while True:  # until both rungs list 4 segments: enough to join 3 target durations back
            try:
                lists = [parse_playlist((tmp / f"v{k}" / "live.m3u8").read_bytes(), "http://x/live.m3u8")
                         for k in (0, 1)]
                if all(isinstance(p, MediaPlaylist) and len(p.segments) >= 4 for p in lists):
                    break
            except (OSError, HlsError):
                pass
            assert time.monotonic() < deadline and process.poll() is None, "ffmpeg made no live playlist"
            time.sleep(0.2)
        yield f"http://127.0.0.1:{server.server_address[1]}/master.m3u8", statuses
    finally:
        server.shutdown()
        server.server_close()
        process.terminate()
        process.wait(10)


@pytest.mark.slow
async def test_plays_ffmpegs_live_hls(tmp_path: Path) -> None:
    with _ffmpeg_live(tmp_path) as (url, statuses):
        report = await _play(url, duration_s=6.0)
    live = _check_played(report, duration_s=6.0, slack_s=0.75)
    assert live["target_latency_s"] == 3.0  # three target durations of 1 s
    assert statuses[404] == 0 and statuses[200] == len(report.records)
    assert {r.bitrate_bps for r in report.records} <= {220_000, 660_000}


# --------------------------------------------------------------------------- scripted live servers
SEGMENT_S = 1.0
SPEED = 4.0  # the scripted channel's clock and the player's run 4x: each case takes ~2 wall s
WINDOW = 6
SEGMENT = (16).to_bytes(4, "big") + b"moof" + bytes(8) + (2008).to_bytes(4, "big") + b"mdat" + bytes(2000)


@dataclass
class LiveScript:
    """A live media playlist on a clock SPEED times fast, with `mutate(text, reload, newest)` applied
    to what it serves (reload counts the playlist requests from 0)."""

    mutate: Callable[[str, int, int], str] = lambda text, reload, newest: text
    block: bool = False  # EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES, holding _HLS_msn requests
    t0: float = field(default_factory=lambda: time.time() - (WINDOW + 2) * SEGMENT_S / SPEED)
    reloads: int = 0
    blocked: int = 0
    statuses: Counter[int] = field(default_factory=Counter)

    def clock(self) -> float:
        return (time.time() - self.t0) * SPEED

    def newest(self) -> int:
        return math.floor(self.clock() / SEGMENT_S) - 1

    def text(self, newest: int) -> str:
        first = max(0, newest - WINDOW + 1)
        lines = ["#EXTM3U", "#EXT-X-VERSION:9", f"#EXT-X-TARGETDURATION:{SEGMENT_S:g}", f"#EXT-X-MEDIA-SEQUENCE:{first}"]
        if self.block:
            lines.append("#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES")
        lines.append('#EXT-X-MAP:URI="init.mp4"')
        for n in range(first, newest + 1):
            lines += [f"#EXT-X-PROGRAM-DATE-TIME:{_date(n)}", f"#EXTINF:{SEGMENT_S:.3f},", f"{n}.m4s"]
        return "\n".join(lines) + "\n"

    async def playlist(self, request: web.Request) -> web.Response:
        newest = self.newest()
        if "_HLS_msn" in request.query:
            self.blocked += 1
            want = int(request.query["_HLS_msn"])
            while self.newest() < want:  # RFC 8216bis 6.2.5.2: hold until the playlist lists it
                await asyncio.sleep(0.01)
            newest = self.newest()
        text = self.mutate(self.text(newest), self.reloads, newest)
        self.reloads += 1
        return web.Response(text=text, content_type="application/vnd.apple.mpegurl")

    async def media(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        if name == "init.mp4":
            return web.Response(body=b"init")
        if not name.removesuffix(".m4s").removesuffix("b").isdigit():  # segments.json, ...: not ours
            return web.Response(status=404)
        number = int(name.removesuffix(".m4s").removesuffix("b"))
        status = 200 if number <= self.newest() else 404
        self.statuses[status] += 1
        if status == 404:
            return web.Response(status=404, text="not made yet")
        return web.Response(body=SEGMENT)


@contextlib.asynccontextmanager
async def scripted(script: LiveScript) -> AsyncIterator[str]:
    app = web.Application()
    app.router.add_get("/live/live.m3u8", script.playlist)
    app.router.add_get("/live/{name}", script.media)
    async with serving_app(app) as base:
        yield f"{base}/live/live.m3u8"


def _after(reload: int, change: Callable[[str, int], str]) -> Callable[[str, int, int], str]:
    return lambda text, k, newest: change(text, newest) if k >= reload else text


_FROZEN: dict[str, str] = {}


def _freeze(text: str, newest: int) -> str:
    return _FROZEN.setdefault("text", text)


def _shift(text: str, by: int) -> str:
    """The same playlist with every media sequence number moved by `by` (the server restarted its count)."""
    out = []
    for line in text.splitlines():
        if line.startswith("#EXT-X-MEDIA-SEQUENCE:"):
            line = f"#EXT-X-MEDIA-SEQUENCE:{max(0, int(line.split(':')[1]) + by)}"
        elif line.endswith(".m4s"):
            line = f"{max(0, int(line.removesuffix('.m4s')) + by)}.m4s"
        out.append(line)
    return "\n".join(out) + "\n"


def _date(n: int, shift_s: float = 0.0) -> str:
    stamp = 1.7e9 + n * SEGMENT_S + shift_s
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(stamp)) + f".{round(stamp % 1 * 1000):03d}Z"


def _redate(text: str, newest: int) -> str:
    """The newest segment dated 0.6 s later than the durations put it."""
    return text.replace(f"#EXT-X-PROGRAM-DATE-TIME:{_date(newest)}", f"#EXT-X-PROGRAM-DATE-TIME:{_date(newest, 0.6)}")


HOSTILE = {
    "the media sequence goes back": (_after(3, lambda t, n: _shift(t, -3)), "EXT-X-MEDIA-SEQUENCE went back"),
    "a listed segment changes its URI": (_after(3, lambda t, n: t.replace(f"\n{n - 1}.m4s", f"\n{n - 1}b.m4s")),
                                         "changed its URI on reload"),
    "the playlist stops advancing": (_after(3, _freeze), "has listed no new segment for"),
    "a segment three times as long": (_after(3, lambda t, n: t.replace("#EXTINF:1.000,\n" + f"{n}.m4s",
                                                                       "#EXTINF:3.000,\n" + f"{n}.m4s")),
                                      "needs segments of one duration"),
    "a date that jumps": (_after(3, _redate), "EXT-X-PROGRAM-DATE-TIME of segment"),
    "the target duration changes": (_after(3, lambda t, n: t.replace("#EXT-X-TARGETDURATION:1", "#EXT-X-TARGETDURATION:2")),
                                    "it must not change"),
    "a delta playlist nobody asked for": (_after(3, lambda t, n: t.replace("#EXT-X-MAP", "#EXT-X-SKIP:SKIPPED-SEGMENTS=2\n#EXT-X-MAP")),
                                          "delta playlist"),
    "a garbled date": (_after(3, lambda t, n: t.replace(".000Z", ".000Q", 1)), "is not an ISO 8601 date-time"),
}


@pytest.mark.parametrize("name", list(HOSTILE))
async def test_a_misbehaving_live_playlist_is_one_clear_error(name: str) -> None:
    _FROZEN.clear()
    mutate, expected = HOSTILE[name]
    script = LiveScript(mutate=mutate)
    async with scripted(script) as url:
        report = await _play(url, speed=SPEED, duration_s=30.0)
    assert report.error is not None and expected in report.error, report.error
    assert "\n" not in report.error and "Traceback" not in report.error
    assert script.statuses[404] == 0  # nothing asked for before it was listed


async def test_plays_a_scripted_live_playlist_and_never_asks_early() -> None:
    script = LiveScript()
    async with scripted(script) as url:
        report = await _play(url, speed=SPEED, duration_s=12.0)
    # The clock estimate errs low by up to a segment until a reload sees one right after its end.
    live = _check_played(report, duration_s=12.0, slack_s=SEGMENT_S)
    assert live["target_latency_s"] == 3.0 and live["blocking_reloads"] == 0
    assert script.statuses[404] == 0 and script.statuses[200] >= len(report.records)


async def test_blocking_playlist_reload_where_the_server_offers_it() -> None:
    script = LiveScript(block=True)
    async with scripted(script) as url:
        report = await _play(url, speed=SPEED, duration_s=12.0)
    live = _check_played(report, duration_s=12.0, slack_s=SEGMENT_S)
    assert live["blocking_reloads"] >= 4 and script.blocked == live["blocking_reloads"]
    assert script.statuses[404] == 0


async def test_an_ended_event_stops_the_session_cleanly() -> None:
    script = LiveScript(mutate=_after(4, lambda t, n: t + "#EXT-X-ENDLIST\n"))
    async with scripted(script) as url:
        report = await _play(url, speed=SPEED, duration_s=60.0)
    assert report.error is None and report.live is not None and report.live["ended"] is True
    assert report.live["played_s"] < 30


async def test_ll_hls_parts_are_played_as_whole_segments() -> None:
    def parts(text: str, reload: int, newest: int) -> str:
        text = text.replace("#EXT-X-MAP", "#EXT-X-PART-INF:PART-TARGET=0.5\n#EXT-X-MAP")
        return text + f'#EXT-X-PART:DURATION=0.5,URI="{newest + 1}.0.m4s"\n'

    script = LiveScript(mutate=parts)
    async with scripted(script) as url:
        report = await _play(url, speed=SPEED, duration_s=8.0)
    live = _check_played(report, duration_s=8.0, slack_s=SEGMENT_S)
    assert live["ll_hls_parts"] == "offered, not played"


@pytest.mark.parametrize(("files", "expected"), [
    ({"v0": "live", "v1": "ended"}, "has #EXT-X-ENDLIST but"),
    ({"v0": "live-no-target"}, "needs #EXT-X-TARGETDURATION"),
])
async def test_live_presentations_refused_at_bootstrap(files: dict[str, str], expected: str) -> None:
    live = "#EXTM3U\n#EXT-X-TARGETDURATION:1\n#EXT-X-MAP:URI=\"init.mp4\"\n#EXTINF:1,\n1.m4s\n"
    bodies = {"live": live, "ended": live + "#EXT-X-ENDLIST\n",
              "live-no-target": live.replace("#EXT-X-TARGETDURATION:1\n", "")}
    master = "#EXTM3U\n" + "".join(f"#EXT-X-STREAM-INF:BANDWIDTH={k + 1}000\n{name}.m3u8\n"
                                   for k, name in enumerate(files))

    async def handle(request: web.Request) -> web.Response:
        name = request.match_info["name"]
        if name == "master.m3u8":
            return web.Response(text=master)
        if name.endswith(".m3u8"):
            return web.Response(text=bodies[files[name.removesuffix(".m3u8")]])
        return web.Response(body=SEGMENT)

    app = web.Application()
    app.router.add_get("/{name}", handle)
    async with serving_app(app) as base:
        with pytest.raises(BootstrapError, match=expected):
            await _play(f"{base}/master.m3u8", duration_s=2.0)


async def test_plays_the_stacks_channel_over_hls_through_the_gateway_and_edge(tmp_path: Path, packaged) -> None:  # type: ignore[no-untyped-def]
    config = live_stack_config(tmp_path, packaged.content_root, speed=10.0)
    players: list[LivePlayer] = []
    async with start_stack(config) as stack:
        target = TitleTarget(title="live", gateway_url=stack.gateway_url, username="alice", password=PASSWORD,
                             protocol="hls")
        # The link's clock leaves out the loop's wait for a core and the channel follows the player's
        # clock, so the timing claims are judged at any load (wave 12 skipped them past a bunched
        # wait: docs/LIVE-SERVER.md, "Under load").
        report = await asyncio.wait_for(play_headless(
            target, PlayerConfig(abr="dynamic", decode="none", speed=10.0),
            link=LinkConfig(trace=open_trace("constant:5e6"), rtt_ms=40, exclude_core_waits=True),
            live=LivePlayConfig(duration_s=40.0, target_latency_s=10.0), on_live_player=players.append), HANG_GUARD_S)
        assert stack.config.live_start_s is not None
        warp = warp_of(players[0].fetcher.clock)
        assert warp is not None
        # the channel as this player sees it: behind the wall's by what its clock left out (its lag)
        true_offset_s = (warped_clock(10.0, stack.config.live_start_s)() - warp.paused_s() * 10.0) - players[0].now()
    # The clock comes from the newest listed segment's end, a lower bound of the server's time: it
    # errs low by how long that segment had been out when a reload saw it (under a segment plus the
    # edge's manifest lifetime and the request), and latency reads that much low until a reload
    # sees a segment sooner after its end. Both bounds are checked here.
    error_s = true_offset_s - players[0].clock_offset_s
    assert -0.5 <= error_s <= 4.0 + 1.5, error_s
    _check_played(report, duration_s=40.0, slack_s=4.0)


# --------------------------------------------------------------------------- older playlists (a cache's copy)
def _older_once(script: LiveScript, at_reload: int) -> Callable[[str, int, int], str]:
    """At reload `at_reload` the playlist as it was two segments earlier (an edge's stale copy)."""
    return lambda text, k, newest: script.text(newest - 2) if k == at_reload else text


@pytest.mark.parametrize("block", [False, True], ids=["plain", "blocking"])
async def test_an_older_playlist_served_once_is_ignored_and_counted(block: bool) -> None:
    script = LiveScript(block=block)
    script.mutate = _older_once(script, 5)
    async with scripted(script) as url:
        report = await _play(url, speed=SPEED, duration_s=10.0)
    live = _check_played(report, duration_s=10.0, slack_s=SEGMENT_S)
    assert live["stale_playlists"] == 1
    assert script.statuses[404] == 0


async def test_a_server_that_only_serves_older_playlists_is_one_clear_error() -> None:
    script = LiveScript()
    kept: dict[str, int] = {}

    def older(text: str, k: int, newest: int) -> str:
        if k < 3:
            kept["newest"] = newest
            return text
        return script.text(kept["newest"] - 1)  # always one segment behind the last current one

    script.mutate = older
    async with scripted(script) as url:
        report = await _play(url, speed=SPEED, duration_s=30.0)
    assert report.error is not None and "older than one already received" in report.error, report.error
    assert "\n" not in report.error and "Traceback" not in report.error


async def test_whole_segments_take_one_reload_each() -> None:
    """A fetch that waited for the refresh loop's reload looks again before reloading itself."""
    script = LiveScript(block=True)
    async with scripted(script) as url:
        report = await _play(url, speed=SPEED, duration_s=12.0)
    live = _check_played(report, duration_s=12.0, slack_s=SEGMENT_S)
    assert live["playlist_reloads"] <= len(report.records) + 3, (live["playlist_reloads"], len(report.records))
