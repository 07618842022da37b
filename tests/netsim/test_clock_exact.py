"""The bounded warp clock (netsim/clock.py): timers run at their exact clock time however late the
loop wakes, the hops to and from the player are no clock time, and so an emulated download takes
the link model's time to the byte-time, under a busy loop, at any speed. Real sockets on 127.0.0.1;
the assertions compare clock readings with the model, never wall-clock budgets."""

from __future__ import annotations

import asyncio
import random
import time

import aiohttp
import pytest

from netsim import synthetic
from netsim.clock import WarpClock, sleep_on
from netsim.link import LinkModel
from netsim.shaper import Shaper, ShaperConfig
from player.client.fetch import Fetcher
from tests.netsim.clockkit import slow_server

pytestmark = pytest.mark.wallclock  # exact timers and downloads against the wall clock, under a busy loop

BODY_BYTES = 100_000


async def test_a_bounded_clock_runs_a_late_timer_at_its_exact_time() -> None:
    loop = asyncio.get_running_loop()
    bounded = WarpClock(loop, cover_stalls=True)
    plain = WarpClock(loop)
    seen: dict[str, float] = {}
    try:
        due = bounded.now() + 0.01
        plain_due = plain.now() + 0.01
        bounded.call_at(due, lambda: seen.setdefault("bounded", bounded.now()))
        plain.call_at(plain_due, lambda: seen.setdefault("plain", plain.now()))
        time.sleep(0.05)  # the loop is busy: both timers run 40 ms late
        assert bounded.now() <= due  # never past a timer that has not run
        await bounded.sleep(0.02)  # (the heartbeat leaves most of the stall out before `due`)
        assert seen["bounded"] == due  # to the float: the lateness is left out
        assert seen["plain"] - plain_due >= 0.03  # the plain clock runs on through it
        assert bounded.stalled_s >= 0.03 and bounded.timers_run == 2
    finally:
        bounded.close()


async def test_timers_run_in_due_order_and_wait_out_a_hold_and_a_cancel() -> None:
    clock = WarpClock(asyncio.get_running_loop(), cover_stalls=True)
    ran: list[str] = []
    try:
        t0 = clock.now()
        clock.call_at(t0 + 0.02, lambda: ran.append("b"))
        clock.call_at(t0 + 0.01, lambda: ran.append("a"))
        dropped = clock.call_at(t0 + 0.005, lambda: ran.append("cancelled"))
        clock.call_at(t0 - 1.0, lambda: ran.append("past"))  # due now: never makes the clock step back
        dropped.cancel()
        clock.hold()
        await asyncio.sleep(0.05)
        assert ran == []  # nothing is due while held, however long the loop ran
        clock.release()
        await sleep_on(clock.now, 0.03)
        assert ran == ["past", "a", "b"]
        assert clock.now() >= t0 + 0.03
    finally:
        clock.close()


async def test_a_timer_callback_that_runs_long_never_makes_the_clock_step_back() -> None:
    loop = asyncio.get_running_loop()
    clock = WarpClock(loop, cover_stalls=True)
    readings: list[float] = []
    after: list[float] = []

    def long_callback() -> None:
        time.sleep(0.02)  # longer than a heartbeat and its slack
        loop.call_soon(lambda: after.append(clock.now()))  # the first thing after it

    try:
        due = clock.now() + 0.002
        clock.call_at(due, long_callback)
        for _ in range(20):
            await asyncio.sleep(0.001)
            readings.append(clock.now())
        assert after[0] >= due and readings == sorted(readings) and readings[-1] >= after[0]
    finally:
        clock.close()


async def test_a_hold_for_the_client_lasts_until_it_acts_or_expires() -> None:
    loop = asyncio.get_running_loop()
    clock = WarpClock(loop)
    clock.hold_for_client()
    assert not clock.paused  # only a clock told to hold for its client does (the shaper's setting)
    clock.holds_for_client = True
    clock.hold_for_client()
    clock.hold_for_client()  # does not nest
    frozen = clock.now()
    time.sleep(0.02)  # the player deciding
    assert clock.now() == frozen and clock.paused
    clock.client_acted()
    assert not clock.paused and clock.client_holds == 1
    clock.hold_for_client(max_wall_s=0.01)  # a player that never acts does not stop the world
    await asyncio.sleep(0.05)
    assert not clock.paused and clock.client_timeouts == 1


async def _busy(period_s: float, seed: int) -> None:
    """Blocks the loop 1-8 ms every `period_s`: another session's work, a loaded machine."""
    rng = random.Random(seed)
    while True:
        await asyncio.sleep(period_s)
        time.sleep(rng.uniform(0.001, 0.008))


