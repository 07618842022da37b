"""The once-per-request waits of a live link (a warp clock without exact timers, as `live_link` runs):
a request's crossing of the delay line and its answer's first packet leave at their time, not at
epoll's next millisecond and the loop's wake-up after it (netsim.pacing `_PRECISE_S`). On virtual
time: an event loop whose timers wake as epoll's do, so every figure is exact and load plays no part."""

from __future__ import annotations

import heapq
import itertools
import math
from collections.abc import Callable

import pytest

from netsim import synthetic
from netsim.clock import WarpClock
from netsim.faults import FaultedLink
from netsim.link import LinkModel
from netsim.pacing import _SEGMENT_BYTES, PacedLink, Pipe, RateChanges
from netsim.shaper import pacing_quantum_ms
from tests.netsim.test_pacing_tails import _Owner, _Sink, _Source

_WAKE_LATENCY_S = 0.0002  # the loop's own wake-up after epoll's timeout (measured: 0.1-0.4 ms here)
_SOON_S = 0.00001  # a `call_soon` callback runs on the loop's next pass


class _Handle:
    def __init__(self, callback: Callable[[], None]) -> None:
        self.callback = callback
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class EpollLoop:
    """Virtual time with epoll's timers: a callback due in d seconds runs ceil(d) milliseconds later
    plus the wake-up latency (never sooner); `call_soon` on the next pass, 10 us later."""

    def __init__(self) -> None:
        self._t = 1000.0
        self._queue: list[tuple[float, int, _Handle]] = []
        self._order = itertools.count()
        self.soon_calls = 0

    def time(self) -> float:
        return self._t

    def _push(self, at: float, callback: Callable[..., None], args: tuple[object, ...]) -> _Handle:
        handle = _Handle(lambda: callback(*args))
        heapq.heappush(self._queue, (at, next(self._order), handle))
        return handle

    def call_at(self, when: float, callback: Callable[..., None], *args: object) -> _Handle:
        wait_ms = math.ceil(round((when - self._t) * 1000, 6)) if when > self._t else 0
        return self._push(self._t + wait_ms / 1000 + (_WAKE_LATENCY_S if wait_ms else _SOON_S), callback, args)

    def call_later(self, delay: float, callback: Callable[..., None], *args: object) -> _Handle:
        return self.call_at(self._t + delay, callback, *args)

    def call_soon(self, callback: Callable[..., None], *args: object) -> _Handle:
        self.soon_calls += 1
        return self._push(self._t + _SOON_S, callback, args)

    def run_for(self, duration_s: float) -> None:
        end = self._t + duration_s
        while self._queue and self._queue[0][0] <= end:
            at, _, handle = heapq.heappop(self._queue)
            self._t = max(self._t, at)
            if not handle.cancelled:
                handle.callback()
        self._t = end


def _live_clock(loop: EpollLoop) -> WarpClock:
    clock = WarpClock(loop, cover_stalls=True, exact_timers=False)  # type: ignore[arg-type]
    assert clock.loose_timers
    return clock


def _delay_line(loop: EpollLoop, clock: WarpClock, delay_s: float) -> tuple[Pipe, _Sink]:
    pipe = Pipe(loop, _Owner(), link=None, delay=lambda: delay_s, limit_bytes=256 * 1024, warp=clock)  # type: ignore[arg-type]
    pipe.source = _Source()  # type: ignore[assignment]
    sink = _Sink(clock)
    pipe.start_sink(sink)  # type: ignore[arg-type]
    return pipe, sink


def _paced(loop: EpollLoop, clock: WarpClock, *, speed: float, rate_bps: float) -> tuple[PacedLink, Pipe, _Sink]:
    """An idle paced link of constant `rate_bps` at `speed` (the shaper's quantum) and a pipe on it."""
    trace = synthetic.constant(rate_bps, duration_s=600.0).scaled(speed)
    quantum_s = pacing_quantum_ms(None, speed) / 1000.0
    link = PacedLink(loop, FaultedLink(LinkModel(trace, payload_factor=1.0), ()), RateChanges(trace, quantum_s),  # type: ignore[arg-type]
                     quantum_s=quantum_s, bin_s=1.0, owed_limit_bytes=256 * 1024, warp=clock)
    pipe = Pipe(loop, _Owner(), link=link, delay=lambda: 0.0, limit_bytes=256 * 1024, warp=clock)  # type: ignore[arg-type]
    pipe.source = _Source()  # type: ignore[assignment]
    sink = _Sink(clock)
    pipe.start_sink(sink)  # type: ignore[arg-type]
    return link, pipe, sink


