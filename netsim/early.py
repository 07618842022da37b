"""An answer that comes ahead of the shaper's clock for a wait the player announced, kept until then.

A player announces when the channel publishes what a request waits for (netsim.waits) and stamps the
request with its lag (loop time - clock time); the server judges it by that lag, as the channel's
view of the player's clock, and holds it on the wall clock until its publication in that view. Time
the clock leaves out after the stamp (a loop stall with `exclude_loop_stalls`, another request's hold
at its server) puts the server's view ahead of the player's clock by as much: while the request sits
in the link's delay line, the server sees it later on the wall and answers with a playlist that far
ahead; while it waits at the server, the answer comes that much before its publication. Either way
the player then asks for its next part by an answer ahead of its clock while the channel judges that
request by the clock: past the Advance Part Limit, an HTTP 400 (docs/LIVE-EMULATION.md, "The rare
HTTP 400"). The shaper keeps such an answer off the link (`EarlyAnswers`) until the clock reads the
server's view it was made at (`kept_until_s`), and what the upstream did after it (its end, its
close) follows it in order. Where the shaper stamps the lag again as the request leaves the delay
line (netsim.lagstamp: the emulated live player's link), the server sees it at the clock, and only
the wait at the server is left to keep: an answer then due at its publication anyway.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from netsim.clock import WarpClock, WarpTimer

# An answer less ahead of the clock than this (clock seconds) crosses at once. Kept, it would leave
# behind a loose timer (live emulation's clock), late by the loop's wake-up: ms, more under load, as
# much as it was early. With none, parts the player asked for came -1 to +7 ms after their
# publication (medians of 6 runs, load 13-18) where they had come 2 and 16 ms before it, and the
# ABR's throughput sample fell to 0.91-0.97 of its twin's (bench/live_segments.py,
# docs/LIVE-EMULATION.md). 50 ms is 0.2 s of channel at 4x, 0.5 s at 10x: far inside the Advance
# Part Limit (6 parts, 3 s of channel).
MIN_EARLY_S = 0.05


@dataclass(frozen=True, slots=True)
class AnnouncedRequest:
    """A request whose publication its player announced, as the shaper saw it: the clock time of that
    publication, and the clock's left-out time (`WarpClock.paused_s`) when the request reached the
    shaper (about when the player stamped its lag); then, once it reached the server, the clock time
    and the left-out time again."""

    publish_at_s: float
    paused_sent_s: float
    delivered_s: float | None = None
    paused_delivered_s: float = 0.0


def kept_until_s(request: AnnouncedRequest, now_s: float, paused_now_s: float,
                 min_early_s: float = MIN_EARLY_S) -> float | None:
    """The clock time the answer to `request` that comes now should cross the link (None: now).

    The server saw the request at its view of the player's clock: the clock when the request reached
    it plus what the clock left out since the stamp (a loop stall in the delay line); it answered at
    that view, or at the publication if that came later in its view. The answer waits for the clock to
    read that, but never past the server's view now (`now_s` plus all the clock left out since the
    stamp): a publication announced later than it came must not delay an answer the clock did not
    leave behind. Less than `min_early_s` ahead is not kept."""
    if request.delivered_s is None:
        return None
    seen_at_s = request.delivered_s + (request.paused_delivered_s - request.paused_sent_s)
    until_s = min(max(request.publish_at_s, seen_at_s), now_s + paused_now_s - request.paused_sent_s)
    return until_s if until_s > now_s + max(min_early_s, 1e-6) else None  # 1e-6: the float noise of `paused_s`


class EarlyAnswers:
    """One connection's answers to announced waits that come ahead of the clock: such an answer's
    bytes, and what the upstream did after them (`after`: its end, its close), are kept until the
    clock reads `kept_until_s`; then `deliver(bytes)` is called for each of the upstream's reads, and
    the deferred actions run in the order they came. `drop()` (the connection closed) forgets them
    unrun. The bytes are held in memory, not paced: an announced wait is a playlist reload or a
    part, kept for as long as the clock left out (a fraction of a second; seconds at worst)."""

    __slots__ = ("_clock", "_deliver", "_on_kept", "_request", "_timer", "_data", "_after", "min_early_s")

    def __init__(self, clock: WarpClock, deliver: Callable[[bytes], None], on_kept: Callable[[float], None], *,
                 min_early_s: float = MIN_EARLY_S) -> None:
        self._clock = clock
        self.min_early_s = min_early_s
        self._deliver = deliver
        self._on_kept = on_kept  # an answer is kept, for this many clock seconds (counting)
        self._request: AnnouncedRequest | None = None  # the last request, if announced and not answered yet
        self._timer: WarpTimer | None = None  # delivers the answer kept, if one is
        self._data: list[bytes] = []  # as the upstream's reads gave them (the first: the answer's head)
        self._after: list[Callable[[], None]] = []

    def request_sent(self, publish_at_s: float | None) -> None:
        """A request reached the shaper; `publish_at_s`: the publication its player announced (None: none)."""
        self._request = None if publish_at_s is None else AnnouncedRequest(publish_at_s, self._clock.paused_s())

    def request_delivered(self, *, restamped: bool = False) -> None:
        """Request bytes reached the server (the first of them count); `restamped`: with its lag as it
        stands now (netsim.lagstamp), so the server sees it at the clock, whatever was left out before."""
        request = self._request
        if request is not None and request.delivered_s is None:
            paused_s = self._clock.paused_s()
            self._request = AnnouncedRequest(request.publish_at_s, paused_s if restamped else request.paused_sent_s,
                                             self._clock.now(), paused_s)

    @property
    def keeping(self) -> bool:
        """Whether an answer is kept now."""
        return self._timer is not None

    @property
    def kept_bytes(self) -> int:
        return sum(map(len, self._data))

    def keep(self, data: bytes) -> bool:
        """Whether `data`, from the upstream, is kept: the answer kept already, or the first bytes of
        an answer to an announced request that come ahead of the clock (`kept_until_s`)."""
        if self._timer is None:
            request, self._request = self._request, None  # one answer per request
            if request is None:
                return False
            now_s = self._clock.now()
            until_s = kept_until_s(request, now_s, self._clock.paused_s(), self.min_early_s)
            if until_s is None:
                return False
            self._timer = self._clock.call_at(until_s, self._due)
            self._on_kept(until_s - now_s)
        self._data.append(data)
        return True

    def after(self, action: Callable[[], None]) -> None:
        """Run `action()` now, or after the answer kept."""
        if self._timer is None:
            action()
        else:
            self._after.append(action)

    def _due(self) -> None:
        self._timer = None
        data, after = self._data, self._after
        self._data, self._after = [], []
        for chunk in data:
            self._deliver(chunk)
        for action in after:
            action()

    def drop(self) -> None:
        """Forget the answer kept, if any: nobody is left to read it."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._data.clear()
        self._after.clear()
