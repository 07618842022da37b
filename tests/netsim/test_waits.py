"""A wait for a live channel's publication that the player announced (netsim.waits) runs on the
shaper's clock as it happens; the clock holds only for what is left once the channel published."""

from __future__ import annotations

import aiohttp
import pytest

from netsim import synthetic
from netsim.clock import WarpClock
from netsim.shaper import Shaper, ShaperConfig
from netsim.waits import ExpectedWaits, RequestTargets
from tests.netsim.conftest import held_server


def test_an_announcement_is_taken_once_and_the_oldest_give_way() -> None:
    waits = ExpectedWaits(limit=2)
    waits.expect("/a.m3u8?_HLS_msn=3&_HLS_part=1", 10.0)
    assert waits.take("/a.m3u8?_HLS_msn=3&_HLS_part=1") == 10.0
    assert waits.take("/a.m3u8?_HLS_msn=3&_HLS_part=1") is None  # a second request for it waits for nothing
    for n in range(3):
        waits.expect(f"/p{n}.m4s", float(n))
    assert len(waits) == 2 and waits.take("/p0.m4s") is None and waits.take("/p2.m4s") == 2.0
    assert (waits.announced, waits.taken) == (4, 2)
    with pytest.raises(ValueError, match="origin form"):
        waits.expect("http://edge/a.m3u8", 1.0)
    with pytest.raises(ValueError, match="finite"):
        waits.expect("/a.m3u8", float("nan"))


def test_request_targets_are_read_across_reads_and_past_bodies() -> None:
    targets = RequestTargets()
    stream = (b"GET /v/a.m3u8?_HLS_msn=5&_HLS_part=2 HTTP/1.1\r\nHost: x\r\n\r\n"
              b"POST /license HTTP/1.1\r\nContent-Length: 9\r\n\r\nGET / HTT"  # a body that looks like a head
              b"GET /v/5.1.m4s HTTP/1.1\r\nHost: x\r\n\r\n")
    seen: list[str] = []
    for i in range(0, len(stream), 7):  # heads and bodies split at every 7th byte
        seen += targets.feed(stream[i:i + 7])
    assert seen == ["/v/a.m3u8?_HLS_msn=5&_HLS_part=2", "/license", "/v/5.1.m4s"]
    assert RequestTargets().feed(stream) == seen  # all in one read
    chunked = RequestTargets()
    assert chunked.feed(b"POST /up HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nGET /\r\n") == ["/up"]
    assert chunked.lost and chunked.feed(b"GET /after HTTP/1.1\r\n\r\n") == []  # its body cannot be followed


TARGET = "/v/a.m3u8?_HLS_msn=3&_HLS_part=1"


@pytest.mark.wallclock  # the warp clock against the server's wall-clock hold
@pytest.mark.parametrize("announced_in_s", [None, 1.0])
async def test_an_announced_wait_runs_on_the_clock_while_it_happens(announced_in_s: float | None) -> None:
    """Without an announcement the clock stands still while the request is at the server and counts
    the stated wait in one step at the answer; announced (the channel publishes after the answer
    came), the clock runs all along, and the stated wait is not counted again."""
    readings: list[float] = []
    clock: list[WarpClock] = []  # the shaper's, once it runs: the server reads it as each request comes and goes
    async with held_server(0.2, stated_s=0.2, on_hold=lambda: readings.append(clock[0].now())) as port:
        config = ShaperConfig(upstream_host="127.0.0.1", upstream_port=port, trace=synthetic.constant(5e6, duration_s=60),
                              rtt_ms=0, exclude_server_time=True)
        async with Shaper(config) as shaper, aiohttp.ClientSession() as http:
            clock.append(shaper.clock)
            started = shaper.clock.now()
            if announced_in_s is not None:
                shaper.clock.expected_waits.expect(TARGET, started + announced_in_s)
            async with http.get(f"http://{shaper.host}:{shaper.port}{TARGET}") as response:
                assert await response.read() == b"ok"
            took_s = shaper.clock.now() - started
            arrived, answering = readings
    if announced_in_s is None:
        assert answering == arrived and shaper.clock.waited_s == pytest.approx(0.2, abs=1e-3)
    else:
        assert answering - arrived > 0.1 and shaper.clock.waited_s == 0.0
        assert shaper.clock.expected_waits.taken == 1
    assert 0.2 <= took_s < 0.35  # the wait counted once either way (not 0.4)


@pytest.mark.wallclock
async def test_the_clock_holds_from_the_announced_publication_for_the_rest() -> None:
    """Published 50 ms into a 200 ms hold: the clock runs to that instant exactly (a bounded clock
    holds at its timer's time), then stands still; the stated wait counts only its part after."""
    readings: list[float] = []
    clock: list[WarpClock] = []  # the shaper's, once it runs: the server reads it as each request comes and goes
    async with held_server(0.2, stated_s=0.2, on_hold=lambda: readings.append(clock[0].now())) as port:
        config = ShaperConfig(upstream_host="127.0.0.1", upstream_port=port, trace=synthetic.constant(5e6, duration_s=60),
                              rtt_ms=0, exclude_server_time=True, exclude_loop_stalls=True)
        async with Shaper(config) as shaper, aiohttp.ClientSession() as http:
            clock.append(shaper.clock)
            started = shaper.clock.now()
            shaper.clock.expected_waits.expect(TARGET, started + 0.05)
            async with http.get(f"http://{shaper.host}:{shaper.port}{TARGET}") as response:
                assert await response.read() == b"ok"
            took_s = shaper.clock.now() - started
            _, answering = readings
    assert answering == pytest.approx(started + 0.05, abs=1e-9)  # held at the publication
    # The wait once, not 0.2 + 0.15 (a bounded clock leaves its timer's lateness out, as any timer's)
    assert 0.0 < shaper.clock.waited_s < 0.2 and 0.15 < took_s < 0.35
