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


class LinkBatch:
    """Many traces at once, vectorised: element j of every array belongs to trace j."""

    def __init__(self, traces: Sequence[Trace], *, payload_factor: float = 1.0) -> None:
        if not traces:
            raise ValueError("a link batch needs at least one trace")
        if not 0 < payload_factor <= 1:
            raise ValueError(f"payload factor must be in (0, 1], got {payload_factor}")
        ends, cums, rates, starts, befores = [], [], [], [], []
        period_s, period_bytes, time_offset, byte_offset = [], [], [], []
        t_base = 0.0
        b_base = 0.0
        for trace in traces:
            rate = trace.bandwidth_bps * payload_factor / 8.0
            end = np.cumsum(trace.durations_s)
            cum = np.cumsum(trace.durations_s * rate)
            # Offsets keep the concatenated arrays increasing, so one searchsorted serves all traces.
            ends.append(end + t_base)
            starts.append(end - trace.durations_s)
            cums.append(cum + b_base)
            befores.append(cum - trace.durations_s * rate)
            rates.append(rate)
            period_s.append(end[-1])
            period_bytes.append(cum[-1])
            time_offset.append(t_base)
            byte_offset.append(b_base)
            t_base += end[-1] + 1.0
            b_base += cum[-1] + 1.0
        self.size = len(traces)
        self._ends = np.concatenate(ends)
        self._cum = np.concatenate(cums)
        self._rate = np.concatenate(rates)
        self._starts = np.concatenate(starts)
        self._cum_before = np.concatenate(befores)
        self.period_s = np.asarray(period_s)
        self.period_bytes = np.asarray(period_bytes)
        self._time_offset = np.asarray(time_offset)
        self._byte_offset = np.asarray(byte_offset)
        self._last_index = np.cumsum([t.durations_s.size for t in traces]) - 1

    def bytes_until(self, time_s: np.ndarray, which: np.ndarray | None = None) -> np.ndarray:
        """Vectorised `LinkModel.bytes_until`; `which` selects traces (default: all, in order)."""
        j = np.arange(self.size) if which is None else which
        laps = np.floor(time_s / self.period_s[j])
        offset = time_s - laps * self.period_s[j]
        i = np.minimum(np.searchsorted(self._ends, offset + self._time_offset[j], side="right"), self._last_index[j])
        return laps * self.period_bytes[j] + self._cum_before[i] + (offset - self._starts[i]) * self._rate[i]

    def time_for_bytes(self, total_bytes: np.ndarray, which: np.ndarray | None = None) -> np.ndarray:
        j = np.arange(self.size) if which is None else which
        laps = np.ceil(total_bytes / self.period_bytes[j]) - 1
        remaining = total_bytes - laps * self.period_bytes[j]
        i = np.minimum(np.searchsorted(self._cum, remaining + self._byte_offset[j], side="left"), self._last_index[j])
        return laps * self.period_s[j] + self._starts[i] + (remaining - self._cum_before[i]) / self._rate[i]

    def finish_time(self, start_s: np.ndarray, size_bytes: np.ndarray, which: np.ndarray | None = None) -> np.ndarray:
        return self.time_for_bytes(self.bytes_until(start_s, which) + size_bytes, which)
