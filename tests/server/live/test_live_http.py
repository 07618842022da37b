"""The live channel over HTTP: the origin's live routes on the wall clock, and an edge in front of
it that makes one origin fetch per object and streams a segment still arriving (real sockets)."""

from __future__ import annotations

import asyncio
import time
import xml.etree.ElementTree as ET
from collections import Counter
from datetime import datetime

import aiohttp
import pytest
from aiohttp import web

from server.edge import EdgeConfig, start_edge
from server.formats.dash import MPD_NS
from tests.server.live.chunkkit import chunk_arrivals, chunk_ends
from tests.server.live.conftest import VERIFY_KEY, StackFactory


async def test_segments_outside_the_window_are_clear_404s(live_stack: StackFactory) -> None:
    stack = await live_stack(since_start_s=100.0)
    async with aiohttp.ClientSession() as http:
        for number, message in ((99, "not available yet"), (1, "left the 30 s time-shift window")):
            async with http.get(f"{stack.origin_url}/live/video/v216p/{number}.m4s") as response:
                body = await response.json()
                assert response.status == 404 and message in body["error"] and body["segment"] == number
                assert response.headers["Cache-Control"] == "no-store"
                assert ("Retry-After" in response.headers) == (number == 99)
        async with http.get(f"{stack.origin_url}/live/video/v216p/20.m4s") as response:
            assert response.status == 200 and response.headers.get("Transfer-Encoding") is None
            assert await response.read() == b"".join(stack.channel.segment_chunks("video", "v216p", 20))
        for path, status in (("/live/segments.json", 404), ("/live/video/nosuch/init.mp4", 404),
                             ("/live/video/v216p/init.mp4", 200), ("/time", 200), ("/clip/manifest.mpd", 200)):
            async with http.get(stack.origin_url + path) as response:
                assert response.status == status, path


async def test_chunks_are_released_on_the_wall_clock(live_stack: StackFactory) -> None:
    stack = await live_stack(since_start_s=8.55)  # segment 3: its first 0.5 s chunk just published
    channel = stack.channel
    ends = chunk_ends(channel, "v216p", 3)
    async with aiohttp.ClientSession() as http, http.get(f"{stack.origin_url}/live/video/v216p/3.m4s") as response:
        assert response.status == 200 and response.headers["Transfer-Encoding"] == "chunked"
        assert response.headers["X-Live-Chunks"] == "8"
        got, arrivals = await chunk_arrivals(response, ends)
    assert got == ends[-1] and len(arrivals) == 8
    for index, arrived in enumerate(arrivals):
        assert arrived >= channel.chunk_available_at_s(3, index) - 0.05, index  # never early
    assert arrivals[-1] - arrivals[0] > 2.5  # released over the segment, not at its end


async def _read(http: aiohttp.ClientSession, url: str) -> tuple[int, bytes, str]:
    async with http.get(url) as response:
        return response.status, await response.read(), response.headers.get("X-Cache", "")


@pytest.mark.parametrize("coalescing", [True, False])
async def test_concurrent_clients_of_a_live_segment_cause_one_origin_fetch(
        live_stack: StackFactory, coalescing: bool) -> None:
    stack = await live_stack(since_start_s=8.6, coalescing=coalescing)
    assert stack.edge is not None
    path = "/live/video/v216p/3.m4s"
    expected = b"".join(stack.channel.segment_chunks("video", "v216p", 3))
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http:
        first = asyncio.gather(*(_read(http, stack.edge.url + path) for _ in range(25)))
        await asyncio.sleep(1.0)  # later clients join the segment mid-way
        second = asyncio.gather(*(_read(http, stack.edge.url + path) for _ in range(25)))
        results = await first + await second
        assert all(status == 200 and body == expected for status, body, _ in results)
        assert stack.counts[path] == (1 if coalescing else 50)
        labels = Counter(label for _, _, label in results)
        assert labels["MISS"] == (1 if coalescing else 50)
        assert stack.edge.edge.stats.cache_misses == labels["MISS"]  # /metrics counts them
        # Complete now: served from the edge's cache either way.
        assert await _read(http, stack.edge.url + path) == (200, expected, "HIT")


