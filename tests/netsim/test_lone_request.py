"""A live player's lone request (netsim.clock `lone_request`): on a live link's loose timers its send
hop and its delay line's lateness are no link time, so it reaches the server at the clock time the
model says (sent + RTT), and the lag it is stamped with counts what was left out. On virtual time: an
event loop whose timers wake as epoll's do (a whole millisecond, then the loop's wake-up)."""

from __future__ import annotations

import pytest

from netsim.clock import WarpClock
from netsim.pacing import _TAIL_LEAD_S, Pipe
from tests.netsim.epollkit import WAKE_LATENCY_S, EpollLoop
from tests.netsim.pipekit import Owner, Sink, Source

_REQUEST = b"GET /seg-5.m4s HTTP/1.1\r\nHost: x\r\n\r\n"


class _Server(Sink):
    """The upstream's side of the request pipe: the clock's reading and its left-out time at each write."""

    def __init__(self, clock: WarpClock, loop: EpollLoop) -> None:
        super().__init__(clock)
        self._loop = loop
        self.records: list[tuple[float, float, float]] = []  # (clock reading, WarpClock.paused_s, loop time)

    def write(self, data: bytes) -> None:
        self.records.append((self._clock.now(), self._clock.paused_s(), self._loop.time()))


def _request_pipe(loop: EpollLoop, rtt_s: float, *, loose: bool = True) -> tuple[WarpClock, Pipe, _Server]:
    """A live link's clock (loose timers, as `live_link` runs) and the shaper's request pipe: the whole
    round trip on the request (delay_split "request"), no upload shaping."""
    clock = WarpClock(loop, cover_stalls=loose, exact_timers=False)  # type: ignore[arg-type]
    assert clock.loose_timers == loose
    pipe = Pipe(loop, Owner(), link=None, delay=lambda: rtt_s,  # type: ignore[arg-type]
                limit_bytes=256 * 1024, warp=clock, exact_lone=True)
    pipe.source = Source()  # type: ignore[assignment]
    server = _Server(clock, loop)
    pipe.start_sink(server)  # type: ignore[arg-type]
    return clock, pipe, server


@pytest.mark.parametrize("rtt_s", [0.02, 0.0201, 0.008, 0.00855])  # 80 ms at 4x, 80.4 ms at 4x; 80, 85.5 ms at 10x
def test_a_lone_request_reaches_the_server_at_its_due_time(rtt_s: float) -> None:
    # A request sent alone reaches the server exactly a round trip after it entered the delay line, on
    # the clock, at every phase; the loop's lateness (epoll's rounding up to a whole millisecond, then
    # its wake-up) is left out before the write, so the lag stamped then (netsim.lagstamp: paused_s)
    # counts it. Before, it left within the lead early or up to a millisecond and a wake-up late
    # (up to 4.8 ms of session time at 4x, 12 at 10x).
    loop = EpollLoop()
    clock, pipe, server = _request_pipe(loop, rtt_s)
    lateness = []
    for i in range(8):
        loop.run_for(0.05 + 0.000137 * i)  # idle between requests, at another phase each time
        clock.lone_request = True
        sent, paused, sent_loop = clock.now(), clock.paused_s(), loop.time()
        pipe.feed(_REQUEST)
        loop.run_for(rtt_s + 0.005)
        reading, paused_then, written_loop = server.records[-1]
        assert len(server.records) == i + 1
        assert reading == pytest.approx(sent + rtt_s, abs=1e-9)
        assert written_loop >= sent_loop + rtt_s - 1e-9  # not early on the loop either: no lead taken
        lateness.append(paused_then - paused)
        clock.lone_request = False
    assert all(WAKE_LATENCY_S - 1e-9 <= x <= 0.001 + WAKE_LATENCY_S + 1e-9 for x in lateness), lateness
    assert clock.late_s == pytest.approx(sum(lateness), abs=1e-9)


def test_a_request_not_alone_keeps_the_loose_timers() -> None:
    # With another request open (the player says so: lone_request False) the delay line keeps its lead
    # and its lateness counts: the clock leaves nothing out, as before (a stream may be on its way).
    loop = EpollLoop()
    rtt_s = 0.02
    clock, pipe, server = _request_pipe(loop, rtt_s)
    offsets = []
    for i in range(8):
        loop.run_for(0.05 + 0.000137 * i)
        sent = clock.now()
        pipe.feed(_REQUEST)
        loop.run_for(rtt_s + 0.005)
        offsets.append(server.records[-1][0] - (sent + rtt_s))
    assert clock.late_s == 0.0
    assert all(-_TAIL_LEAD_S - 1e-9 <= x <= 0.001 + WAKE_LATENCY_S + 1e-9 for x in offsets), offsets
    assert max(offsets) > 1e-5


def test_lone_leaves_nothing_out_on_a_clock_without_loose_timers() -> None:
    # A VOD or plain shaping clock: `lone_request` changes nothing (its own holds do that work there).
    loop = EpollLoop()
    clock, pipe, server = _request_pipe(loop, 0.02, loose=False)
    clock.lone_request = True
    loop.run_for(0.0503)
    clock.hold_for_player()
    assert not clock.paused
    sent = clock.now()
    pipe.feed(_REQUEST)
    loop.run_for(0.03)
    assert clock.paused_s() == 0.0 and clock.late_s == 0.0
    assert server.records[-1][0] >= sent + 0.02 + WAKE_LATENCY_S - 1e-9  # the loop's lateness counts there


def test_the_player_is_held_until_its_request_reaches_the_shaper() -> None:
    # The live player with nothing of its own streaming (player.client.openrequests decides that) is
    # about to send: its HTTP client and the loop's hop are no link time, until the request's bytes
    # reach the shaper; a request that never comes does not stop the world (50 wall ms).
    loop = EpollLoop()
    clock, _, _ = _request_pipe(loop, 0.02)
    loop.run_for(0.05)
    before, paused = clock.now(), clock.paused_s()
    clock.hold_for_player()
    clock.hold_for_player()  # one hold, whoever asks again
    loop.run_for(0.0003)  # aiohttp builds and writes the request, the loop hops to the shaper
    assert clock.now() == before and clock.client_holds == 1
    clock.client_done(None, 40123)  # the shaper's request_arrived
    assert not clock.paused
    assert clock.paused_s() - paused == pytest.approx(0.0003, abs=1e-9)
    clock.hold_for_player()
    loop.run_for(0.06)
    assert not clock.paused and clock.client_timeouts == 1
