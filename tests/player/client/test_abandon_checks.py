"""The headless player's abandonment checks (player.client.progress) are the simulator's: on a
shaped link, the same download is offered at the same times with the same bytes as
`player.research.sim_abandon.link_checks` computes on the link model, at 1x and at 10x. Real sockets
on 127.0.0.1 through the shaper; the assertions compare clock readings and byte counts with the model."""

from __future__ import annotations

import asyncio

import aiohttp
import numpy as np
import pytest
from aiohttp import web

from netsim.link import LinkModel
from netsim.shaper import Shaper, ShaperConfig
from netsim.trace import Trace
from player.abandon import AbandonRule
from player.client.fetch import Abandoned, FetchConfig, Fetcher
from player.research.sim_abandon import link_checks
from tests.netsim.clockkit import BODY_BYTES, slow_server
from tests.player.conftest import serving_app

RTT_S = 0.08
# Rates that change every 70-130 ms (never on the checks' 50 ms grid), 0.8-3 Mbit/s: the bytes at a
# check are the link model's only if the pacing releases what it owes at the check's exact time.
TRACE = Trace(name="steps", durations_s=np.array([0.13, 0.07, 0.11, 0.09, 0.12] * 40),
              bandwidth_bps=np.array([2.1e6, 0.8e6, 3.0e6, 1.3e6, 1.7e6] * 40))


async def _offered(speed: float, *, give_up_at: int | None = None) -> tuple[list[tuple[float, int]], int, Abandoned | None]:
    """One GET through the shaper at `speed`: the checks offered (session s after the request, body
    bytes), the response's header bytes on the link, and the abandonment if the player gave up at
    check `give_up_at`."""
    offers: list[tuple[float, int]] = []

    def keep_going(received: int, total: int, elapsed_s: float) -> bool:
        offers.append((elapsed_s * speed, received))
        return len(offers) != give_up_at

    async with slow_server(0.005) as upstream:
        host, port = upstream.split(":")
        config = ShaperConfig(upstream_host=host, upstream_port=int(port), trace=TRACE, rtt_ms=RTT_S * 1000,
                              speed=speed, exclude_server_time=True, exclude_loop_stalls=True,
                              exclude_client_time=True)
        async with Shaper(config) as shaper, aiohttp.ClientSession() as http:
            shaper.clock.events_only = True  # as `abrkit run` sets it (netsim.clock)
            fetcher = Fetcher(http, FetchConfig(attempts=1), clock=shaper.clock.now, clock_speed=speed)
            abandoned = None
            try:
                await fetcher.fetch([f"http://{shaper.host}:{shaper.port}/seg"], on_progress=keep_going)
            except Abandoned as exc:
                abandoned = exc
            header_bytes = shaper.stats().down_bytes - (BODY_BYTES if abandoned is None else 0)
    return offers, header_bytes, abandoned


def _simulated(header_bytes: int) -> list[tuple[float, int]]:
    link = LinkModel(TRACE)
    finish = link.finish_time(RTT_S, BODY_BYTES + header_bytes)
    return list(link_checks(AbandonRule(), link, size_bytes=BODY_BYTES, start_s=0.0, latency_s=RTT_S,
                            finish_s=finish, header_bytes=header_bytes))


@pytest.mark.parametrize("speed", [1.0, 10.0])
async def test_the_player_offers_the_simulators_checks_at_their_times_with_their_bytes(speed: float) -> None:
    offers, header_bytes, _ = await _offered(speed)
    assert 100 < header_bytes < 400  # the status line and headers cross the link before the body
    expected = _simulated(header_bytes)
    assert len(expected) >= 5
    assert [round(t, 9) for t, _ in offers] == [round(t, 9) for t, _ in expected]  # on the grid, to the ns
    # The bytes the link model delivered by each check (the pacing's integer bytes: 1 byte of rounding).
    assert [b for _, b in offers] == pytest.approx([b for _, b in expected], abs=1)


async def test_a_download_given_up_at_a_check_stops_there_with_that_checks_bytes() -> None:
    offers, _, abandoned = await _offered(10.0, give_up_at=3)
    assert abandoned is not None and len(offers) == 3
    assert abandoned.bytes_received == offers[-1][1]
    assert abandoned.elapsed_s * 10.0 == pytest.approx(offers[-1][0], abs=1e-9)
    assert RTT_S <= abandoned.ttfb_s * 10.0 < RTT_S + 0.01  # (the headers' bytes, then the first packet's)


async def test_on_a_real_network_the_checks_run_on_the_loops_timers_with_what_has_arrived() -> None:
    # No warp clock: each check is an event-loop timer on the request's 50 ms grid (late only by the
    # loop's lateness), offered the bytes the connection has taken in, and giving up stops the read.
    piece, pieces = 4_000, 12

    async def trickle(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Length": str(piece * pieces)})
        await response.prepare(request)
        try:
            for _ in range(pieces):
                await response.write(b"x" * piece)
                await asyncio.sleep(0.03)
        except ConnectionResetError:
            pass  # the player gave the download up
        return response

    app = web.Application()
    app.router.add_get("/seg", trickle)
    offers: list[tuple[int, int, float]] = []

    def keep_going(received: int, total: int, elapsed_s: float) -> bool:
        offers.append((received, total, elapsed_s))
        return len(offers) < 4

    async with serving_app(app) as base, aiohttp.ClientSession() as http:
        with pytest.raises(Abandoned) as raised:
            await Fetcher(http, FetchConfig(attempts=1)).fetch([f"{base}/seg"], on_progress=keep_going)
    assert len(offers) == 4 and raised.value.bytes_received == offers[-1][0]
    grid = [int(elapsed / 0.05 + 1e-6) for _, _, elapsed in offers]  # the grid point k each check was due at
    assert 1 <= grid[0] <= 3 and grid == sorted(set(grid))  # one check per grid point, in order
    received = [r for r, _, _ in offers]
    assert received == sorted(received) and 0 < received[0] and received[-1] < piece * pieces
    assert {t for _, t, _ in offers} == {piece * pieces}
