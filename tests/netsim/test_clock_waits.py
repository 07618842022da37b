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
    # Measured against the loop's own time around each step (the clock's source), not against fixed
    # spans: a loaded machine may sleep 0.1 s for 0.3 s, or lose its core between two lines.
    loop = asyncio.get_running_loop()
    clock = WarpClock(loop)
    clock.hold()
    at_hold = clock.now()
    await asyncio.sleep(0.1)
    released = loop.time()
    clock.release(waited_s=0.06)  # 60 of those >= 100 ms the server waited for the channel
    reading = clock.now()
    ran_s = loop.time() - released  # at most this long ran after the release
    held = clock.held_s
    assert clock.waited_s == pytest.approx(0.06) and held >= 0.04 - 1e-3
    # the stack's time left out, the wait counted, and no more than the loop's time since
    assert 0.06 - 1e-9 <= reading - at_hold <= 0.06 + ran_s + 1e-9
    before_paused = loop.time()  # paused_s() reads the loop twice: what ran between is clock time
    paused_s = clock.paused_s()
    assert held - (loop.time() - before_paused) - 1e-6 <= paused_s <= held + 1e-6
    # A wait longer than the stand-still counts only the stand-still (the clock never runs ahead)
    waited_before, held_before = clock.waited_s, clock.held_s
    started = loop.time()
    clock.hold()
    before = clock.now()
    await asyncio.sleep(0.02)
    clock.release(waited_s=5.0)
    reading = clock.now()
    span_s = loop.time() - started  # the stand-still and the lines around it, on the loop's time
    assert clock.held_s == pytest.approx(held_before, abs=1e-9)  # all of the stand-still was the wait
    assert 0.02 - 1e-3 <= clock.waited_s - waited_before <= span_s
    assert reading - before <= span_s  # not the 5 s stated
    for bad in (-0.1, float("nan"), float("inf")):
        clock.hold()
        with pytest.raises(ValueError, match="waited_s"):
            clock.release(waited_s=bad)
        clock.release()


async def test_overlapping_waits_count_once() -> None:
    """A blocking reload and a preload hint's part held together on one publication: the clock
    counts the union of their waits, not their sum."""
    loop = asyncio.get_running_loop()
    clock = WarpClock(loop)
    clock.hold()
    clock.hold()
    at_hold = clock.now()
    await asyncio.sleep(0.06)
    first = loop.time()
    clock.release(waited_s=0.05)
    after_first = loop.time()
    await asyncio.sleep(0.02)
    second = loop.time()
    # Reaching 30 ms back past the first release however long the sleep took (a loaded machine)
    clock.release(waited_s=second - first + 0.03)
    reading = clock.now()
    after_second = loop.time()
    # The union: the first wait's 50 ms and what lay between the two releases (loop times bracket it);
    # their sum would be 30 ms more.
    assert 0.05 + (second - after_first) - 1e-9 <= clock.waited_s <= 0.05 + (after_second - first) + 1e-9
    assert clock.waited_s - 1e-9 <= reading - at_hold <= clock.waited_s + (after_second - second) + 1e-9


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
        released = loop.time()
        clock.release(waited_s=0.05)
        while len(ran) < 2 and loop.time() - released < 5.0:
            await asyncio.sleep(0)  # the loop's next turns run them
        since_s = loop.time() - released
        # Each ran at its own time, and the clock kept the whole wait: no lateness left out as a stall.
        # A stall the loop has after the release (a loaded machine) is one: at most the loop's time
        # since; the timers' lateness counted as one would be 40 ms more.
        assert ran == [pytest.approx(at_hold + 0.01, abs=1e-9), pytest.approx(at_hold + 0.03, abs=1e-9)]
        assert clock.now() >= at_hold + 0.05 and clock.stalled_s - stalled <= since_s + 1e-9
    finally:
        clock.close()


@pytest.mark.parametrize("stated_s,split_head", [(None, False), (0.2, False), (0.2, True)])
async def test_the_shaper_counts_the_wait_an_answer_states(stated_s: float | None, split_head: bool) -> None:
    loop = asyncio.get_running_loop()
    async with held_server(0.2, stated_s=stated_s, split_head=split_head) as port:
        config = ShaperConfig(upstream_host="127.0.0.1", upstream_port=port, trace=synthetic.constant(5e6, duration_s=60),
                              rtt_ms=0, exclude_server_time=True)
        async with Shaper(config) as shaper, aiohttp.ClientSession() as http:
            clock = shaper.clock
            held_before = clock.held_s
            wall_started, started = loop.time(), clock.now()  # the clock's span inside the loop's
            async with http.get(f"http://{shaper.host}:{shaper.port}/playlist.m3u8?_HLS_msn=3") as response:
                assert await response.read() == b"ok"
            took_s, wall_s = clock.now() - started, loop.time() - wall_started
            held_s = clock.held_s - held_before
    # On the clock against the loop's time (a loaded machine's client and shaper take what they take):
    if stated_s is None:  # the stack's time: the server's 0.2 s hold left out
        assert clock.waited_s == 0.0 and held_s >= 0.2 - 2e-3 and took_s <= wall_s - 0.2 + 2e-3
    else:  # the channel's time: counted, the head's second half included (it is read whole)
        assert clock.waited_s == pytest.approx(stated_s, abs=1e-3) and stated_s <= took_s <= wall_s
        # what the server took besides: left out (the head's second half 30 ms after its first)
        assert held_s >= (0.03 if split_head else 0.0) - 2e-3
