"""The warp clock (netsim/clock.py) and the shaper's use of it: a server's own time is not link
time, at any speed. Real sockets on 127.0.0.1; assertions compare clock readings with the model,
with margins far above event-loop lateness, never wall-clock budgets."""

from __future__ import annotations

import asyncio
import time

import aiohttp
import numpy as np
import pytest

from netsim import synthetic
from netsim.clock import WarpClock, sleep_on
from netsim.shaper import Shaper, ShaperConfig
from player.client.fetch import FetchConfig, Fetcher, FetchError
from tests.netsim.clockkit import BODY_BYTES, slow_server

pytestmark = pytest.mark.wallclock  # the warp clock against the wall clock


async def test_the_clock_stands_still_while_held_and_nested_holds_count() -> None:
    loop = asyncio.get_running_loop()
    clock = WarpClock(loop)
    resumed: list[float] = []
    clock.on_resume(lambda: resumed.append(clock.now()))
    clock.hold()
    clock.hold()
    at_hold = clock.now()
    assert clock.paused and clock.wall_at(at_hold + 1.0) is None
    await asyncio.sleep(0.05)
    assert clock.now() == at_hold  # frozen, however long the loop ran
    clock.release()
    assert clock.paused and not resumed  # one request is still at the server
    await asyncio.sleep(0.02)
    clock.release()
    assert not clock.paused and resumed == [pytest.approx(at_hold, abs=1e-3)]
    assert clock.paused_s() >= 0.07 - 1e-3 and clock.holds_total == 2
    wall = clock.wall_at(clock.now() + 1.0)
    assert wall is not None and wall == pytest.approx(loop.time() + 1.0, abs=0.01)
    with pytest.raises(RuntimeError, match="without a matching hold"):
        clock.release()


async def test_a_sleep_on_the_clock_waits_out_a_pause() -> None:
    clock = WarpClock(asyncio.get_running_loop())
    start = clock.now()
    sleeper = asyncio.create_task(sleep_on(clock.now, 0.05))
    clock.hold()
    await asyncio.sleep(0.15)  # three times the sleep, all of it paused
    assert not sleeper.done()
    clock.release()
    await sleeper
    assert clock.now() - start >= 0.05


async def test_a_stalled_loop_costs_the_covered_clock_at_most_one_beat() -> None:
    loop = asyncio.get_running_loop()
    clock = WarpClock(loop, cover_stalls=True, beat_s=0.005, slack_s=0.001)
    plain = WarpClock(loop)
    try:
        await asyncio.sleep(0.02)
        before, plain_before, stalled_before = clock.now(), plain.now(), clock.stalled_s
        time.sleep(0.1)  # the loop is stalled: no callback runs, and the covered clock waits at its horizon
        during = clock.now()
        assert during - before <= 0.006 + 1e-9 and plain.now() - plain_before >= 0.1
        await asyncio.sleep(0.001)  # the late beat finds the stall and leaves it out, without a step back
        assert clock.now() >= during and clock.stalled_s - stalled_before >= 0.09
        clock.hold()  # a hold freezes it as before
        held_at = clock.now()
        time.sleep(0.02)
        assert clock.now() == held_at
        clock.release()
        assert clock.now() == pytest.approx(held_at, abs=0.007)
    finally:
        clock.close()


async def _download_trace_s(*, speed: float, think_s: float, exclude: bool,
                            fetch: FetchConfig = FetchConfig()) -> tuple[float, WarpClock]:
    """One GET through a shaper at `speed` (2 Mbit/s, 80 ms RTT): request to last byte in trace seconds."""
    async with slow_server(think_s) as upstream:
        host, port = upstream.split(":")
        config = ShaperConfig(upstream_host=host, upstream_port=int(port), trace=synthetic.constant(2e6, duration_s=600),
                              rtt_ms=80, speed=speed, exclude_server_time=exclude)
        async with Shaper(config) as shaper, aiohttp.ClientSession() as http:
            fetcher = Fetcher(http, fetch, clock=shaper.clock.now, clock_speed=speed)
            result = await fetcher.fetch([f"http://{shaper.host}:{shaper.port}/seg"])
            assert result.size_bytes == BODY_BYTES
            return result.duration_s * speed, shaper.clock


MODEL_S = 0.08 + BODY_BYTES * 8 / 2e6  # RTT + body at the link rate (headers add a little)


@pytest.mark.parametrize("speed", [1.0, 10.0])
async def test_server_time_is_not_link_time_at_any_speed(speed: float) -> None:
    # The server thinks 0.3 s of loop time: at 10x that would be 3 s of trace time, 7.5 times the
    # download itself. Held out, the download takes the model's time whatever the speed.
    took_s, clock = await _download_trace_s(speed=speed, think_s=0.3, exclude=True)
    assert clock.holds_total >= 1 and clock.held_s >= 0.3 - 0.02
    assert took_s == pytest.approx(MODEL_S, abs=0.15 * speed ** 0.5)
    assert took_s < MODEL_S + 0.3 * speed / 2


