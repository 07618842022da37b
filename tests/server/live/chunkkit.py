"""Reading a live segment's CMAF chunks as they arrive (tests/server/live/test_live_http.py,
test_player_clocks.py): where each chunk ends in the body, and when each was had."""

from __future__ import annotations

import time
from typing import Any

import aiohttp


def chunk_ends(channel: Any, rendition: str, segment: int) -> list[int]:
    """Where each CMAF chunk of a video segment ends in its body, in bytes."""
    ends, total = [], 0
    for chunk in channel.segment_chunks("video", rendition, segment):
        total += len(chunk)
        ends.append(total)
    return ends


async def chunk_arrivals(response: aiohttp.ClientResponse, ends: list[int]) -> tuple[int, list[float]]:
    """Reads a chunked body: the bytes read and the wall time each chunk (ending at `ends`) was had."""
    arrivals: list[float] = []
    got = 0
    async for piece in response.content.iter_any():
        got += len(piece)
        now = time.time()
        while len(arrivals) < len(ends) and ends[len(arrivals)] <= got:
            arrivals.append(now)
    return got, arrivals
