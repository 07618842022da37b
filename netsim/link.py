"""The link model: when do N bytes requested at trace time t finish on a looped trace?

One model, two uses: the simulator asks it how long a download takes; the shaping proxy uses the same
cumulative-capacity function to pace real bytes. `payload_factor` scales capacity to goodput
(Pensieve uses 0.95 for packet payload).
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Sequence

import numpy as np

from netsim.trace import Trace


class LinkModel:
    """Capacity of one trace as a cumulative function bytes(t), looped, and its inverse."""

    __slots__ = ("trace", "payload_factor", "period_s", "period_bytes", "_ends", "_cum", "_rate", "_starts", "_cum_before")

    def __init__(self, trace: Trace, *, payload_factor: float = 1.0) -> None:
        if not 0 < payload_factor <= 1:
            raise ValueError(f"payload factor must be in (0, 1], got {payload_factor}")
        self.trace = trace
        self.payload_factor = payload_factor
        rate = trace.bandwidth_bps * payload_factor / 8.0  # bytes/s
        ends = np.cumsum(trace.durations_s)
        cum = np.cumsum(trace.durations_s * rate)
        self.period_s = float(ends[-1])
        self.period_bytes = float(cum[-1])
        self._ends: list[float] = ends.tolist()
        self._cum: list[float] = cum.tolist()
        self._rate: list[float] = rate.tolist()
        self._starts: list[float] = (ends - trace.durations_s).tolist()
        self._cum_before: list[float] = (cum - trace.durations_s * rate).tolist()

    def bytes_until(self, time_s: float) -> float:
        """Bytes the link can deliver from trace time 0 to `time_s`."""
        laps = math.floor(time_s / self.period_s)
        offset = time_s - laps * self.period_s
        i = min(bisect.bisect_right(self._ends, offset), len(self._ends) - 1)
        return laps * self.period_bytes + self._cum_before[i] + (offset - self._starts[i]) * self._rate[i]

    def time_for_bytes(self, total_bytes: float) -> float:
        """The earliest trace time by which `total_bytes` (counted from time 0) are delivered."""
        if total_bytes <= 0:
            return 0.0
        laps = math.ceil(total_bytes / self.period_bytes) - 1
        remaining = total_bytes - laps * self.period_bytes  # in (0, period_bytes]
        i = min(bisect.bisect_left(self._cum, remaining), len(self._cum) - 1)
        return laps * self.period_s + self._starts[i] + (remaining - self._cum_before[i]) / self._rate[i]

    def finish_time(self, start_s: float, size_bytes: float) -> float:
        """Trace time at which a transfer of `size_bytes` started at `start_s` completes."""
        return self.time_for_bytes(self.bytes_until(start_s) + size_bytes)

    def download_time(self, start_s: float, size_bytes: float) -> float:
        return self.finish_time(start_s, size_bytes) - start_s

    def shared_finish(self, start_s: float, first_bytes: float, second_bytes: float) -> tuple[float, float]:
        """When each of two transfers receiving from `start_s` on completes if they share the link
        fairly (processor sharing: the shaper's `PacedLink` splits its capacity evenly between
        backlogged pipes) and nothing else starts: each has half the capacity until the smaller is
        done, the larger then all of it. Work-conserving, so the larger ends when both transfers'
        bytes have crossed (as if alone with the smaller's bytes added to its own); the smaller ends
        when twice its bytes have, later than alone. Equal sizes end together."""
        base = self.bytes_until(start_s)
        small_end = max(start_s, self.time_for_bytes(base + 2 * min(first_bytes, second_bytes)))
        both_end = max(start_s, self.time_for_bytes(base + first_bytes + second_bytes))
        return (small_end, both_end) if first_bytes <= second_bytes else (both_end, small_end)


class LinkBatch:
    """Many traces at once, vectorised: element j of every query array is a transfer on trace j.

    Traces given more than once (the same object, e.g. many sessions with different start offsets
    on one trace) are stored once.
    """

    def __init__(self, traces: Sequence[Trace], *, payload_factor: float = 1.0) -> None:
        if not traces:
            raise ValueError("a link batch needs at least one trace")
        if not 0 < payload_factor <= 1:
            raise ValueError(f"payload factor must be in (0, 1], got {payload_factor}")
        slot_of: dict[int, int] = {}  # id(trace) -> its index in `distinct`
        distinct: list[Trace] = []
        for trace in traces:
            if id(trace) not in slot_of:
                slot_of[id(trace)] = len(distinct)
                distinct.append(trace)
        self.size = len(traces)
        self._slot = np.fromiter((slot_of[id(t)] for t in traces), dtype=np.int64, count=len(traces))
        lengths = np.array([t.durations_s.size for t in distinct])
        durations = np.concatenate([t.durations_s for t in distinct])
        rate = np.concatenate([t.bandwidth_bps for t in distinct]) * (payload_factor / 8.0)  # bytes/s
        first = np.r_[0, np.cumsum(lengths)[:-1]]
        last = first + lengths - 1
        ends_all = np.cumsum(durations)
        cum_all = np.cumsum(durations * rate)
        time_base = np.r_[0.0, ends_all[last][:-1]]
        byte_base = np.r_[0.0, cum_all[last][:-1]]
        owner = np.repeat(np.arange(len(distinct)), lengths)
        ends = ends_all - time_base[owner]  # per-trace local end times
        cum = cum_all - byte_base[owner]
        self.period_s = ends[last]
        self.period_bytes = cum[last]
        # Offsets keep the concatenated arrays strictly increasing across traces, so one searchsorted
        # serves every trace: trace k's values are shifted past all earlier traces' values.
        self._time_offset = np.r_[0.0, np.cumsum(self.period_s + 1.0)[:-1]]
        self._byte_offset = np.r_[0.0, np.cumsum(self.period_bytes + 1.0)[:-1]]
        self._ends = ends + self._time_offset[owner]
        self._cum = cum + self._byte_offset[owner]
        self._rate = rate
        self._starts = ends - durations
        self._cum_before = cum - durations * rate
        self._last_index = last

    def _traces(self, which: np.ndarray | None) -> np.ndarray:
        return self._slot if which is None else self._slot[which]

    def bytes_until(self, time_s: np.ndarray, which: np.ndarray | None = None) -> np.ndarray:
        """Vectorised `LinkModel.bytes_until`; `which` selects traces (default: all, in order)."""
        j = self._traces(which)
        laps = np.floor(time_s / self.period_s[j])
        offset = time_s - laps * self.period_s[j]
        i = np.minimum(np.searchsorted(self._ends, offset + self._time_offset[j], side="right"), self._last_index[j])
        return laps * self.period_bytes[j] + self._cum_before[i] + (offset - self._starts[i]) * self._rate[i]

    def time_for_bytes(self, total_bytes: np.ndarray, which: np.ndarray | None = None) -> np.ndarray:
        j = self._traces(which)
        laps = np.ceil(total_bytes / self.period_bytes[j]) - 1
        remaining = total_bytes - laps * self.period_bytes[j]
        i = np.minimum(np.searchsorted(self._cum, remaining + self._byte_offset[j], side="left"), self._last_index[j])
        return laps * self.period_s[j] + self._starts[i] + (remaining - self._cum_before[i]) / self._rate[i]

    def finish_time(self, start_s: np.ndarray, size_bytes: np.ndarray, which: np.ndarray | None = None) -> np.ndarray:
        return self.time_for_bytes(self.bytes_until(start_s, which) + size_bytes, which)
