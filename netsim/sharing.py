"""Concurrent transfers on one link: each active transfer gets an equal share of the capacity.

A player fetching audio and video on two connections through one access link: the shaper's
`PacedLink` shares its bottleneck max-min fairly between backlogged pipes, which for transfers
that always have bytes waiting is processor sharing (n active transfers get 1/n of the capacity
each). `SharedLink` computes that exactly on the link model's cumulative capacity: between two
events (a transfer starting to receive, one completing) the link delivers `bytes_until(t1) -
bytes_until(t0)`, split evenly. A lone transfer finishes at `LinkModel.finish_time`.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from typing import Protocol


class CumulativeLink(Protocol):
    """`LinkModel` or `FaultedLink`: capacity as a cumulative function of link time, and its inverse."""

    def bytes_until(self, time_s: float) -> float: ...

    def time_for_bytes(self, total_bytes: float) -> float: ...


@dataclass(slots=True)
class _Transfer:
    starts_s: float  # link time its first byte may arrive (request latency over)
    size_bytes: float
    remaining_bytes: float


class SharedLink:
    """Transfers sharing one link fairly, on the link's clock (seconds of trace time)."""

    __slots__ = ("link", "now_s", "_cum_now", "_transfers")

    def __init__(self, link: CumulativeLink, *, now_s: float = 0.0) -> None:
        self.link = link
        self.now_s = now_s
        self._cum_now = link.bytes_until(now_s)
        self._transfers: dict[Hashable, _Transfer] = {}

    def start(self, key: Hashable, *, starts_s: float, size_bytes: float) -> None:
        """A transfer of `size_bytes` that receives from `starts_s` (>= now) on."""
        if key in self._transfers:
            raise ValueError(f"transfer {key!r} is already on the link")
        if starts_s < self.now_s or not math.isfinite(starts_s):
            raise ValueError(f"a transfer cannot start at {starts_s!r} s, before the link's now ({self.now_s} s)")
        if not size_bytes >= 0:
            raise ValueError(f"a transfer needs a size >= 0 bytes, got {size_bytes!r}")
        self._transfers[key] = _Transfer(starts_s, float(size_bytes), float(size_bytes))

    def __contains__(self, key: Hashable) -> bool:
        return key in self._transfers

    def __len__(self) -> int:
        return len(self._transfers)

    def received_bytes(self, key: Hashable) -> float:
        transfer = self._transfers[key]
        return transfer.size_bytes - transfer.remaining_bytes

    def reaches_s(self, key: Hashable, received_bytes: float) -> float:
        """Link time at which transfer `key` will have received `received_bytes` if no transfer starts
        or ends before then (inf: it is not receiving yet; its start is an event of its own)."""
        transfer = self._transfers[key]
        short = received_bytes - (transfer.size_bytes - transfer.remaining_bytes)
        if short <= 0:
            return self.now_s
        if transfer.starts_s > self.now_s:
            return math.inf
        active = sum(1 for t in self._transfers.values() if t.starts_s <= self.now_s)
        return self.link.time_for_bytes(self._cum_now + short * active)

    def cancel(self, key: Hashable) -> float:
        """Drop a transfer (abandoned); returns the bytes it had received."""
        transfer = self._transfers.pop(key)
        return transfer.size_bytes - transfer.remaining_bytes

    def next_event_s(self) -> float:
        """Link time of the next start or completion with the transfers now known (inf: none)."""
        active = [t for t in self._transfers.values() if t.starts_s <= self.now_s]
        waiting = min((t.starts_s for t in self._transfers.values() if t.starts_s > self.now_s), default=math.inf)
        if not active:
            return waiting
        least = min(t.remaining_bytes for t in active)
        done = max(self.now_s, self.link.time_for_bytes(self._cum_now + least * len(active)))
        return min(done, waiting)

    def advance(self, time_s: float) -> list[Hashable]:
        """Move the link clock to `time_s` (events in between happen in order); returns the transfers
        that completed by then, in completion order, and forgets them."""
        if time_s < self.now_s:
            raise ValueError(f"link time went backwards: {time_s} < {self.now_s}")
        completed: list[Hashable] = []
        while True:
            event = self.next_event_s()
            target = min(event, time_s)
            self._deliver(target)
            completed.extend(self._take_completed(force=event <= time_s))
            if event >= time_s:
                return completed

    def _deliver(self, time_s: float) -> None:
        cum = self.link.bytes_until(time_s)
        active = [t for t in self._transfers.values() if t.starts_s <= self.now_s]
        if active and cum > self._cum_now:
            share = (cum - self._cum_now) / len(active)
            for transfer in active:
                transfer.remaining_bytes -= share
        self.now_s = time_s
        self._cum_now = cum

    def _take_completed(self, *, force: bool) -> list[Hashable]:
        """Transfers with nothing left (within float rounding of the inverse); with `force`, an event
        was due now, so the active transfer with the least left completes even if rounding left a
        sliver (the clock must move on)."""
        active = {k: t for k, t in self._transfers.items() if t.starts_s <= self.now_s}
        done = [k for k, t in active.items() if t.remaining_bytes <= 1e-9 * max(t.size_bytes, 1.0)]
        if force and not done and active:
            least = min(active, key=lambda k: active[k].remaining_bytes)
            left = active[least].remaining_bytes
            # Rounding only: a sliver of a byte per transfer, not a transfer still receiving.
            if left <= 1e-6 * max(active[least].size_bytes, 1.0):
                done = [k for k, t in active.items() if t.remaining_bytes <= left]
        for key in done:
            del self._transfers[key]
        return done


def replay(link: CumulativeLink, requests: Sequence[tuple[float, float, float]]) -> list[float]:
    """When each transfer ends if all of them share `link`: `requests` are (request time s, latency s
    before the first byte, size bytes), each made at its time whatever the others do (as a measured
    session's requests were). Returns the finish times, in the order given."""
    order = sorted(range(len(requests)), key=lambda i: requests[i][0])
    finish = [math.nan] * len(requests)
    if not requests:
        return finish
    shared = SharedLink(link, now_s=requests[order[0]][0])
    position = 0
    while position < len(order) or len(shared):
        next_request = requests[order[position]][0] if position < len(order) else math.inf
        until = min(next_request, shared.next_event_s())
        for key in shared.advance(until):
            finish[key] = shared.now_s  # type: ignore[index]
        if until == next_request:
            index = order[position]
            position += 1
            made_s, latency_s, size = requests[index]
            shared.start(index, starts_s=made_s + latency_s, size_bytes=size)
    return finish
