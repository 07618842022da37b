"""The live player's open requests told to its link's clock (player.client.openrequests): a request
goes alone only when nothing else of the player's is open, and only then is its send hop held."""

from __future__ import annotations

import asyncio
import time

from netsim.clock import WarpClock
from player.client.openrequests import OpenRequests


async def test_only_a_request_with_nothing_else_open_goes_alone() -> None:
    clock = WarpClock(asyncio.get_running_loop(), cover_stalls=True, exact_timers=False)  # a live link's
    requests = OpenRequests(clock.now, enabled=True)
    try:
        async with requests.one():  # the join's init segment: alone, its send held until it reaches the shaper
            assert clock.lone_request and clock.paused
            clock.client_done(None, 5000)  # it reached the shaper
            assert not clock.paused
            async with requests.one():  # an MPD refresh while the segment streams: neither is alone
                assert not clock.lone_request and not clock.paused
            assert clock.lone_request  # the first is alone again (its request may still be on its way)
        # Its answer is in and nothing else is open: the player decides what next, on no link time...
        assert not clock.lone_request and clock.paused
        async with requests.one():  # ...until its next request reaches the shaper (no second hold)
            assert clock.lone_request and clock.paused and clock.client_holds == 2
            clock.client_done(None, 5000)
        clock.client_done(None)  # or it sleeps (`WarpClock.sleep` acts)
        assert not clock.paused
        async with requests.one(lone=False):  # the clock sync's /time: counted, never alone
            assert not clock.lone_request and not clock.paused
            async with requests.one():
                assert not clock.lone_request and not clock.paused
            assert not clock.paused  # another is open: no hold
        assert not clock.paused and (requests.open, requests.lone) == (0, 2)
        try:
            async with requests.one():  # a request that fails: no hold for what comes after it
                clock.client_done(None)
                raise OSError("refused")
        except OSError:
            pass
        assert not clock.paused and not clock.lone_request and requests.open == 0
    finally:
        clock.close()


async def test_a_player_that_does_not_tell_leaves_the_clock_alone() -> None:
    # A clock that is not this player's alone, or one that leaves nothing out (enabled False), or no
    # warp clock at all: nothing is told, nothing held.
    clock = WarpClock(asyncio.get_running_loop(), cover_stalls=True, exact_timers=False)
    try:
        for requests in (OpenRequests(clock.now, enabled=False), OpenRequests(time.monotonic, enabled=True)):
            async with requests.one():
                assert not clock.lone_request and not clock.paused and requests.open == 1
            assert requests.lone == 0
    finally:
        clock.close()


def test_the_dash_live_player_tells_and_the_hls_one_does_not() -> None:
    # The HLS player's playlist reloads and parts are not counted: its clock must never be told a
    # request is alone while one of those may be held at the server or streaming.
    from player.client.hlslive import HlsLivePlayer
    from player.client.liveplay import LivePlayer

    assert LivePlayer.tells_open_requests and not HlsLivePlayer.tells_open_requests
