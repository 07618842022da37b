"""Outages and loss bursts: windows of session time in which a link delivers nothing.

`FaultedLink` wraps a `LinkModel` with a fault schedule and keeps its interface (`bytes_until`,
`time_for_bytes`, ...), so the simulator and the shaping proxy apply the same faults;
`FaultedLinkBatch` is its vectorised twin over a `LinkBatch` (the simulator's lock-step engine).
Capacity in a fault window is lost, not deferred: a backlogged flow resumes at the trace rate when
the window ends.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from netsim.link import LinkBatch, LinkModel

FaultKind = Literal["outage", "loss_burst"]

# Linux TCP_RTO_MIN (HZ/5): the soonest a sender retransmits after a burst wiped out its window.
DEFAULT_RECOVERY_S = 0.2


@dataclass(frozen=True, kw_only=True, slots=True)
class FaultWindow:
    """One fault, in seconds of session (link) time from the link's start.

    - `outage`: nothing is delivered in [start_s, start_s + duration_s); queued data goes out as soon
      as the window ends.
    - `loss_burst`: every packet in the window is lost, and the receiver's application gets nothing
      more until the sender's retransmission timeout fires, `recovery_s` after the window; the link
      is therefore blocked for duration_s + recovery_s. (TCP's slow-start ramp afterwards is not
      modelled.)
    """

    start_s: float
    duration_s: float
    kind: FaultKind = "outage"
    recovery_s: float = 0.0

    def __post_init__(self) -> None:
        if self.kind not in ("outage", "loss_burst"):
            raise ValueError(f"fault kind must be 'outage' or 'loss_burst', got {self.kind!r}")
        if not (math.isfinite(self.start_s) and self.start_s >= 0):
            raise ValueError(f"fault start must be a finite time >= 0 s, got {self.start_s}")
        if not (math.isfinite(self.duration_s) and self.duration_s > 0):
            raise ValueError(f"fault duration must be finite and > 0 s, got {self.duration_s}")
        if not (math.isfinite(self.recovery_s) and self.recovery_s >= 0):
            raise ValueError(f"fault recovery must be finite and >= 0 s, got {self.recovery_s}")
        if self.kind == "outage" and self.recovery_s != 0:
            raise ValueError("an outage has no recovery time; use a loss burst")

    @property
    def blocked_until_s(self) -> float:
        """End of the span in which the link delivers nothing (window plus recovery)."""
        return self.start_s + self.duration_s + self.recovery_s

    def scaled(self, factor: float) -> FaultWindow:
        """The same fault on a trace played `factor` times faster (all times / factor)."""
        if not factor > 0:
            raise ValueError(f"time scale must be > 0, got {factor}")
        return FaultWindow(
            start_s=self.start_s / factor,
            duration_s=self.duration_s / factor,
            kind=self.kind,
            recovery_s=self.recovery_s / factor,
        )


def parse_fault(spec: str, kind: FaultKind) -> FaultWindow:
    """Parse a CLI fault `START_S:DURATION_S` (a loss burst also takes `:RECOVERY_S`, default 0.2)."""
    fields = spec.split(":")
    allowed = 3 if kind == "loss_burst" else 2
    usage = "START_S:DURATION_S" + ("[:RECOVERY_S]" if kind == "loss_burst" else "")
    if not 2 <= len(fields) <= allowed:
        raise ValueError(f"{kind.replace('_', ' ')} {spec!r}: expected {usage}")
    try:
        values = [float(f) for f in fields]
    except ValueError:
        raise ValueError(f"{kind.replace('_', ' ')} {spec!r}: expected numbers as {usage}") from None
    recovery_s = values[2] if len(values) == 3 else (DEFAULT_RECOVERY_S if kind == "loss_burst" else 0.0)
    return FaultWindow(start_s=values[0], duration_s=values[1], kind=kind, recovery_s=recovery_s)


def parse_faults(*, outages: Iterable[str] = (), loss_bursts: Iterable[str] = ()) -> tuple[FaultWindow, ...]:
    """The windows of the CLI options `--outage START_S:DURATION_S` and `--loss-burst
    START_S:DURATION_S[:RECOVERY_S]` (`abrkit shape`, `abrkit sim`)."""
    return (*(parse_fault(spec, "outage") for spec in outages), *(parse_fault(spec, "loss_burst") for spec in loss_bursts))


def blocked_spans(windows: Iterable[FaultWindow]) -> list[tuple[float, float]]:
    """The (start, end) spans in which the link delivers nothing: windows with their recovery,
    sorted, overlapping or touching ones merged."""
    spans: list[list[float]] = []
    for window in sorted(windows, key=lambda w: w.start_s):
        start, end = window.start_s, window.blocked_until_s
        if spans and start <= spans[-1][1]:
            spans[-1][1] = max(spans[-1][1], end)
        else:
            spans.append([start, end])
    return [(start, end) for start, end in spans]


class FaultedLink:
    """A `LinkModel` whose capacity is zero (and lost) inside fault windows.

    bytes_until(t) = link.bytes_until(t) minus the capacity of the blocked spans before t. Windows
    are in the link's own time (scale them with `FaultWindow.scaled` when the trace is scaled).
    """

    __slots__ = ("link", "windows", "_starts", "_ends", "_lost_before", "_avail_at_start")

    def __init__(self, link: LinkModel, windows: Iterable[FaultWindow] = ()) -> None:
        self.link = link
        self.windows: tuple[FaultWindow, ...] = tuple(sorted(windows, key=lambda w: w.start_s))
        spans = blocked_spans(self.windows)
        self._starts = [s for s, _ in spans]
        self._ends = [e for _, e in spans]
        # _lost_before[j]: capacity lost in spans 0..j-1; _avail_at_start[j]: bytes_until(start of span j).
        self._lost_before: list[float] = []
        self._avail_at_start: list[float] = []
        lost = 0.0
        for start, end in spans:
            self._lost_before.append(lost)
            self._avail_at_start.append(link.bytes_until(start) - lost)
            lost += link.bytes_until(end) - link.bytes_until(start)
        self._lost_before.append(lost)

    def with_window(self, window: FaultWindow) -> FaultedLink:
        """This link with one more fault (for outages triggered at run time)."""
        return FaultedLink(self.link, (*self.windows, window))

    def blocked_at(self, time_s: float) -> bool:
        """Whether `time_s` falls in a fault window (or its recovery)."""
        j = bisect.bisect_right(self._starts, time_s) - 1
        return j >= 0 and time_s < self._ends[j]

    def next_fault_edge_s(self, time_s: float) -> float:
        """The next start or end of a blocked span after `time_s` (inf when none is left)."""
        j = bisect.bisect_right(self._starts, time_s)
        if j > 0 and self._ends[j - 1] > time_s:
            return self._ends[j - 1]
        return self._starts[j] if j < len(self._starts) else math.inf

    def bytes_until(self, time_s: float) -> float:
        """Bytes the link can deliver from time 0 to `time_s`, faults excluded."""
        raw = self.link.bytes_until(time_s)
        j = bisect.bisect_right(self._starts, time_s) - 1
        if j < 0:
            return raw
        in_span = self.link.bytes_until(min(time_s, self._ends[j])) - self.link.bytes_until(self._starts[j])
        return raw - self._lost_before[j] - in_span

    def time_for_bytes(self, total_bytes: float) -> float:
        """The earliest time by which `total_bytes` (counted from time 0) are delivered."""
        if total_bytes <= 0:
            return 0.0
        # The first span that starts after the target is reached bounds the free stretch it lies in.
        j = bisect.bisect_left(self._avail_at_start, total_bytes)
        return self.link.time_for_bytes(total_bytes + self._lost_before[j])

    def finish_time(self, start_s: float, size_bytes: float) -> float:
        """Time at which a transfer of `size_bytes` started at `start_s` completes."""
        return self.time_for_bytes(self.bytes_until(start_s) + size_bytes)

    def download_time(self, start_s: float, size_bytes: float) -> float:
        return self.finish_time(start_s, size_bytes) - start_s


class FaultedLinkBatch:
    """`FaultedLink` vectorised over a `LinkBatch`: row j of every query is a transfer on row j's link
    with row j's own fault windows (`windows[j]`, in that link's time), the same arithmetic as the
    scalar class so both engines of the simulator agree."""

    def __init__(self, links: LinkBatch, windows: Sequence[Iterable[FaultWindow]]) -> None:
        if len(windows) != links.size:
            raise ValueError(f"need one fault schedule per link: {links.size} links, {len(windows)} schedules")
        self.links = links
        self.size = links.size
        spans = [blocked_spans(row) for row in windows]
        width = max((len(row) for row in spans), default=0)
        # Rows with fewer spans are padded with spans at +inf, which no query time reaches.
        self._starts = np.full((self.size, width), np.inf)
        self._ends = np.full((self.size, width), np.inf)
        for j, row in enumerate(spans):
            self._starts[j, :len(row)] = [start for start, _ in row]
            self._ends[j, :len(row)] = [end for _, end in row]
        real = np.isfinite(self._starts)
        rows = np.broadcast_to(np.arange(self.size)[:, None], real.shape)
        self._bytes_at_start = np.zeros(real.shape)
        lost = np.zeros(real.shape)
        self._bytes_at_start[real] = links.bytes_until(self._starts[real], rows[real])
        lost[real] = links.bytes_until(self._ends[real], rows[real]) - self._bytes_at_start[real]
        # _lost_before[:, k]: capacity lost in spans 0..k-1; _avail_at_start: bytes_until(start of span k).
        self._lost_before = np.zeros((self.size, width + 1))
        self._lost_before[:, 1:] = np.cumsum(lost, axis=1)
        self._avail_at_start = np.where(real, self._bytes_at_start - self._lost_before[:, :-1], np.inf)

    def _rows(self, which: np.ndarray | None) -> np.ndarray:
        return np.arange(self.size) if which is None else np.asarray(which)

    def bytes_until(self, time_s: np.ndarray, which: np.ndarray | None = None) -> np.ndarray:
        """Vectorised `FaultedLink.bytes_until`; `which` selects rows (default: all, in order)."""
        raw = self.links.bytes_until(time_s, which)
        if self._starts.shape[1] == 0:
            return raw
        rows = self._rows(which)
        span = (self._starts[rows] <= np.asarray(time_s)[:, None]).sum(axis=1) - 1  # bisect_right - 1
        inside = span >= 0
        k = np.maximum(span, 0)
        reached = self.links.bytes_until(np.minimum(time_s, self._ends[rows, k]), which)
        in_span = reached - self._bytes_at_start[rows, k]
        return np.where(inside, raw - self._lost_before[rows, k] - in_span, raw)

    def time_for_bytes(self, total_bytes: np.ndarray, which: np.ndarray | None = None) -> np.ndarray:
        """Vectorised `FaultedLink.time_for_bytes`."""
        rows = self._rows(which)
        span = (self._avail_at_start[rows] < np.asarray(total_bytes)[:, None]).sum(axis=1)  # bisect_left
        return self.links.time_for_bytes(total_bytes + self._lost_before[rows, span], which)

    def finish_time(self, start_s: np.ndarray, size_bytes: np.ndarray, which: np.ndarray | None = None) -> np.ndarray:
        return self.time_for_bytes(self.bytes_until(start_s, which) + size_bytes, which)
