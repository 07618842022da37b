"""The emulated world's clock: event-loop time that stands still while the server works.

The simulator's download model gives a server no time: a response's first byte leaves the server
the moment the request reaches it. A real stack takes a few milliseconds per request (10-15 ms on
this project's machine, more under load), and at a time-warp of K each wall millisecond is K
milliseconds of trace time, so that cost would count K times and shift QoE with K. A `WarpClock`
removes it: while any request is held at the upstream (`hold` when its bytes reach the server,
`release` at the first byte of the answer), the clock stops, and the link, its delay lines, the
player's session clock and its HTTP timeouts, which all read this clock, stop with it. What stays
is the trace's own time: at any K an emulated session then sees the link the simulator sees.

With `cover_stalls`, the clock also leaves out the times its event loop was stalled: a callback
that ran long, or the process waiting for a core on a loaded machine. Nothing in the loop (the
shaper, the player) moved meanwhile, so the emulated world should not have aged either; at a
time-warp of K a 50 ms stall would otherwise be half a second of trace time. A heartbeat every
`beat_s` re-anchors the clock, and between beats it runs at most `beat_s + slack_s` ahead: a beat
that comes later than that finds the excess left out (`stalled_s`), and the clock never jumps back.

`now` reads the clock (loop seconds, the left-out spans removed); `wall_at` maps a clock time to
the loop's time for scheduling (None while held: nothing is due until it runs again, and
`on_resume` callbacks then reschedule).
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable


class WarpClock:
    """Event-loop time without the spans a request was held at the server (and, with
    `cover_stalls`, without the loop's stalls)."""

    __slots__ = ("_loop", "_anchor_loop", "_anchor_clock", "_limit_loop", "_holds", "_resume_callbacks",
                 "_created_loop", "_created_clock", "_beat_s", "_slack_s", "_beat", "held_s", "holds_total",
                 "stalled_s", "_held_since")

    def __init__(self, loop: asyncio.AbstractEventLoop, *, cover_stalls: bool = False, beat_s: float = 0.005,
                 slack_s: float = 0.001) -> None:
        if not (beat_s > 0 and slack_s >= 0):
            raise ValueError("need beat_s > 0 and slack_s >= 0")
        self._loop = loop
        now = loop.time()
        self._anchor_loop = now  # the clock read `_anchor_clock` at loop time `_anchor_loop`...
        self._anchor_clock = now
        self._limit_loop = math.inf  # ...and runs on with the loop up to this loop time
        self._created_loop = now
        self._created_clock = now
        self._holds = 0  # requests at the server right now
        self._held_since: float | None = None
        self._resume_callbacks: list[Callable[[], None]] = []
        self._beat_s, self._slack_s = beat_s, slack_s
        self._beat: asyncio.TimerHandle | None = None
        self.held_s = 0.0  # loop seconds left out while requests were held (closed holds; reporting)
        self.holds_total = 0  # requests held so far (reporting)
        self.stalled_s = 0.0  # loop seconds left out as stalls of the loop (reporting)
        if cover_stalls:
            self._heartbeat()

    @property
    def paused(self) -> bool:
        return self._holds > 0

    def paused_s(self) -> float:
        """Loop seconds left out so far (holds, the current one included, and stalls)."""
        return (self._loop.time() - self._created_loop) - (self.now() - self._created_clock)

    def now(self) -> float:
        """The clock's time: event-loop seconds, the left-out spans removed."""
        if self._holds:
            return self._anchor_clock
        return self._anchor_clock + min(self._loop.time(), self._limit_loop) - self._anchor_loop

    def wall_at(self, clock_s: float) -> float | None:
        """The loop time at which the clock reads `clock_s` if it runs on (None while held)."""
        if self._holds:
            return None
        return self._anchor_loop + clock_s - self._anchor_clock

    def _reanchor(self) -> float:
        """Anchor the clock's reading at the loop's time now; returns that loop time."""
        t = self._loop.time()
        self._anchor_clock = self.now()
        self._anchor_loop = t
        if self._beat is not None:
            self._limit_loop = t + self._beat_s + self._slack_s
        return t

    def _heartbeat(self) -> None:
        if not self._holds:
            before = self._anchor_clock + self._loop.time() - self._anchor_loop
            t = self._reanchor()
            self.stalled_s += before - self._anchor_clock
        else:
            t = self._loop.time()
        self._beat = self._loop.call_at(t + self._beat_s, self._heartbeat)
        if not self._holds:
            self._limit_loop = t + self._beat_s + self._slack_s

    def close(self) -> None:
        """Stop the heartbeat (the clock keeps reading; it no longer leaves stalls out)."""
        if self._beat is not None:
            self._beat.cancel()
            self._beat = None
            self._reanchor()
            self._limit_loop = math.inf

    def hold(self) -> None:
        """A request reached the server: stop the clock until its answer begins (nested holds count)."""
        if not self._holds:
            self._reanchor()
            self._held_since = self._anchor_loop
        self._holds += 1
        self.holds_total += 1

    def release(self) -> None:
        """A held request's answer began (or its connection closed): run on when none is held."""
        if self._holds == 0:
            raise RuntimeError("release() without a matching hold()")
        self._holds -= 1
        if self._holds:
            return
        t = self._loop.time()
        assert self._held_since is not None
        self.held_s += t - self._held_since
        self._held_since = None
        self._anchor_loop = t  # the clock reads on from where it stopped
        self._limit_loop = t + self._beat_s + self._slack_s if self._beat is not None else math.inf
        for callback in list(self._resume_callbacks):
            callback()

    def on_resume(self, callback: Callable[[], None]) -> None:
        """Call `callback()` each time the clock starts again after a hold."""
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
