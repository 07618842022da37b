"""Abandonment in the simulator's drivers, on `player.abandon`'s one rule.

`link_checks` walks a download on a link of its own (`SessionDriver`, the live `LiveDriver`) through
the rule's checks on the link model: each check's link time and the body bytes received by then.
`AbandonChecks` offers each video download in flight on a `netsim.sharing.SharedLink` (a session
with audio, alone in `PipelinesDriver` or beside others in `SharedLinkDriver`) to its ABR at the
same checks, event by event on the shared link's clock. The headless player runs the same rule on
its clock's timers (`player.client.fetch`), so the simulator and the emulated player offer the
same checks of the same download.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING

from abr.types import Abandoning
from netsim.sharing import SharedLink
from player.abandon import AbandonCheck, AbandonRule

if TYPE_CHECKING:
    from netsim.faults import FaultedLink
    from netsim.link import LinkModel
    from player.research.sim import SimProfile
    from player.research.sim_pipelines import PipelinesDriver
    from player.session import PlaybackSession

_TIE_S = 1e-9  # seconds: a check this close to the last byte is at it


def link_checks(rule: AbandonRule, link: LinkModel | FaultedLink, *, size_bytes: int, start_s: float,
                latency_s: float, finish_s: float, header_bytes: int = 0) -> Iterator[tuple[float, int]]:
    """The checks `rule` offers for a download alone on `link`: requested at link time `start_s`,
    first byte `latency_s` later (the response's `header_bytes` first, then its body), complete at
    `finish_s`. Yields (link time, body bytes received by then) for each check before `finish_s`."""
    body_from = link.bytes_until(start_s + latency_s) + header_bytes
    check = AbandonCheck(rule, start_s, counted_from=body_from)
    # A check on the last byte (to float rounding) finds the download complete, as the drivers that
    # see its completion first (the shared link's, the player) do.
    done_s = finish_s - _TIE_S
    while True:
        at = check.due_s
        if at >= done_s:
            return
        counted = link.bytes_until(at)
        if not check.offer_at(at, counted):
            if not check.waiting:
                continue  # the grid: skipped
            at = max(at, link.time_for_bytes(check.wanted))  # Sabre's: when the bytes are in
            if at >= done_s:
                return
            counted = link.bytes_until(at)
            check.offer_at(at, counted, force=True)
        yield at, max(0, min(int(counted - body_from), size_bytes - 1))


def first_abandonment(session: PlaybackSession, link: LinkModel | FaultedLink, abr: Abandoning, *, size_bytes: int,
                      start_s: float, latency_s: float, finish_s: float, rule: AbandonRule,
                      header_bytes: int = 0) -> tuple[float, int] | None:
    """A download on a link of its own: offers it to `abr` at `rule`'s checks (`link_checks`) with the
    session advanced to each (session time at the request + link time since); the link time and
    bytes received where the ABR gave it up, None if it did not (the caller tells the session, which
    then stands at that check's time: `session.time_s`).
    `header_bytes`: the response's, crossing the link before its body (`SimProfile.response_header_bytes`)."""
    requested = session.time_s
    for check, received in link_checks(rule, link, size_bytes=size_bytes, start_s=start_s, latency_s=latency_s,
                                       finish_s=finish_s, header_bytes=header_bytes):
        session.advance(requested + (check - start_s))
        progress = session.progress(bytes_received=received, size_bytes=size_bytes, elapsed_s=check - start_s,
                                    ttfb_s=latency_s)
        if abr.should_abandon(progress) is not None:
            return check, received
    return None


class AbandonChecks:
    """When to offer which driver's video download to its ABR, on the shared link's clock.

    Driver i's session time t is link time t + `drivers[i].shift_s`; its video transfer is keyed
    `(drivers[i].tag, "video")` on `shared`. A driver loop calls `next_s()` (link time of the next
    check, inf: none) before choosing its next event and `run(now)` after moving every session to it.
    A check on Sabre's schedule that waits for bytes is due when the shared link says they are in
    with the transfers now on it; the loop asks again after each start or completion.
    """

    __slots__ = ("_drivers", "_shared", "_rule", "_abrs", "_checks", "_due")

    def __init__(self, drivers: Sequence[PipelinesDriver], shared: SharedLink, prof: SimProfile) -> None:
        self._drivers = drivers
        self._shared = shared
        self._rule = prof.abandon_rule
        self._abrs: dict[int, Abandoning] = {i: d.session.abr for i, d in enumerate(drivers)  # type: ignore[misc]
                                             if prof.abandonment and isinstance(d.session.abr, Abandoning)}
        self._checks: dict[int, AbandonCheck] = {}  # driver index -> its video download's checks
        self._due: dict[int, float] = {}  # driver index -> link time of its next check

    def next_s(self) -> float:
        """Link time of the next check (inf: no video download of an abandoning ABR in flight)."""
        for i in self._abrs:
            driver = self._drivers[i]
            flight = driver.in_flight("video")
            if flight is None:
                self._checks.pop(i, None)
                self._due.pop(i, None)
                continue
            check = self._checks.get(i)
            if check is None or check.requested_s != flight[2]:  # a new download
                check = self._checks[i] = AbandonCheck(self._rule, flight[2])
            if check.waiting:  # Sabre's schedule: when the body bytes it wants are in
                wanted = check.wanted + driver.header_bytes
                self._due[i] = max(self._shared.reaches_s((driver.tag, "video"), wanted), self._shared.now_s)
            else:
                self._due[i] = check.due_s + driver.shift_s
        return min(self._due.values(), default=math.inf)

    def run(self, now_s: float) -> bool:
        """Offers the downloads whose check is due at link time `now_s` (sessions already advanced to it);
        an ABR that answers gets its download abandoned there (`PipelinesDriver.abandon`). True if any was."""
        abandoned = False
        for i, at in list(self._due.items()):
            driver = self._drivers[i]
            flight = driver.in_flight("video")
            if at > now_s or flight is None:
                continue
            size, latency, requested = flight
            check = self._checks[i]
            on_link = self._shared.received_bytes((driver.tag, "video"))
            received = min(driver.body_bytes(on_link), size - 1)
            session_now = now_s - driver.shift_s
            # The rule counts the body's bytes as the link model has them (fractions too, as `link_checks`).
            if not check.offer_at(session_now, on_link - driver.header_bytes, force=check.waiting):
                continue
            progress = driver.session.progress(bytes_received=received, size_bytes=size,
                                               elapsed_s=session_now - requested, ttfb_s=latency)
            if self._abrs[i].should_abandon(progress) is not None:
                driver.abandon("video", session_now)
                del self._checks[i], self._due[i]
                abandoned = True
        return abandoned
