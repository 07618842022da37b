"""Live emulation on the player's clock (`X-Abrkit-Channel-Lag`): a player whose clock leaves out the
stack's time says how far it runs behind, and the origin and the edge answer on that clock (the
availability of a segment, the release of each chunk, `/time`), each request with its own origin
fetch; a stack without `player_clocks` ignores the header (real sockets, the wall clock)."""

from __future__ import annotations

import time
from datetime import datetime

import aiohttp
import pytest

from server.formats.names import CHANNEL_LAG_HEADER
from tests.server.live.chunkkit import chunk_arrivals, chunk_ends
from tests.server.live.conftest import StackFactory


def _stamp(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


async def test_a_lagging_player_gets_the_channel_on_its_own_clock(live_stack: StackFactory) -> None:  # noqa: F811
    # 9.2 s in: segment 3's first chunk came out at 8.5 s on the channel's clock. A player 0.6 s
    # behind is at 8.6 s: the segment is there for it too, and each chunk comes 0.6 s later.
    stack = await live_stack(since_start_s=9.2, player_clocks=True)
    assert stack.edge is not None
    channel, origin_url, edge_url, counts = stack.channel, stack.origin_url, stack.edge.url, stack.counts
    path = "/live/video/v216p/3.m4s"
    ends = chunk_ends(channel, "v216p", 3)
    async with aiohttp.ClientSession() as http:
        # A playlist too (the HLS player's clock is its dates): at 4.5 s behind only segment 1 is complete
        playlists = {}
        for lag in ("0", "4.5"):
            async with http.get(edge_url + "/live/video/v216p/playlist.m3u8", headers={CHANNEL_LAG_HEADER: lag}) as response:
                assert response.status == 200 and response.headers[CHANNEL_LAG_HEADER].startswith(lag)
                playlists[lag] = await response.text()
        assert "\n2.m4s" in playlists["0"] and "\n2.m4s" not in playlists["4.5"] and "\n1.m4s" in playlists["4.5"]
        async with http.get(edge_url + path, headers={CHANNEL_LAG_HEADER: "0.6"}) as response:
            assert response.status == 200 and response.headers[CHANNEL_LAG_HEADER].startswith("0.6")
            got, arrivals = await chunk_arrivals(response, ends)
        assert got == ends[-1]
        for index, arrived in enumerate(arrivals):
            assert arrived >= channel.chunk_available_at_s(3, index) + 0.6 - 0.05, index  # on the player's clock
        # 1.0 s behind, the player is at 8.2 s: segment 3 is not out yet for it; without a lag it is.
        async with http.get(edge_url + "/live/video/v216p/4.m4s", headers={CHANNEL_LAG_HEADER: "4.5"}) as response:
            assert response.status == 404 and "not available yet" in (await response.json())["error"]
        # Each lagging request is one player's view: its own origin fetch, never kept by the edge.
        async with http.get(edge_url + path, headers={CHANNEL_LAG_HEADER: "0.1"}) as response:
            assert response.status == 200 and response.headers["X-Cache"] == "MISS"
        assert counts[path] == 2
        for url in (origin_url, edge_url):
            async with http.get(url + "/time", headers={CHANNEL_LAG_HEADER: "5"}) as response:
                assert response.headers[CHANNEL_LAG_HEADER].startswith("5")
                assert _stamp(await response.text()) == pytest.approx(time.time() - 5, abs=1.0)
            for bad in ("-1", "soon", "nan", "1e9"):
                async with http.get(url + "/time", headers={CHANNEL_LAG_HEADER: bad}) as response:
                    assert response.status == 400 and CHANNEL_LAG_HEADER in (await response.json())["error"]
            async with http.get(url + path, headers={CHANNEL_LAG_HEADER: "-0.5"}) as response:
                assert response.status == 400  # asking for chunks from the future is refused


async def test_a_stack_without_player_clocks_ignores_the_lag(live_stack: StackFactory) -> None:  # noqa: F811
    stack = await live_stack(since_start_s=20.0)
    assert stack.edge is not None
    origin_url, edge_url = stack.origin_url, stack.edge.url
    async with aiohttp.ClientSession() as http:
        for url in (origin_url, edge_url):
            async with http.get(url + "/time", headers={CHANNEL_LAG_HEADER: "5"}) as response:
                assert response.status == 200 and CHANNEL_LAG_HEADER not in response.headers
                assert _stamp(await response.text()) == pytest.approx(time.time(), abs=1.0)
            async with http.get(url + "/live/video/v216p/3.m4s", headers={CHANNEL_LAG_HEADER: "junk"}) as response:
                assert response.status == 200 and CHANNEL_LAG_HEADER not in response.headers
            async with http.get(url + "/live/video/v216p/playlist.m3u8", headers={CHANNEL_LAG_HEADER: "5"}) as response:
                assert response.status == 200 and CHANNEL_LAG_HEADER not in response.headers
