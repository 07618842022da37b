"""A paced link's per-bin accounting (`LinkStats.delivered_bytes`) is what it wrote, in the bin of the
link time it wrote it at, however late its ticks run: a plain clock (as `abrkit shape` runs) on
virtual time whose timers wake late by a loaded machine's amounts, so the figures are exact and load
plays no part (the same claim on real sockets, with the client's reads: test_shaper.py)."""

from __future__ import annotations

import itertools
from collections.abc import Callable

import numpy as np

from netsim.clock import WarpClock
from netsim.shaper import pacing_quantum_ms
from netsim.trace import Trace
from tests.netsim.loopkit import Handle, VirtualLoop
from tests.netsim.pipekit import paced_pipe

# How late the loop runs its successive timers (cycled): on time, an epoll millisecond, waits for a core.
LATENESS_S = (0.0, 0.001, 0.0, 0.017, 0.0004, 0.031, 0.0, 0.006)


class LateLoop(VirtualLoop):
    """Virtual time whose n-th timer runs `LATENESS_S[n % len]` after its time."""

    def __init__(self) -> None:
        super().__init__()
        self._lateness = itertools.cycle(LATENESS_S)

    def call_at(self, when: float, callback: Callable[..., None], *args: object) -> Handle:
        return self._push(when + next(self._lateness), callback, args)


def test_each_bin_counts_the_bytes_written_in_it_however_late_the_ticks() -> None:
    loop = LateLoop()
    clock = WarpClock(loop)  # type: ignore[arg-type]
    trace = Trace(name="steps", durations_s=np.full(3, 2.0), bandwidth_bps=np.array([4e6, 1e6, 8e6]))
    link, pipe, sink = paced_pipe(loop, clock, trace, pacing_quantum_ms(None, 1.0) / 1000.0,
                                  limit_bytes=8 * 1024 * 1024)
    pipe.feed(bytes(4_000_000))  # backlogged throughout: the trace offers 3.25 MB in 6 s
    loop.run_for(6.0)
    stats = link.stats()
    written = np.zeros(len(stats.delivered_bytes), dtype=int)
    for at_s, size in sink.writes:  # the bin of the link time each write happened at
        written[int((at_s - stats.started_clock_s) / stats.bin_s)] += size
    assert list(stats.delivered_bytes) == written.tolist()
    # What this checks happened: late ticks moved bytes across bin edges (away from the bins the model
    # offers them in), and the backlogged link delivered what it offered.
    capacity = np.asarray(stats.capacity_bytes)
    assert np.abs(written - capacity).max() > 1000
    assert abs(written.sum() - capacity.sum()) < 0.01 * capacity.sum()