async def test_without_exclusion_server_time_counts_k_times() -> None:
    # The behaviour the exclusion corrects (and the shaper's default for a standalone proxy).
    took_s, clock = await _download_trace_s(speed=10.0, think_s=0.3, exclude=False)
    assert clock.holds_total == 0
    assert took_s > MODEL_S + 0.3 * 10 * 0.9


async def test_first_byte_timeout_is_session_time_and_ignores_server_time() -> None:
    quick = FetchConfig(first_byte_timeout_s=2.0, attempts=1)
    # 0.5 loop seconds of thinking are 5 s of session time at 10x: past a 2 s timeout...
    with pytest.raises(FetchError, match="timeout"):
        await _download_trace_s(speed=10.0, think_s=0.5, exclude=False, fetch=quick)
    # ...unless the server's time is held out of session time, as the emulated sessions do.
    took_s, _ = await _download_trace_s(speed=10.0, think_s=0.5, exclude=True, fetch=quick)
    assert took_s < 2.0


async def test_fetch_timeouts_scale_with_clock_speed() -> None:
    quick = FetchConfig(first_byte_timeout_s=2.0, attempts=1)
    async with slow_server(0.5) as upstream, aiohttp.ClientSession() as http:
        # 0.5 s at speed 1 is within 2 s of session time; at speed 10 the same 0.5 s is 5 s.
        assert (await Fetcher(http, quick).fetch([f"http://{upstream}/seg"])).size_bytes == BODY_BYTES
        with pytest.raises(FetchError, match="no response \\(timeout\\)"):
            await Fetcher(http, quick, clock_speed=10.0).fetch([f"http://{upstream}/seg"])


async def test_within_does_not_time_out_while_the_clock_is_held() -> None:
    async with aiohttp.ClientSession() as http:
        clock = WarpClock(asyncio.get_running_loop())
        fetcher = Fetcher(http, clock=clock.now, clock_speed=10.0)
        never: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        clock.hold()
        waiting = asyncio.create_task(fetcher.within(never, 1.0))  # 0.1 s of the clock
        await asyncio.sleep(0.3)
        assert not waiting.done()
        clock.release()
        with pytest.raises(TimeoutError):
            await waiting
        assert never.cancelled()


def test_the_link_model_of_emulated_rows_starts_at_the_first_media_request() -> None:
    # The shaper's time 0 is the first media request; session time before it (license, init
    # segments) is no link time, and at 10x it is 10 times as long. 4 Mbit/s for 1 s, then 0.5.
    from netsim.trace import Trace
    from player.research.experiment_cells import model_download_s
    from player.research.sim import PROFILES
    from player.session import SegmentRecord

    trace = Trace(name="drop", durations_s=np.array([1.0, 100.0]), bandwidth_bps=np.array([4e6, 0.5e6]))
    size = 250_000  # 0.5 s at 4 Mbit/s

    def record(request_time_s: float) -> SegmentRecord:
        return SegmentRecord(segment_index=0, quality=0, bitrate_bps=1, size_bytes=size, request_time_s=request_time_s,
                             download_s=0.0, ttfb_s=0.0, rebuffer_s=0.0, buffer_before_s=0.0, buffer_after_s=0.0,
                             wait_s=0.0, reason="")

    profile = PROFILES["default"]
    (at_zero,) = model_download_s(trace, profile, 0.0, [record(0.0)])
    (after_preroll,) = model_download_s(trace, profile, 0.0, [record(0.6)])
    assert after_preroll == pytest.approx(at_zero) == pytest.approx(profile.rtt_s + 0.5)


async def test_without_exact_timers_a_late_timer_is_clock_time_within_the_heartbeats_bound() -> None:
    # Live emulation's clock (player.research.experiment_live.live_link): stalls the heartbeat finds
    # are left out, but not each timer's lateness, so the clock keeps to the wall clock the live
    # channel streams on. A bounded clock would read exactly `due` in the timer and count 2+ ms late.
    loop = asyncio.get_running_loop()
    clock = WarpClock(loop, cover_stalls=True, exact_timers=False)
    seen: list[float] = []
    try:
        assert not clock.bounded
        due = clock.now() + 0.002
        clock.call_at(due, lambda: seen.append(clock.now()))
        time.sleep(0.004)  # the timer runs ~2 ms late, within the heartbeat's 6 ms bound
        await asyncio.sleep(0.01)
        assert seen and seen[0] > due and clock.late_s == 0.0
    finally:
        clock.close()
