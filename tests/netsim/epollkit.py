"""Virtual time with epoll's timers, for the live link's tests on loose timers (tests/netsim/
test_pacing_heads.py, test_lone_request.py): the figures are exact and load plays no part."""

from __future__ import annotations

import math
from collections.abc import Callable

from tests.netsim.loopkit import Handle, VirtualLoop

WAKE_LATENCY_S = 0.0002  # the loop's own wake-up after epoll's timeout (0.1-0.4 ms measured)
_SOON_S = 0.00001  # a `call_soon` callback runs on the loop's next pass


class EpollLoop(VirtualLoop):
    """Virtual time with epoll's timers: a callback due in d seconds runs ceil(d) milliseconds later
    plus the wake-up latency (never sooner); `call_soon` on the next pass."""

    def call_at(self, when: float, callback: Callable[..., None], *args: object) -> Handle:
        wait_ms = math.ceil(round((when - self._t) * 1000, 6)) if when > self._t else 0
        return self._push(self._t + wait_ms / 1000 + (WAKE_LATENCY_S if wait_ms else _SOON_S), callback, args)

    def call_soon(self, callback: Callable[..., None], *args: object) -> Handle:
        return self._push(self._t + _SOON_S, callback, args)