@pytest.mark.parametrize("speed", [4.0, 10.0])
def test_a_request_crosses_the_delay_line_in_its_round_trip(speed: float) -> None:
    # 80 ms of RTT at K (20 / 8 wall ms), requests sent at every phase of the millisecond. Led by half
    # a millisecond, each reached the server 0.2 wall ms late here (0.5-0.9 ms measured under load:
    # 2-4 ms of session time per request); polled for its last 1.5 ms, within a loop pass of it.
    loop = EpollLoop()
    clock = _live_clock(loop)
    delay_s = 0.080 / speed
    pipe, sink = _delay_line(loop, clock, delay_s)
    lateness = []
    for i in range(20):
        loop.run_for(0.003 + 0.00017 * i)
        sent = clock.now()
        before = len(sink.writes)
        pipe.feed(b"GET /seg HTTP/1.1\r\n\r\n")
        loop.run_for(delay_s + 0.002)
        assert len(sink.writes) == before + 1
        lateness.append(sink.writes[-1][0] - sent - delay_s)
    assert max(lateness) <= 2 * _SOON_S, lateness
    assert min(lateness) >= 0.0, lateness  # never before its round trip


def test_an_answers_first_packet_crosses_when_the_model_says() -> None:
    # An answer's first bytes on an idle 5 Mbit/s link at 4x: its first packet (1,448 B) is due 0.58
    # wall ms after they came. Woken the lead before, the loop slept epoll's whole millisecond, and
    # the packet left 0.6 ms late (2.5 ms of session time on a TTFB); polled, at its time.
    loop = EpollLoop()
    clock = _live_clock(loop)
    speed, rate_bps = 4.0, 5e6
    link, pipe, sink = _paced(loop, clock, speed=speed, rate_bps=rate_bps)
    packet_s = _SEGMENT_BYTES * 8 / (rate_bps * speed)
    heads = []
    for i in range(8):
        loop.run_for(0.05 + 0.00013 * i)  # idle: the last answer is long through
        fed, before = clock.now(), len(sink.writes)
        pipe.feed(bytes(30_000), head=True)
        loop.run_for(0.05)
        assert sum(n for _, n in sink.writes[before:]) == 30_000
        heads.append(sink.writes[before][0] - fed - packet_s)
    assert max(heads) <= 2 * _SOON_S, heads
    assert min(heads) >= -1e-9, heads
    link.close()


def test_no_polling_while_the_clock_is_held() -> None:
    # A request due while another one holds the clock at the stack: polling the loop then would spin
    # through the stack's whole time (the clock stands still). It waits on the clock's timer instead
    # and crosses once the clock runs again.
    loop = EpollLoop()
    clock = _live_clock(loop)
    pipe, sink = _delay_line(loop, clock, 0.002)
    pipe.feed(b"GET /a HTTP/1.1\r\n\r\n")
    loop.run_for(0.0012)  # within the polled stretch
    clock.hold()
    polls = loop.soon_calls
    loop.run_for(0.050)  # 50 ms of the stack's time
    assert loop.soon_calls - polls <= 1
    assert not sink.writes
    clock.release()
    loop.run_for(0.003)
    assert len(sink.writes) == 1


def test_an_answers_body_right_behind_its_headers_does_not_wait_a_quantum() -> None:
    # The origin writes an answer's headers (300 B) and, a moment later, its body, on an idle 5 Mbit/s
    # link at 4x. The headers, a whole answer due within the lead, leave at once; the body's first
    # packet is then due (300 + 1,448) B after the headers came: 0.70 wall ms. It waited a whole
    # quantum behind the headers' tick instead (2.5 wall ms, 10 ms of session time on the player's
    # TTFB): the head's wait kept the quantum after the last tick, on a link that had gone idle.
    loop = EpollLoop()
    clock = _live_clock(loop)
    speed, rate_bps = 4.0, 5e6
    link, pipe, sink = _paced(loop, clock, speed=speed, rate_bps=rate_bps)
    byte_s = 8 / (rate_bps * speed)
    for i in range(4):
        loop.run_for(0.05 + 0.00013 * i)
        fed, before = clock.now(), len(sink.writes)
        pipe.feed(bytes(300), head=True)
        loop.run_for(0.00005)
        pipe.feed(bytes(20_000), head=True)
        loop.run_for(0.05)
        writes = sink.writes[before:]
        assert sum(n for _, n in writes) == 20_300
        first_body = next(t for k, (t, _) in enumerate(writes) if sum(n for _, n in writes[:k + 1]) > 300)
        assert first_body - fed <= (300 + _SEGMENT_BYTES) * byte_s + 2 * _SOON_S, first_body - fed
    link.close()
