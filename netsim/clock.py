"""The emulated world's clock: event-loop time that stands still while the server works.

The simulator's download model gives a server no time: a response's first byte leaves the server
the moment the request reaches it. A real stack takes a few milliseconds per request (10-15 ms on
this project's machine, more under load), and at a time-warp of K each wall millisecond is K
milliseconds of trace time, so that cost would count K times and shift QoE with K. A `WarpClock`
removes it: while any request is held at the upstream (`hold` when its bytes reach the server,
`release` at the first byte of the answer), the clock stops, and the link, its delay lines, the
player's session clock and its HTTP timeouts, which all read this clock, stop with it. What stays
is the trace's own time: at any K an emulated session then sees the link the simulator sees.

Times are event-loop seconds minus the seconds spent paused (`now`); `wall_at` maps a clock time
back to the loop's time for scheduling (None while paused: nothing is due until it resumes, and
`on_resume` callbacks then reschedule).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable


class WarpClock:
    """Event-loop time minus the spans during which some request was held at the server."""

    __slots__ = ("_loop", "_paused_total_s", "_since", "_holds", "_resume_callbacks", "held_s", "holds_total")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._paused_total_s = 0.0  # closed pauses
        self._since: float | None = None  # loop time the current pause began
        self._holds = 0  # requests at the server right now
        self._resume_callbacks: list[Callable[[], None]] = []
        self.held_s = 0.0  # loop seconds the clock stood still, closed pauses (reporting)
        self.holds_total = 0  # requests held so far (reporting)

    @property
    def paused(self) -> bool:
        return self._since is not None

    def paused_s(self) -> float:
        """Loop seconds the clock has stood still so far (the current pause included)."""
        if self._since is None:
            return self._paused_total_s
        return self._paused_total_s + self._loop.time() - self._since

    def now(self) -> float:
        """The clock's time: event-loop seconds, pauses left out."""
        if self._since is not None:
            return self._since - self._paused_total_s
        return self._loop.time() - self._paused_total_s

    def wall_at(self, clock_s: float) -> float | None:
        """The loop time at which the clock reads `clock_s` if it runs on (None while paused)."""
        if self._since is not None:
            return None
        return clock_s + self._paused_total_s

    def hold(self) -> None:
        """A request reached the server: stop the clock until its answer begins (nested holds count)."""
        self._holds += 1
        self.holds_total += 1
        if self._since is None:
            self._since = self._loop.time()

    def release(self) -> None:
        """A held request's answer began (or its connection closed): run on when none is held."""
        if self._holds == 0:
            raise RuntimeError("release() without a matching hold()")
        self._holds -= 1
        if self._holds or self._since is None:
            return
        paused = self._loop.time() - self._since
        self._paused_total_s += paused
        self.held_s += paused
        self._since = None
        for callback in list(self._resume_callbacks):
            callback()

    def on_resume(self, callback: Callable[[], None]) -> None:
        """Call `callback()` each time the clock starts again after a pause."""
        self._resume_callbacks.append(callback)

    def remove_on_resume(self, callback: Callable[[], None]) -> None:
        if callback in self._resume_callbacks:
            self._resume_callbacks.remove(callback)


async def sleep_on(clock: Callable[[], float], duration_s: float) -> None:
    """Sleep until `clock()` (a `WarpClock.now` or any monotonic clock in loop seconds) has advanced
    by `duration_s`: a pause in the middle lengthens the wait in loop time."""
    deadline = clock() + max(duration_s, 0.0)
    while True:
        remaining = deadline - clock()
        if remaining <= 0:
            return
        await asyncio.sleep(remaining)
