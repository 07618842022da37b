"""An answer that comes before its announced publication on the shaper's clock, kept until then.

A player announces when the channel publishes what a request waits for (netsim.waits); the server
holds that request on the wall clock, from the lag the request carried. If the clock leaves time out
while the request is at the server (a loop stall with `exclude_loop_stalls`, another request's hold
at its server), the server's wall-clock wait ends before the publication on the clock: the answer is
ahead of the player. An LL-HLS player then asks for its next part by that answer while the channel
judges the request by the player's clock, a few parts behind: past the Advance Part Limit, an HTTP
400 (docs/LIVE-EMULATION.md, "The rare HTTP 400"). The shaper keeps such an answer off the link
(`EarlyAnswers`) until the clock reads the time it would have come at had the clock left nothing out
(`kept_until_s`), and what the upstream did after it (its end, its close) follows it in order.
"""

from __future__ import annotations

from collections.abc import Callable

from netsim.clock import WarpClock, WarpTimer

# Earlier than this is float noise of `WarpClock.paused_s` (loop seconds ~1e6: ulp ~1e-10), not an answer to keep.
_MIN_EARLY_S = 1e-6


def kept_until_s(clock: WarpClock, publish_at_s: float, paused_at_request_s: float) -> float | None:
    """The clock time an answer that comes now to a request for a publication at clock time
    `publish_at_s` should cross the link (None: now). `paused_at_request_s`: `clock.paused_s()` when
    the request reached the server. The server's wait ran on the wall clock, so the answer came as
    much before the publication as the clock left out since: it waits that long, never past the
    publication; nor longer than the clock left out (a publication announced later than it came must
    not delay an answer the clock did not leave behind: `min`)."""
    now_s = clock.now()
    until_s = min(publish_at_s, now_s + clock.paused_s() - paused_at_request_s)
    return until_s if until_s > now_s + _MIN_EARLY_S else None


class EarlyAnswers:
    """One connection's answers that come before their announced publication on the clock: such an
    answer's bytes, and what the upstream did after them (`after`: its end, its close), are kept
    until the clock reads `kept_until_s`; then `deliver(bytes)` is called once and the deferred
    actions run in the order they came. `drop()` (the connection closed) forgets them unrun. The
    bytes are held in memory, not paced: an announced wait is a playlist reload or a part, kept for
    as long as the clock left out (a fraction of a second; seconds at worst)."""

    __slots__ = ("_clock", "_deliver", "_on_kept", "_paused_at_s", "_timer", "_data", "_after")

    def __init__(self, clock: WarpClock, deliver: Callable[[bytes], None], on_kept: Callable[[], None]) -> None:
        self._clock = clock
        self._deliver = deliver
        self._on_kept = on_kept  # an answer is kept (counting)
        self._paused_at_s = 0.0  # `clock.paused_s()` when the request for a publication reached the server
        self._timer: WarpTimer | None = None  # delivers the answer kept, if one is
        self._data = bytearray()
        self._after: list[Callable[[], None]] = []

    def request_waits(self) -> None:
        """A request for an announced publication reached the server."""
        self._paused_at_s = self._clock.paused_s()

    @property
    def keeping(self) -> bool:
        """Whether an answer is kept now."""
        return self._timer is not None

    @property
    def kept_bytes(self) -> int:
        return len(self._data)

    def keep(self, data: bytes, publication: WarpTimer | None) -> bool:
        """Whether `data`, from the upstream, is kept: an answer kept already, or one that comes before
        the `publication` it waited for (the timer that holds the clock then: cancelled if so)."""
        if self._timer is None:
            if publication is None or publication.cancelled:
                return False
            until_s = kept_until_s(self._clock, publication.due_s, self._paused_at_s)
            if until_s is None:
                return False
            publication.cancel()
            self._timer = self._clock.call_at(until_s, self._due)
            self._on_kept()
        self._data += data
        return True

    def after(self, action: Callable[[], None]) -> None:
        """Run `action()` now, or after the answer kept."""
        if self._timer is None:
            action()
        else:
            self._after.append(action)

    def _due(self) -> None:
        self._timer = None
        data, after = bytes(self._data), self._after
        self._data, self._after = bytearray(), []
        if data:
            self._deliver(data)
        for action in after:
            action()

    def drop(self) -> None:
        """Forget the answer kept, if any: nobody is left to read it."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._data.clear()
        self._after.clear()