@pytest.mark.parametrize("speed", [1.0, 10.0])
async def test_downloads_take_the_link_models_time_exactly_under_a_busy_loop(speed: float) -> None:
    # Five GETs in a row on a 2 Mbit/s link with an 80 ms RTT, a busy loop beside them, and 30 ms
    # of "deciding" between them (time.sleep: the ABR's CPU). On the bounded clock with the
    # player's hops held out, each download takes the model's time (the response's header bytes
    # included) and the next request leaves at the instant the previous download ended.
    async with slow_server(0.01) as upstream:
        host, port = upstream.split(":")
        trace = synthetic.constant(2e6, duration_s=600)
        config = ShaperConfig(upstream_host=host, upstream_port=int(port), trace=trace, rtt_ms=80, speed=speed,
                              exclude_server_time=True, exclude_loop_stalls=True, exclude_client_time=True)
        async with Shaper(config) as shaper, aiohttp.ClientSession() as http:
            clock = shaper.clock
            fetcher = Fetcher(http, clock=clock.now, clock_speed=speed)
            url = f"http://{shaper.host}:{shaper.port}/seg"
            busy = asyncio.create_task(_busy(0.003, seed=int(speed)))
            try:
                durations, gaps = [], []
                ended, port = None, None
                for _ in range(5):
                    fetcher.acting()  # as the headless player does before it decides
                    time.sleep(0.03)  # deciding (the ABR's CPU), with the clock held for the player
                    start = clock.now()
                    if ended is not None:
                        gaps.append(start - ended)
                    fetcher.done_with(port)  # asking again: the request acts once it reaches the shaper
                    result = await fetcher.fetch([url], keep_hold=True)
                    ended, port = clock.now(), result.port
                    assert result.size_bytes == BODY_BYTES
                    durations.append((ended - start) * speed)
            finally:
                busy.cancel()
    wire_bytes = BODY_BYTES + 200  # the response's status line and headers cross the link too
    model_s = 0.08 + LinkModel(trace, payload_factor=1.0).finish_time(0.0, wire_bytes)
    # Within 1 ms of trace time (the header bytes' estimate, the pacing floor of 0.1 ms), where a
    # loop-following clock was 10-100 ms late per download at 10x on a busy loop.
    for took in durations:  # the first too, which opened its connection to the shaper
        assert took == pytest.approx(model_s, abs=0.001)
    assert gaps == [0.0] * 4  # the decision and the hops cost no clock time
    assert clock.client_holds >= 5 and clock.client_timeouts == 0


async def test_without_client_time_held_out_the_players_decisions_cost_clock_time() -> None:
    # The behaviour `exclude_client_time` corrects: 30 ms of deciding moves the next request later.
    async with slow_server(0.0) as upstream:
        host, port = upstream.split(":")
        config = ShaperConfig(upstream_host=host, upstream_port=int(port), trace=synthetic.constant(2e6, duration_s=600),
                              rtt_ms=80, speed=10.0, exclude_server_time=True, exclude_loop_stalls=True)
        async with Shaper(config) as shaper, aiohttp.ClientSession() as http:
            fetcher = Fetcher(http, clock=shaper.clock.now, clock_speed=10.0)
            await fetcher.fetch([f"http://{shaper.host}:{shaper.port}/seg"])
            ended = shaper.clock.now()
            fetcher.acting()  # a no-op: this shaper does not hold for its client
            time.sleep(0.03)
            await asyncio.sleep(0)
            assert shaper.clock.now() - ended > 0.003  # (the stall cover caps a stall at 6 ms)
            assert shaper.clock.client_holds == 0


async def test_an_events_only_clock_moves_at_its_timers_and_holds_alone() -> None:
    # The CPU time a release sets off (the shaper reading an answer's first bytes and starting to
    # pace them) is no clock time: at 10x, 0.1 ms of it was a millisecond of trace time, more when
    # the process lost its core just then, and near an outage in the trace that moved decisions.
    loop = asyncio.get_running_loop()
    with pytest.raises(ValueError, match="bounded"):
        WarpClock(loop).events_only = True
    clock = WarpClock(loop, cover_stalls=True, idle_wall_s=0.2)
    clock.events_only = True
    seen: list[float] = []
    try:
        clock.hold()
        await asyncio.sleep(0.01)
        clock.release()
        at = clock.now()
        time.sleep(0.02)  # the work the release set off, or a stall of the loop
        assert clock.now() == at
        clock.call_at(at + 0.01, lambda: seen.append(clock.now()))
        await asyncio.sleep(0.03)
        assert seen == [at + 0.01] and clock.now() == at + 0.01  # the last event's reading, to the float
        await asyncio.sleep(0.25)  # nothing due and nothing held for idle_wall_s: it runs on with the loop
        assert clock.now() > at + 0.02
    finally:
        clock.close()
    assert not clock.events_only