async def test_edge_refuses_early_segments_without_keeping_the_refusal(live_stack: StackFactory) -> None:
    stack = await live_stack(since_start_s=7.8)  # segment 3 publishes its first chunk at 8.5 s
    assert stack.edge is not None
    url = stack.edge.url + "/live/video/v216p/3.m4s"
    async with aiohttp.ClientSession() as http:
        async with http.get(url) as response:
            assert response.status == 404 and "not available yet" in (await response.json())["error"]
        await asyncio.sleep(max(0.0, stack.channel.segment_available_at_s(3) - time.time()) + 0.05)
        status, _, _ = await _read(http, url)
        assert status == 200 and stack.counts["/live/video/v216p/3.m4s"] == 2


async def test_edge_serves_the_mpd_briefly_cached_with_its_own_time_url(live_stack: StackFactory) -> None:
    stack = await live_stack(since_start_s=20.0)
    assert stack.edge is not None
    async with aiohttp.ClientSession() as http:
        async with http.get(stack.edge.url + "/live/manifest.mpd") as response:
            assert response.status == 200
            root = ET.fromstring(await response.read())
        for _ in range(3):
            await _read(http, stack.edge.url + "/live/manifest.mpd")
        assert stack.counts["/live/manifest.mpd"] == 1  # kept for at most live_manifest_max_age_s
        timing = root.find(f"{{{MPD_NS}}}UTCTiming")
        assert timing is not None and timing.get("value") == stack.edge.url + "/time"
        async with http.get(stack.edge.url + "/time") as response:
            stamp = datetime.fromisoformat((await response.text()).replace("Z", "+00:00")).timestamp()
            assert abs(stamp - time.time()) < 5 and response.headers["Cache-Control"] == "no-store"
        await asyncio.sleep(1.1)
        await _read(http, stack.edge.url + "/live/manifest.mpd")
        assert stack.counts["/live/manifest.mpd"] == 2
        status, body, _ = await _read(http, stack.edge.url + "/live/video/v216p/playlist.m3u8")
        assert status == 200 and b"#EXT-X-PROGRAM-DATE-TIME" in body and b"#EXT-X-ENDLIST" not in body


async def test_an_origin_breaking_off_a_live_segment_breaks_the_clients_responses_too() -> None:
    """A real origin can die mid-segment: its clients must see a broken response (no terminating
    chunk), never a short segment that looks complete, and the edge must not keep it."""
    hits: Counter[str] = Counter()

    async def broken(request: web.Request) -> web.StreamResponse:
        hits[request.path] += 1
        response = web.StreamResponse(headers={"Content-Type": "video/iso.segment"})
        response.enable_chunked_encoding()
        await response.prepare(request)
        await response.write(b"x" * 1000)
        await asyncio.sleep(0.3)
        assert request.transport is not None
        request.transport.close()
        return response

    app = web.Application()
    app.router.add_get("/live/video/v216p/{n}.m4s", broken)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    edge = await start_edge(EdgeConfig(edge_id="edge-live", origin_url=f"http://127.0.0.1:{site.port}",
                                       url_verify_key=VERIFY_KEY, require_signature=False, live_channels=("live",)))
    try:
        url = edge.url + "/live/video/v216p/5.m4s"
        async with aiohttp.ClientSession() as http:
            outcomes = await asyncio.gather(*(_read(http, url) for _ in range(3)), return_exceptions=True)
            assert all(isinstance(o, aiohttp.ClientPayloadError) for o in outcomes), outcomes
            assert hits["/live/video/v216p/5.m4s"] == 1
            with pytest.raises(aiohttp.ClientPayloadError):
                await _read(http, url)  # a late client: the broken copy was not kept, the edge asks again
            assert hits["/live/video/v216p/5.m4s"] == 2
    finally:
        await edge.stop()
        await runner.cleanup()
