"""A hold the server spent waiting for a live channel's publication is the channel's time: the
`WarpClock` counts it (`release(waited_s=)`), and the shaper reads it from the answer's head
(`Server-Timing: publish-wait`, server.formats.servertiming)."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest

from netsim import synthetic
from netsim.clock import WarpClock
from netsim.shaper import Shaper, ShaperConfig
from tests.netsim.conftest import held_server

pytestmark = pytest.mark.wallclock  # the warp clock against the wall clock


async def test_a_wait_for_publication_moves_the_clock_on_by_its_span() -> None:
    loop = asyncio.get_running_loop()
    clock = WarpClock(loop)
    clock.hold()
    at_hold = clock.now()
    await asyncio.sleep(0.1)
    clock.release(waited_s=0.06)  # 60 of those ~100 ms the server waited for the channel
    held = clock.held_s
    assert clock.waited_s == pytest.approx(0.06) and held >= 0.04 - 1e-3
    # the stack's ~40 ms left out, no more (the slack: a loaded machine's lost core between the lines)
    assert clock.now() - at_hold == pytest.approx(0.06, abs=0.01)
    assert clock.paused_s() == pytest.approx(held, abs=1e-4)
    # A wait longer than the stand-still counts only the stand-still (the clock never runs ahead)
    clock.hold()
    before = clock.now()
    await asyncio.sleep(0.02)
    clock.release(waited_s=5.0)
    assert clock.now() - before < 0.03 and clock.waited_s < 0.06 + 0.03
    for bad in (-0.1, float("nan"), float("inf")):
        clock.hold()
        with pytest.raises(ValueError, match="waited_s"):
            clock.release(waited_s=bad)
        clock.release()


async def test_overlapping_waits_count_once() -> None:
    """A blocking reload and a preload hint's part held together on one publication: the clock
    counts the union of their waits, not their sum."""
    clock = WarpClock(asyncio.get_running_loop())
    clock.hold()
    clock.hold()
    at_hold = clock.now()
    await asyncio.sleep(0.06)
    clock.release(waited_s=0.05)
    await asyncio.sleep(0.02)
    clock.release(waited_s=0.05)  # overlaps the first by 30 ms
    assert clock.waited_s == pytest.approx(0.07, abs=3e-3)
    assert clock.now() - at_hold == pytest.approx(0.07, abs=3e-3)


async def test_a_bounded_clock_runs_the_timers_due_in_a_wait_and_keeps_its_span() -> None:
    loop = asyncio.get_running_loop()
    clock = WarpClock(loop, cover_stalls=True)
    try:
        ran: list[float] = []
        clock.hold()
        at_hold = clock.now()
        for due in (0.01, 0.03):
            clock.call_at(at_hold + due, lambda: ran.append(clock.now()))
        await asyncio.sleep(0.06)
        stalled = clock.stalled_s
        clock.release(waited_s=0.05)
        await asyncio.sleep(0.005)
        # Each ran at its own time, and the clock kept the whole wait: no lateness left out as a stall
        assert ran == [pytest.approx(at_hold + 0.01, abs=1e-9), pytest.approx(at_hold + 0.03, abs=1e-9)]
        assert clock.now() >= at_hold + 0.05 and clock.stalled_s - stalled < 0.004
    finally:
        clock.close()


@pytest.mark.parametrize("stated_s,split_head", [(None, False), (0.2, False), (0.2, True)])
async def test_the_shaper_counts_the_wait_an_answer_states(stated_s: float | None, split_head: bool) -> None:
    async with held_server(0.2, stated_s=stated_s, split_head=split_head) as port:
        config = ShaperConfig(upstream_host="127.0.0.1", upstream_port=port, trace=synthetic.constant(5e6, duration_s=60),
                              rtt_ms=0, exclude_server_time=True)
        async with Shaper(config) as shaper, aiohttp.ClientSession() as http:
            clock = shaper.clock
            started = clock.now()
            async with http.get(f"http://{shaper.host}:{shaper.port}/playlist.m3u8?_HLS_msn=3") as response:
                assert await response.read() == b"ok"
            took_s = clock.now() - started
    if stated_s is None:  # the stack's time: left out
        assert took_s < 0.1 and clock.waited_s == 0.0
    else:  # the channel's time: counted, the head's second half included (it is read whole)
        assert clock.waited_s == pytest.approx(stated_s, abs=1e-3) and 0.2 <= took_s < 0.3
