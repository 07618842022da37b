"""Abandonment for the simulator's drivers whose transfers share a link (content with audio, N players).

`AbandonChecks` offers each video download in flight on a `netsim.sharing.SharedLink` to its ABR's
`should_abandon`, as `SessionDriver` does on a link of its own and the headless player does behind
the shaper: every `abandon_check_s` after the request's latency is over, once `abandon_check_bytes`
are in. One `PipelinesDriver` alone (a session with audio) and `SharedLinkDriver` (N sessions on one
link) both use it, so a session with audio abandons whether it plays alone or beside others.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

from abr.types import Abandoning
from netsim.sharing import SharedLink

if TYPE_CHECKING:
    from netsim.faults import FaultedLink
    from netsim.link import LinkModel
    from player.research.sim import SimProfile
    from player.research.sim_pipelines import PipelinesDriver
    from player.session import PlaybackSession


def first_abandonment(session: PlaybackSession, link: LinkModel | FaultedLink, abr: Abandoning, *, size_bytes: int,
                      start_s: float, latency_s: float, finish_s: float, check_s: float,
                      check_bytes: int) -> tuple[float, int] | None:
    """A download on a link of its own (`SessionDriver`, the live `LiveDriver`): requested at link
    time `start_s`, first byte `latency_s` later, complete at `finish_s`. Offers it to `abr` at
    Sabre's checks (>= `check_s` apart and `check_bytes` more bytes) with the session advanced to
    each (session time at the request + link time since); the link time and bytes received where
    the ABR gave it up, None if it did not (the caller tells the session)."""
    first_byte = start_s + latency_s
    before = link.bytes_until(first_byte)
    requested = session.time_s
    previous, counted_from = start_s, first_byte
    while True:
        check = max(previous + check_s, link.finish_time(counted_from, check_bytes))
        if check >= finish_s:
            return None
        received = min(int(link.bytes_until(check) - before), size_bytes - 1)
        session.advance(requested + (check - start_s))
        progress = session.progress(bytes_received=received, size_bytes=size_bytes, elapsed_s=check - start_s,
                                    ttfb_s=latency_s)
        if abr.should_abandon(progress) is not None:
            return check, received
        previous = counted_from = check


class AbandonChecks:
    """When to offer which driver's video download to its ABR, on the shared link's clock.

    Driver i's session time t is link time t + `drivers[i].shift_s`; its video transfer is keyed
    `(drivers[i].tag, "video")` on `shared`. A driver loop calls `next_s()` (link time of the next
    check, inf: none) before choosing its next event and `run(now)` after moving every session to it.
    """

    __slots__ = ("_drivers", "_shared", "_prof", "_abrs", "_check_at")

    def __init__(self, drivers: Sequence[PipelinesDriver], shared: SharedLink, prof: SimProfile) -> None:
        self._drivers = drivers
        self._shared = shared
        self._prof = prof
        self._abrs: dict[int, Abandoning] = {i: d.session.abr for i, d in enumerate(drivers)  # type: ignore[misc]
                                             if prof.abandonment and isinstance(d.session.abr, Abandoning)}
        self._check_at: dict[int, float] = {}  # driver index -> link time of its next check

    def next_s(self) -> float:
        """Link time of the next check: the first `abandon_check_s` after a new download's first byte
        could arrive, then every `abandon_check_s` (inf: no video download of an abandoning ABR in flight)."""
        for i in self._abrs:
            driver = self._drivers[i]
            flight = driver.in_flight("video")
            if flight is None:
                self._check_at.pop(i, None)
            elif i not in self._check_at:
                _, latency, requested = flight
                self._check_at[i] = driver.shift_s + requested + latency + self._prof.abandon_check_s
        return min(self._check_at.values(), default=math.inf)

    def run(self, now_s: float) -> bool:
        """Offers the downloads whose check is due at link time `now_s` (sessions already advanced to it);
        an ABR that answers gets its download abandoned there (`PipelinesDriver.abandon`). True if any was."""
        abandoned = False
        for i, at in list(self._check_at.items()):
            driver = self._drivers[i]
            flight = driver.in_flight("video")
            if at > now_s or flight is None:
                continue
            size, latency, requested = flight
            received = min(driver.body_bytes(self._shared.received_bytes((driver.tag, "video"))), size - 1)
            self._check_at[i] = now_s + self._prof.abandon_check_s
            if received < self._prof.abandon_check_bytes:
                continue
            session_now = now_s - driver.shift_s
            progress = driver.session.progress(bytes_received=received, size_bytes=size,
                                               elapsed_s=session_now - requested, ttfb_s=latency)
            if self._abrs[i].should_abandon(progress) is not None:
                driver.abandon("video", session_now)
                del self._check_at[i]
                abandoned = True
        return abandoned
