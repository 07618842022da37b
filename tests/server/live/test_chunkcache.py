"""The live origin's per-segment chunk cache (server/live/chunkcache.py): a segment is built once for
all its LL-HLS parts and whole-segment requests, bounded by the time-shift window, dropped when it
leaves it, one build for concurrent misses, and the same bytes as building it afresh."""

from __future__ import annotations

import threading
import time

import aiohttp
import pytest
from aiohttp import web

from server.live.channel import LiveChannel, LiveConfig
from server.live.chunkcache import ChunkCache
from server.live.origin import LIVE_CHANNEL
from server.origin import OriginConfig, create_app
from tests.conftest import CLEAR_TITLE, PackagedTitles
from tests.server.live.conftest import make_channel

START_S = 1_000_000.0


def _at(channel: LiveChannel, now_s: float) -> LiveChannel:
    channel.clock = lambda: now_s
    return channel


def test_a_segment_is_built_once_and_is_the_same_bytes(packaged: PackagedTitles) -> None:
    channel = _at(make_channel(packaged, start_s=START_S, low_latency=True), START_S + 20.0)
    first = channel.segment_chunks("video", "v216p", 5)
    assert channel.segment_chunks("video", "v216p", 5) is first  # kept, not rebuilt
    assert first == channel.build_segment_chunks("video", "v216p", 5) and len(first) == 8
    channel.segment_chunks("audio", "a128k", 5)
    assert channel.chunk_cache.stats().builds == 2 and channel.chunk_cache.stats().hits == 1


def test_segments_that_left_the_window_are_dropped(packaged: PackagedTitles) -> None:
    channel = _at(make_channel(packaged, start_s=START_S, low_latency=True, time_shift_buffer_s=8.0), START_S + 20.0)
    window = 8 // 4 + 2
    assert channel.chunk_cache.max_segments == window * len(channel.tracks())
    for number in (3, 4, 5, 6):
        channel.segment_chunks("video", "v216p", number)
    assert channel.chunk_cache.stats().entries == 4
    _at(channel, START_S + 30.0)  # oldest in the window: segment 6
    channel.segment_chunks("video", "v216p", 8)
    stats = channel.chunk_cache.stats()
    assert stats.entries == 2 and stats.bytes == sum(len(c) for n in (6, 8)
                                                     for c in channel.build_segment_chunks("video", "v216p", n))
    channel.segment_chunks("video", "v216p", 4)  # a straggler asking directly: built, not kept
    assert channel.chunk_cache.stats().entries == 2


def test_bounds_by_segments_and_bytes_least_recent_first() -> None:
    cache = ChunkCache(max_segments=2, max_bytes=10)
    for number in (1, 2):
        cache.get(("video", "v", number), lambda: (b"abc",))
    cache.get(("video", "v", 1), lambda: pytest.fail("kept"))  # 1 is now the most recent
    cache.get(("video", "v", 3), lambda: (b"abc",))
    assert cache.get(("video", "v", 1), lambda: (b"new",)) == (b"abc",)  # 2 went, not 1
    assert cache.get(("video", "v", 2), lambda: (b"built again",)) == (b"built again",)
    assert cache.stats().bytes <= 10  # 11 bytes kept alone would break the byte bound: over it, not kept
    with pytest.raises(ValueError, match=">= 0"):
        ChunkCache(max_segments=-1)


def test_concurrent_misses_wait_for_one_build_and_errors_are_not_kept() -> None:
    cache = ChunkCache(max_segments=4)
    calls, release = [], threading.Event()

    def build() -> tuple[bytes, ...]:
        calls.append(1)
        release.wait(5)
        return (b"x",)

    results: list[tuple[bytes, ...]] = []
    threads = [threading.Thread(target=lambda: results.append(cache.get(("video", "v", 1), build))) for _ in range(4)]
    for thread in threads:
        thread.start()
    time.sleep(0.05)
    release.set()
    for thread in threads:
        thread.join(5)
    assert len(calls) == 1 and results == [(b"x",)] * 4

    def broken() -> tuple[bytes, ...]:
        raise OSError("source segment gone")

    with pytest.raises(OSError, match="gone"):
        cache.get(("video", "v", 2), broken)
    assert cache.get(("video", "v", 2), lambda: (b"y",)) == (b"y",)


def test_off_builds_every_time(packaged: PackagedTitles) -> None:
    channel = _at(make_channel(packaged, start_s=START_S, low_latency=True, chunk_cache=False), START_S + 20.0)
    assert channel.segment_chunks("video", "v216p", 5) is not channel.segment_chunks("video", "v216p", 5)
    assert channel.chunk_cache.stats().entries == 0
    with pytest.raises(KeyError):
        channel.segment_chunks("video", "nope", 5)


async def test_the_origin_builds_a_segment_once_for_all_its_parts(packaged: PackagedTitles) -> None:
    live = LiveConfig(source_title=CLEAR_TITLE, availability_start_s=time.time() - 8.0 - 0.5 * 8 - 0.2,
                      low_latency=True)  # segment 3 complete, 4 not begun
    app = create_app(OriginConfig(content_root=packaged.content_root, port=0, live=live))
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    base = f"http://127.0.0.1:{site.port}/live/video/v216p/"
    try:
        async with aiohttp.ClientSession() as http:
            bodies = []
            for path in [f"2.{c}.m4s" for c in range(8)] + ["2.m4s"] * 3:
                async with http.get(base + path) as response:
                    assert response.status == 200
                    bodies.append(await response.read())
    finally:
        await runner.cleanup()
    channel = app[LIVE_CHANNEL]
    assert b"".join(bodies[:8]) == bodies[8] == b"".join(channel.build_segment_chunks("video", "v216p", 2))
    assert channel.chunk_cache.stats().builds == 1 and channel.chunk_cache.stats().hits == 10
