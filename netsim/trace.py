"""A network trace: piecewise-constant bandwidth (and optionally latency) over time, looped.

Every file format (Pensieve, Mahimahi, Sabre) and every generator produces a `Trace`; the link model
and the shaping proxy consume it. Interval i lasts `durations_s[i]` at `bandwidth_bps[i]`; after the
last interval the trace starts again from the first.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

MIN_INTERVAL_S = 1e-6  # shorter intervals are float noise, not a measurement (real traces: >= 1 ms)
# Bounds no measured network comes near, so that a trace's sums and products (bits carried, the mean) stay finite:
MAX_INTERVAL_S = 1e12  # about 31,700 years
MAX_BANDWIDTH_BPS = 1e15  # 1 Pbit/s


@dataclass(frozen=True, kw_only=True, slots=True, eq=False)
class Trace:
    """Piecewise-constant link capacity. Arrays are read-only float64 of equal length."""

    name: str
    durations_s: np.ndarray
    bandwidth_bps: np.ndarray
    latency_s: np.ndarray | None = None  # per-interval one-way request latency (Sabre), if known

    def __post_init__(self) -> None:
        durations = np.ascontiguousarray(self.durations_s, dtype=np.float64)
        bandwidth = np.ascontiguousarray(self.bandwidth_bps, dtype=np.float64)
        if durations.ndim != 1 or bandwidth.shape != durations.shape:
            raise ValueError(f"trace {self.name!r}: durations and bandwidths must be 1-D of equal length")
        if durations.size == 0:
            raise ValueError(f"trace {self.name!r} has no intervals")
        if not np.all(np.isfinite(durations)) or np.any(durations <= 0):
            raise ValueError(f"trace {self.name!r}: interval durations must be finite and > 0")
        if np.any(durations < MIN_INTERVAL_S):
            raise ValueError(f"trace {self.name!r}: an interval shorter than {MIN_INTERVAL_S * 1e6:g} us is no network trace "
                             f"(shortest: {float(durations.min()):.3g} s)")
        if float(durations.max()) > MAX_INTERVAL_S:
            raise ValueError(f"trace {self.name!r}: an interval of {float(durations.max()):.3g} s is no network trace "
                             f"(at most {MAX_INTERVAL_S:g} s)")
        if not np.all(np.isfinite(bandwidth)) or np.any(bandwidth < 0):
            raise ValueError(f"trace {self.name!r}: bandwidths must be finite and >= 0")
        if float(bandwidth.max()) > MAX_BANDWIDTH_BPS:
            raise ValueError(f"trace {self.name!r}: a bandwidth of {float(bandwidth.max()):.3g} bit/s is no network's "
                             f"(at most {MAX_BANDWIDTH_BPS:g} bit/s, 1 Pbit/s)")
        if not np.any(bandwidth > 0) or not float(np.dot(durations, bandwidth)) > 0:
            raise ValueError(f"trace {self.name!r}: bandwidth is zero everywhere")
        durations.setflags(write=False)
        bandwidth.setflags(write=False)
        object.__setattr__(self, "durations_s", durations)
        object.__setattr__(self, "bandwidth_bps", bandwidth)
        if self.latency_s is not None:
            latency = np.ascontiguousarray(self.latency_s, dtype=np.float64)
            if latency.shape != durations.shape:
                raise ValueError(f"trace {self.name!r}: latency must have one value per interval")
            if not np.all(np.isfinite(latency)) or np.any(latency < 0):
                raise ValueError(f"trace {self.name!r}: latencies must be finite and >= 0")
            latency.setflags(write=False)
            object.__setattr__(self, "latency_s", latency)

    @property
    def duration_s(self) -> float:
        """Length of one pass through the trace."""
        return float(self.durations_s.sum())

    @property
    def mean_bandwidth_bps(self) -> float:
        """Time-weighted mean capacity over one pass."""
        return float(np.dot(self.durations_s, self.bandwidth_bps) / self.durations_s.sum())

    @property
    def end_times_s(self) -> np.ndarray:
        """End time of each interval within one pass."""
        return np.cumsum(self.durations_s)

    def bandwidth_at(self, time_s: float) -> float:
        """Capacity at `time_s` (looped)."""
        index = self.interval_at(time_s)
        return float(self.bandwidth_bps[index])

    def latency_at(self, time_s: float) -> float:
        """Request latency at `time_s` (0 when the trace carries none)."""
        if self.latency_s is None:
            return 0.0
        return float(self.latency_s[self.interval_at(time_s)])

    def interval_at(self, time_s: float) -> int:
        offset = time_s % self.duration_s
        return min(int(np.searchsorted(self.end_times_s, offset, side="right")), self.durations_s.size - 1)

    def scaled(self, factor: float) -> Trace:
        """The same trace `factor` times faster: bandwidth x factor, durations and latency / factor."""
        if not factor > 0:
            raise ValueError(f"time scale must be > 0, got {factor}")
        return Trace(
            name=self.name,
            durations_s=self.durations_s / factor,
            bandwidth_bps=self.bandwidth_bps * factor,
            latency_s=None if self.latency_s is None else self.latency_s / factor,
        )

    def rotated(self, offset_s: float) -> Trace:
        """The trace started `offset_s` into itself (for per-session start offsets)."""
        offset = offset_s % self.duration_s
        if offset == 0:
            return self
        ends = self.end_times_s
        index = int(np.searchsorted(ends, offset, side="right"))
        index = min(index, self.durations_s.size - 1)
        start_of_interval = ends[index] - self.durations_s[index]
        head = ends[index] - offset
        durations = np.concatenate(
            ([head], self.durations_s[index + 1 :], self.durations_s[:index], [offset - start_of_interval])
        )
        order = np.r_[index, np.arange(index + 1, self.durations_s.size), np.arange(0, index), index]
        keep = durations > 0
        return Trace(
            name=self.name,
            durations_s=durations[keep],
            bandwidth_bps=self.bandwidth_bps[order][keep],
            latency_s=None if self.latency_s is None else self.latency_s[order][keep],
        )
