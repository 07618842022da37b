"""A live link's hold for a send (netsim.clock `hold_for_send`, ShaperConfig `exclude_send_time`): the
player's time building and sending a request is no link time when the link owes nothing, and no hold
at all when it does (a live channel's chunks must not wait for the player)."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest

from netsim import synthetic
from netsim.clock import WarpClock
from netsim.shaper import Shaper, ShaperConfig
from player.client.fetch import Fetcher
from tests.netsim.test_clock import slow_server

pytestmark = pytest.mark.wallclock  # the loop's time between a send's start and the shaper's read


async def test_a_hold_for_send_stands_still_until_sent_and_only_when_the_link_owes_nothing() -> None:
    loop = asyncio.get_running_loop()
    clock = WarpClock(loop, cover_stalls=True, exact_timers=False)
    clock.hold_for_send()  # off: no check set (every clock but a live emulation's)
    assert not clock.paused and clock.send_holds == 0
    owes = [True]
    clock.send_check = lambda: not owes[0]
    clock.hold_for_send()  # the link owes bytes: no hold
    assert not clock.paused
    owes[0] = False
    clock.hold_for_send()
    clock.hold_for_send()  # does not nest
    assert clock.paused and clock.send_holds == 1
    before = clock.now()
    await asyncio.sleep(0.01)
    assert clock.now() == before
    clock.sent()
    clock.sent()  # a no-op without a hold
    assert not clock.paused
    clock.hold_for_send(max_wall_s=0.005)  # a send that never reaches the shaper does not stop the world
    await asyncio.sleep(0.02)
    assert not clock.paused and clock.send_timeouts == 1
    clock.close()


def _live_config(host: str, port: int, *, exclude_send_time: bool) -> ShaperConfig:
    return ShaperConfig(upstream_host=host, upstream_port=port, trace=synthetic.constant(2e6, duration_s=600),
                        rtt_ms=80, speed=10.0, exclude_server_time=True, exclude_loop_stalls=True, exact_timers=False,
                        exclude_send_time=exclude_send_time)


async def _ttfb_after_building_s(shaper: Shaper, http: aiohttp.ClientSession, build_s: float) -> float:
    """Session seconds from the player's start of a request (it says `sending`, then spends `build_s`
    of loop time before its bytes leave: other tasks, its HTTP client) to the answer's headers."""
    fetcher = Fetcher(http, clock=shaper.clock.now, clock_speed=10.0)
    fetcher.sending()
    start = shaper.clock.now()
    await asyncio.sleep(build_s)
    async with http.get(f"http://{shaper.host}:{shaper.port}/seg") as response:
        ttfb = shaper.clock.now() - start
        await response.read()
    return ttfb * 10.0


@pytest.mark.parametrize("exclude", [True, False])
async def test_a_live_links_request_time_is_no_link_time_with_exclude_send_time(exclude: bool) -> None:
    # 20 ms of the player's loop time before a request leaves is 200 ms of session time at 10x: with
    # the hold the first byte comes as soon after the player started as without that time, without
    # it 200 ms later. (The best of three each: a loaded machine adds tens of ms to single requests.)
    async with slow_server(0.0) as upstream:
        host, port = upstream.split(":")
        async with Shaper(_live_config(host, int(port), exclude_send_time=exclude)) as shaper, \
                aiohttp.ClientSession() as http:
            await _ttfb_after_building_s(shaper, http, 0.0)  # a connection to the shaper and the stack
            quick = min([await _ttfb_after_building_s(shaper, http, 0.0) for _ in range(3)])
            built = min([await _ttfb_after_building_s(shaper, http, 0.02) for _ in range(3)])
            holds, timeouts = shaper.clock.send_holds, shaper.clock.send_timeouts
    assert quick >= 0.08  # the RTT is link time either way
    if exclude:
        assert built - quick < 0.08, (quick, built)
        assert holds == 7 and timeouts == 0
    else:
        assert built - quick > 0.15, (quick, built)
        assert holds == 0


async def test_no_hold_for_a_send_while_the_link_carries_an_answer() -> None:
    # A download is still crossing the link (its bytes queued at the shaper): holding the clock for
    # another request's send would hold those bytes up, and a live channel's chunks behind them.
    async with slow_server(0.0) as upstream:
        host, port = upstream.split(":")
        async with Shaper(_live_config(host, int(port), exclude_send_time=True)) as shaper, \
                aiohttp.ClientSession() as http:
            url = f"http://{shaper.host}:{shaper.port}/seg"
            async with http.get(url) as response:
                await response.content.readexactly(1)  # the answer is crossing, most of it queued
                fetcher = Fetcher(http, clock=shaper.clock.now, clock_speed=10.0)
                fetcher.sending()
                assert not shaper.clock.paused and shaper.clock.send_holds == 0
                await response.read()
            await asyncio.sleep(0.01)
            fetcher.sending()  # the link owes nothing now
            assert shaper.clock.paused and shaper.clock.send_holds == 1
            shaper.clock.sent()
