"""The headless player's abandonment checks: `player.abandon`'s rule on the fetcher's clock.

`ProgressWatch` offers one response's body to the caller's progress callback at the rule's checks,
each on a timer of the fetcher's clock at its scheduled time (request + k * `check_s` on the grid),
with the bytes received by then: what the connection has taken in (`StreamReader.total_bytes`),
read or not. So the checks do not depend on how the body's chunks happen to arrive.

On a `netsim.clock.WarpClock` (emulation) a check holds the clock for its own span: it asks the
shaper's links to release what they owe until now (`WarpClock.sync`), lets the event loop take those
bytes in, then reads the count, at the exact clock time of the check and at any time-warp, as the
simulator reads its link model. On any other clock (a real network) the timer is the event loop's
and the count is what has arrived when it runs. A check on Sabre's schedule that waits for bytes is
offered as the chunk that brings them arrives (`arrived`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import aiohttp

from netsim.clock import WarpClock, WarpTimer, warp_of
from player.abandon import AbandonCheck, AbandonRule

# Event-loop turns a check on a warp clock waits, clock held, for the bytes the links released to
# reach the connection: the shaper writes to a loopback socket at once, the next turn's poll sees
# them, the turn after has fed them to the response.
_SETTLE_TURNS = 3


class AbandonNow(Exception):
    """Set on a response's stream to stop the body's read: the caller gave the download up."""


class ProgressWatch:
    """One response's checks (see the module's docstring). `rule` is on the clock's seconds
    (`AbandonRule.on_clock`); `requested_s` the request's clock time; `skip_bytes` leading bytes of
    the body that are not the object's (a range cut from a whole answer). `keep_going(received,
    total, elapsed)` False gives the download up: the read then raises `AbandonNow` and `given_up`
    holds (bytes received, clock seconds since the request) at that check."""

    __slots__ = ("_clock", "_warp", "_loop", "_check", "_content", "_keep_going", "_total", "_skip", "_requested_s",
                 "_timer", "_closed", "given_up", "offers")

    def __init__(self, clock: Callable[[], float], rule: AbandonRule, requested_s: float,
                 content: aiohttp.StreamReader, keep_going: Callable[[int, int, float], bool], *,
                 total_bytes: int, skip_bytes: int = 0) -> None:
        self._clock = clock
        self._warp = warp_of(clock)
        self._loop = asyncio.get_running_loop()
        self._check = AbandonCheck(rule, requested_s)
        self._content = content
        self._keep_going = keep_going
        self._total = total_bytes
        self._skip = skip_bytes
        self._requested_s = requested_s
        self._timer: WarpTimer | asyncio.TimerHandle | None = None
        self._closed = False
        self.given_up: tuple[int, float] | None = None
        self.offers = 0  # checks offered (reporting)
        self._check.skip_to(clock())  # checks due before the answer began had none of its body
        self._arm()

    def received(self) -> int:
        """Bytes of the body the connection has taken in so far."""
        return max(0, self._content.total_bytes - self._skip)

    def arrived(self) -> None:
        """A chunk of the body was read: a check waiting for bytes (Sabre's schedule) may be offered."""
        if self._check.waiting and not self._closed and self.received() >= self._check.wanted:
            self._offer()

    def stop(self) -> None:
        """The response is over (read, failed or abandoned): no more checks."""
        self._closed = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _arm(self) -> None:
        due = self._check.due_s
        if self._warp is not None:
            self._timer = self._warp.call_at(due, self._due)
        else:
            self._timer = self._loop.call_at(self._loop.time() + max(0.0, due - self._clock()), self._due)

    def _due(self) -> None:
        self._timer = None
        if self._closed:
            return
        warp = self._warp
        if warp is None:
            self._offer()
            return
        # The clock reads the check's time: hold it there while the links catch up to it and the
        # loop takes their bytes in, so the check sees what the link model delivered by now.
        warp.hold(counted=False)  # (no request: not in the clock's count of server holds)
        try:
            warp.sync()
        except BaseException:
            warp.release()
            raise
        self._loop.create_task(self._settled(warp))

    async def _settled(self, warp: WarpClock) -> None:
        try:
            for _ in range(_SETTLE_TURNS):
                await asyncio.sleep(0)
            if not self._closed:
                self._offer()
        finally:
            warp.release()

    def _offer(self) -> None:
        now = self._clock()
        received = self.received()
        if self._total and received >= self._total:
            return  # complete: nothing left to give up
        if self._check.offer_at(now, received):
            self.offers += 1
            elapsed = now - self._requested_s
            if not self._keep_going(received, self._total, elapsed):
                self.given_up = (received, elapsed)
                self.stop()
                self._content.set_exception(AbandonNow())
                return
        if not self._check.waiting:
            self._arm()
