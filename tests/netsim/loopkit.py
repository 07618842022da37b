"""A virtual-time event loop for the clock's and the pacing's tests (tests/netsim/epollkit.py,
test_clock_corewait.py, test_clock_reads.py, test_pacing_bins.py): what a `WarpClock` and a paced link
use of a loop, on a time the test moves."""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable


class Handle:
    """A scheduled callback; `cancel()` before it runs."""

    def __init__(self, callback: Callable[[], None]) -> None:
        self.callback = callback
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class VirtualLoop:
    """Virtual time from 1000 s: `run_for` moves it on, running what comes due in time order, each at
    its time (or now, if that has passed)."""

    def __init__(self) -> None:
        self._t = 1000.0
        self._queue: list[tuple[float, int, Handle]] = []
        self._order = itertools.count()

    def time(self) -> float:
        return self._t

    def _push(self, at: float, callback: Callable[..., None], args: tuple[object, ...]) -> Handle:
        handle = Handle(lambda: callback(*args))
        heapq.heappush(self._queue, (at, next(self._order), handle))
        return handle

    def call_at(self, when: float, callback: Callable[..., None], *args: object) -> Handle:
        return self._push(when, callback, args)

    def call_later(self, delay: float, callback: Callable[..., None], *args: object) -> Handle:
        return self.call_at(self._t + delay, callback, *args)

    def run_for(self, duration_s: float) -> None:
        end = self._t + duration_s
        while self._queue and self._queue[0][0] <= end:
            at, _, handle = heapq.heappop(self._queue)
            self._t = max(self._t, at)
            if not handle.cancelled:
                handle.callback()
        self._t = end


class SteppingLoop(VirtualLoop):
    """Virtual time that moves on by `step_s` after every read of it: any two lines that read the loop
    lie a step apart, as on a loaded machine that may lose its core (or slow down) between any two.
    `reads` keeps what each read returned (test_clock_reads.py)."""

    def __init__(self, step_s: float) -> None:
        super().__init__()
        self.step_s = step_s
        self.reads: list[float] = []

    def time(self) -> float:
        t = self._t
        self._t += self.step_s
        self.reads.append(t)
        return t
