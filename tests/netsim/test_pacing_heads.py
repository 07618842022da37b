"""An answer's head on a live link (a warp clock without exact timers, as `live_link` runs): when an
origin's headers come alone and its body a moment later, the body's first packet leaves when the
link model says, not a pacing quantum behind the headers' tick. On virtual time: an event loop whose
timers wake as epoll's do (a whole millisecond, then the loop's wake-up), so the figures are exact
and load plays no part."""

from __future__ import annotations

import pytest

from netsim import synthetic
from netsim.clock import WarpClock
from netsim.pacing import _SEGMENT_BYTES, _TAIL_LEAD_S, PacedLink, Pipe
from netsim.shaper import pacing_quantum_ms
from tests.netsim.epollkit import WAKE_LATENCY_S, EpollLoop
from tests.netsim.pipekit import Sink, paced_pipe


def _paced(loop: EpollLoop, *, speed: float, rate_bps: float) -> tuple[WarpClock, PacedLink, Pipe, Sink]:
    """A live link's clock, an idle paced link of constant `rate_bps` at `speed` (the shaper's
    quantum) and a pipe on it."""
    clock = WarpClock(loop, cover_stalls=True, exact_timers=False)  # type: ignore[arg-type]
    assert clock.loose_timers
    trace = synthetic.constant(rate_bps, duration_s=600.0).scaled(speed)
    link, pipe, sink = paced_pipe(loop, clock, trace, pacing_quantum_ms(None, speed) / 1000.0)
    return clock, link, pipe, sink


@pytest.mark.parametrize(("speed", "rate_bps", "body_after_s"), [(4.0, 5e6, 0.00005), (4.0, 2e6, 0.0004),
                                                                  (10.0, 5e6, 0.0002)])
def test_an_answers_body_right_behind_its_headers_does_not_wait_a_quantum(speed: float, rate_bps: float,
                                                                          body_after_s: float) -> None:
    # The origin writes an answer's headers (300 B) and, `body_after_s` wall s later, its body, on an
    # idle link. The headers, a whole answer due within the lead, leave at once; the body's first
    # packet is then due a packet after the body came (the link was idle meanwhile: its capacity is
    # lost, not banked), less the lead, and epoll wakes up to a millisecond and a wake-up later. It
    # waited a whole quantum behind the headers' tick instead (2.5 wall ms at 4x: 10 ms of session
    # time on each such TTFB, at 2 Mbit/s 3.3 ms where the model says 1.9).
    loop = EpollLoop()
    clock, link, pipe, sink = _paced(loop, speed=speed, rate_bps=rate_bps)
    packet_s = _SEGMENT_BYTES * 8 / (rate_bps * speed)
    quantum_s = pacing_quantum_ms(None, speed) / 1000.0
    for i in range(6):
        loop.run_for(0.05 + 0.00013 * i)  # idle: the last answer is long through
        fed, before = clock.now(), len(sink.writes)
        pipe.feed(bytes(300), head=True)
        loop.run_for(body_after_s)
        assert len(sink.writes) == before + 1  # the headers left at once
        body_at = clock.now()
        pipe.feed(bytes(20_000), head=True)
        loop.run_for(0.05)
        writes = sink.writes[before:]
        assert sum(n for _, n in writes) == 20_300
        first_body = writes[1][0] - body_at
        assert first_body >= packet_s - _TAIL_LEAD_S - 1e-9, first_body
        assert first_body <= packet_s - _TAIL_LEAD_S + 0.001 + WAKE_LATENCY_S + 1e-9, first_body
        assert writes[1][0] - fed < quantum_s  # (the bound that failed: a quantum behind the headers)
    link.close()
