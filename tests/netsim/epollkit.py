"""Virtual time with epoll's timers, for the live link's tests on loose timers (tests/netsim/
test_pacing_heads.py, test_lone_request.py): the figures are exact and load plays no part."""

from __future__ import annotations

import heapq
import itertools
import math
from collections.abc import Callable

WAKE_LATENCY_S = 0.0002  # the loop's own wake-up after epoll's timeout (0.1-0.4 ms measured)
_SOON_S = 0.00001  # a `call_soon` callback runs on the loop's next pass


class _Handle:
    def __init__(self, callback: Callable[[], None]) -> None:
        self.callback = callback
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class EpollLoop:
    """Virtual time with epoll's timers: a callback due in d seconds runs ceil(d) milliseconds later
    plus the wake-up latency (never sooner); `call_soon` on the next pass."""

    def __init__(self) -> None:
        self._t = 1000.0
        self._queue: list[tuple[float, int, _Handle]] = []
        self._order = itertools.count()

    def time(self) -> float:
        return self._t

    def _push(self, at: float, callback: Callable[..., None], args: tuple[object, ...]) -> _Handle:
        handle = _Handle(lambda: callback(*args))
        heapq.heappush(self._queue, (at, next(self._order), handle))
        return handle

    def call_at(self, when: float, callback: Callable[..., None], *args: object) -> _Handle:
        wait_ms = math.ceil(round((when - self._t) * 1000, 6)) if when > self._t else 0
        return self._push(self._t + wait_ms / 1000 + (WAKE_LATENCY_S if wait_ms else _SOON_S), callback, args)

    def call_later(self, delay: float, callback: Callable[..., None], *args: object) -> _Handle:
        return self.call_at(self._t + delay, callback, *args)

    def call_soon(self, callback: Callable[..., None], *args: object) -> _Handle:
        return self._push(self._t + _SOON_S, callback, args)

    def run_for(self, duration_s: float) -> None:
        end = self._t + duration_s
        while self._queue and self._queue[0][0] <= end:
            at, _, handle = heapq.heappop(self._queue)
            self._t = max(self._t, at)
            if not handle.cancelled:
                handle.callback()
        self._t = end
