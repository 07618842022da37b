"""The live player's open requests, told to an emulated link's clock (netsim.clock `lone_request`).

A live link's clock cannot hold for its player as a VOD one does: the channel streams on the wall
clock, so time left out while an answer streams makes its later chunks come early. While the player
has one request open and nothing else, nothing streams but that request's answer, and before the
server has the request nothing streams at all: the clock then leaves out the player's own time
until the request reaches the shaper (`WarpClock.hold_for_player`: its decisions, its HTTP client,
the loop's hop) and the request's delay line's lateness (the shaper's request pipe). That is where
the join's two link-bound requests lost 3-7 session ms each (docs/LIVE-EMULATION.md, "The join's
lone requests").
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable

from netsim.clock import warp_of


class OpenRequests:
    """Counts a live player's open requests on its link; with `enabled` (a clock that leaves time
    out and is this player's alone), tells that clock whether one is open and alone."""

    def __init__(self, clock: Callable[[], float], *, enabled: bool) -> None:
        self._warp = warp_of(clock) if enabled else None
        self.open = 0  # requests open now
        self._not_lone = 0  # of which ones that never take the lone path (`one(lone=False)`)
        self.lone = 0  # requests that went alone on a clock told so (tests)

    @contextlib.asynccontextmanager
    async def one(self, *, lone: bool = True) -> AsyncIterator[None]:
        """A request of the player's is open from here to the block's end (send it inside). Alone
        (`lone`, and no other open), the clock holds until it reaches the shaper and leaves its delay
        line's lateness out; once its answer is in with nothing else open, the clock holds again
        until the player's next act (its next request reaches the shaper, or it sleeps). `lone=False`
        (the clock sync's `/time`, whose samples are judged on their own) counts it only."""
        self.open += 1
        self._not_lone += not lone
        if self._tell() and self._warp is not None:
            self.lone += 1
            self._warp.hold_for_player()
        try:
            yield
        finally:
            self._close(lone)
        if lone and not self.open and self._warp is not None:
            self._warp.hold_for_player()  # the player decides what next: no link time, as in the simulator

    def _close(self, lone: bool) -> None:
        self.open -= 1
        self._not_lone -= not lone
        self._tell()

    def _tell(self) -> bool:
        alone = self.open == 1 and not self._not_lone
        if self._warp is not None:
            self._warp.lone_request = alone
        return alone
