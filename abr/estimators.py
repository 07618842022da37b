"""Throughput estimators: finished downloads in, a bandwidth estimate in bit/s out.

An estimator is fed downloads oldest first (`feed`) and read with `estimate_bps` (None before any
usable sample). It holds only what it was fed, so an algorithm that feeds it the downloads of its
observations (`DownloadLog` finds the new ones) stays a function of those observations.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np

from abr.types import Download

# dash.js ThroughputHistory / ThroughputModel: a zero transfer time is clamped to 1 ms ("avoid infinity").
_MIN_TRANSFER_S = 1e-3


def throughput_bps(size_bytes: float, duration_s: float) -> float:
    """One per-sample throughput in bit/s: `size_bytes` over `duration_s` seconds. The one place the
    rule is written (estimators, the players' overlays and CMCD, the simulator's reports); callers
    decide what a non-positive time means, so one raises ValueError here."""
    if not duration_s > 0:
        raise ValueError(f"a throughput sample needs a time > 0 s, got {duration_s!r}")
    return size_bytes * 8.0 / duration_s


def throughput_bps_array(size_bytes: np.ndarray, duration_s: np.ndarray) -> np.ndarray:
    """`throughput_bps` element-wise (the same operations, so batch and scalar samples round alike)."""
    if np.any(~(duration_s > 0)):
        raise ValueError("throughput samples need times > 0 s")
    return size_bytes * 8.0 / duration_s


def sample_bps(download: Download, *, exclude_ttfb: bool = False) -> float | None:
    """One throughput sample: bits over the whole request time, or over the time after the first
    byte (`exclude_ttfb`, dash.js `useDeadTimeLatency`). None when the time is not positive.

    A chunked low-latency download whose driver measured the time the network was busy with it
    (`Download.active_s`, `chunk_active_s`) is measured over that instead, whatever `exclude_ttfb`
    says: as in dash.js, where the low-latency throughput mode applies to every rule."""
    if download.active_s is not None:
        return throughput_bps(download.size_bytes, max(download.active_s, _MIN_TRANSFER_S))
    if not download.duration_s > 0:
        return None
    if not exclude_ttfb:
        return throughput_bps(download.size_bytes, download.duration_s)
    return throughput_bps(download.size_bytes, max(download.duration_s - download.ttfb_s, _MIN_TRANSFER_S))


def transfer_s(download: Download) -> float:
    """Time from first to last byte (dash.js weighs its EWMA by it), at least 1 ms; a chunked
    download's active time where known (`sample_bps`)."""
    if download.active_s is not None:
        return max(download.active_s, _MIN_TRANSFER_S)
    return max(download.duration_s - download.ttfb_s, _MIN_TRANSFER_S)


@dataclass(frozen=True, kw_only=True, slots=True)
class ChunkArrival:
    """One CMAF chunk of a low-latency download as the player saw it arrive: the time (s, any clock)
    its first and last bytes came in, and its size."""

    first_byte_s: float
    last_byte_s: float
    size_bytes: int

    def __post_init__(self) -> None:
        if not self.last_byte_s >= self.first_byte_s or self.size_bytes < 0:
            raise ValueError(f"a chunk needs last byte >= first byte and size >= 0, got {self}")


def chunk_active_s(chunks: Sequence[ChunkArrival]) -> float:
    """The time the network was busy delivering `chunks` (arrival order): the union of their
    first-to-last-byte intervals. The idle gaps between chunks, while the encoder had not made the
    next one yet, are left out: a segment fetched at the live edge takes its whole duration to arrive
    however fast the link is, so bytes over the request time measures the encoder, not the network.

    This is dash.js's low-latency rule (`abrFetchThroughputCalculationMoofParsing`: per chunk, from
    the `moof` to the end of its `mdat`) and the measurement of the MMSys 2020 Grand Challenge entries
    (LoL: Lim et al., "When They Go High, We Go Low", MMSys 2020, section 3.2; ACTE: Bentaleb et al.,
    NOSSDAV 2019). At least 1 ms, as dash.js clamps a zero transfer time."""
    active = 0.0
    covered_to = -math.inf
    for chunk in chunks:
        start = max(chunk.first_byte_s, covered_to)
        if chunk.last_byte_s > start:
            active += chunk.last_byte_s - start
        covered_to = max(covered_to, chunk.last_byte_s)
    return max(active, _MIN_TRANSFER_S)


@runtime_checkable
class ThroughputEstimator(Protocol):
    """Fed finished downloads oldest first; estimates the throughput of the next one in bit/s."""

    def feed(self, download: Download) -> None: ...

    def estimate_bps(self) -> float | None: ...


def harmonic_mean(values: Sequence[float]) -> float:
    """Harmonic mean summed oldest first and written as Pensieve writes it (1 / (sum(1/x) / n)), so
    estimates round exactly as in the reference. A zero sample makes the mean zero."""
    if any(v <= 0 for v in values):
        return 0.0
    total = 0.0
    for value in values:
        total += 1.0 / value
    return 1.0 / (total / len(values))


class _WindowMean:
    """Some mean of the last `window` samples (fewer at start)."""

    def __init__(self, *, window: int, exclude_ttfb: bool = False) -> None:
        if window < 1:
            raise ValueError(f"{type(self).__name__} window must be >= 1 sample, got {window}")
        self.exclude_ttfb = exclude_ttfb
        self._samples: deque[float] = deque(maxlen=window)

    def feed(self, download: Download) -> None:
        sample = sample_bps(download, exclude_ttfb=self.exclude_ttfb)
        if sample is not None:
            self._samples.append(sample)

    def estimate_bps(self) -> float | None:
        return self._mean(self._samples) if self._samples else None

    def _mean(self, samples: Sequence[float]) -> float:
        raise NotImplementedError


class HarmonicMean(_WindowMean):
    """Harmonic mean of the last `window` samples (Pensieve's rate and MPC predictors)."""

    def __init__(self, *, window: int = 5, exclude_ttfb: bool = False) -> None:
        super().__init__(window=window, exclude_ttfb=exclude_ttfb)

    def _mean(self, samples: Sequence[float]) -> float:
        return harmonic_mean(samples)


class SlidingWindowMean(_WindowMean):
    """Arithmetic mean of the last `window` samples. The default 4 is dash.js ThroughputHistory's
    AVERAGE_THROUGHPUT_SAMPLE_AMOUNT_VOD (without its widening when samples vary by 1.3x)."""

    def __init__(self, *, window: int = 4, exclude_ttfb: bool = False) -> None:
        super().__init__(window=window, exclude_ttfb=exclude_ttfb)

    def _mean(self, samples: Sequence[float]) -> float:
        return sum(samples) / len(samples)


class ChunkedThroughput(_WindowMean):
    """The live low-latency estimator: the arithmetic mean of the last `window` samples, each over a
    chunked download's active time (`sample_bps`, `chunk_active_s`) or, for a whole segment, over
    its transfer after the first byte. dash.js averages 3 samples for live streams
    (ThroughputHistory AVERAGE_THROUGHPUT_SAMPLE_AMOUNT_LIVE)."""

    def __init__(self, *, window: int = 3, exclude_ttfb: bool = True) -> None:
        super().__init__(window=window, exclude_ttfb=exclude_ttfb)

    def _mean(self, samples: Sequence[float]) -> float:
        return sum(samples) / len(samples)


class _Ewma:
    """dash.js's two-speed EWMA state: weight-decayed fast/slow averages plus the total weight."""

    __slots__ = ("fast_half_life", "slow_half_life", "fast", "slow", "total_weight")

    def __init__(self, fast_half_life: float, slow_half_life: float) -> None:
        if not (fast_half_life > 0 and slow_half_life > 0):
            raise ValueError(f"EWMA half-lives must be > 0, got fast={fast_half_life}, slow={slow_half_life}")
        self.fast_half_life = fast_half_life
        self.slow_half_life = slow_half_life
        self.fast = 0.0
        self.slow = 0.0
        self.total_weight = 0.0

    def update(self, value: float, weight: float) -> None:
        fast_alpha = 0.5 ** (weight / self.fast_half_life)
        self.fast = (1 - fast_alpha) * value + fast_alpha * self.fast
        slow_alpha = 0.5 ** (weight / self.slow_half_life)
        self.slow = (1 - slow_alpha) * value + slow_alpha * self.slow
        self.total_weight += weight

    def corrected(self) -> tuple[float, float] | None:
        """Both averages divided by 1 - 0.5^(W/h): they start at 0, which would bias early estimates low."""
        if self.total_weight <= 0:
            return None
        fast = self.fast / (1 - 0.5 ** (self.total_weight / self.fast_half_life))
        slow = self.slow / (1 - 0.5 ** (self.total_weight / self.slow_half_life))
        return fast, slow


class DashEwma:
    """dash.js throughput EWMA (ThroughputHistory.getAverageEwma; ThroughputModel in v5).

    Each sample is weighted by its transfer time in seconds; half-lives are 3 s (fast) and 8 s (slow)
    of download time (EWMA_THROUGHPUT_{FAST,SLOW}_HALF_LIFE_SECONDS), and the estimate is
    min(fast, slow): quick to fall, slow to rise.
    """

    def __init__(self, *, fast_half_life_s: float = 3.0, slow_half_life_s: float = 8.0,
                 exclude_ttfb: bool = False) -> None:
        self.exclude_ttfb = exclude_ttfb
        self._ewma = _Ewma(fast_half_life_s, slow_half_life_s)

    def feed(self, download: Download) -> None:
        sample = sample_bps(download, exclude_ttfb=self.exclude_ttfb)
        if sample is not None:
            self._ewma.update(sample, transfer_s(download))

    def estimate_bps(self) -> float | None:
        averages = self._ewma.corrected()
        return min(averages) if averages is not None else None


class LatencyEwma:
    """dash.js request-latency EWMA in seconds: one unit of weight per request, half-lives of 1 and 2
    requests (EWMA_LATENCY_{FAST,SLOW}_HALF_LIFE_COUNT), estimate max(fast, slow): pessimistic."""

    def __init__(self, *, fast_half_life: float = 1.0, slow_half_life: float = 2.0) -> None:
        self._ewma = _Ewma(fast_half_life, slow_half_life)

    def feed(self, download: Download) -> None:
        # dash.js: `(tresponse - trequest) || 1` ms, so a zero TTFB still counts as 1 ms.
        self._ewma.update(download.ttfb_s if download.ttfb_s > 0 else 1e-3, 1.0)

    def estimate_s(self) -> float | None:
        averages = self._ewma.corrected()
        return max(averages) if averages is not None else None


class SabreEwma:
    """Sabre's default throughput and latency estimate (sabre.py `Ewma`, `-ma ewma -hl 3 8`).

    Throughput: a sample is bits over transfer time (TTFB excluded), weighted by that transfer time,
    with half-lives of 3 s (fast) and 8 s (slow) of download time; the estimate is the lower
    bias-corrected average (as `DashEwma` with `exclude_ttfb`, but without its 1 ms floor).
    Latency: a sample is the TTFB, one unit of weight per request, with the same half-lives counted
    in segment durations (3 s / 3 s segments = 1 request, 8 s = 2.67 requests); the estimate is
    the higher average. A download with no transfer time is not a sample (Sabre would divide by 0).
    """

    def __init__(self, *, segment_duration_s: float, fast_half_life_s: float = 3.0,
                 slow_half_life_s: float = 8.0) -> None:
        if not segment_duration_s > 0:
            raise ValueError(f"segment duration must be > 0 s, got {segment_duration_s}")
        self._throughput = _Ewma(fast_half_life_s, slow_half_life_s)
        self._latency = _Ewma(fast_half_life_s / segment_duration_s, slow_half_life_s / segment_duration_s)

    def feed(self, download: Download) -> None:
        transfer = download.duration_s - download.ttfb_s
        if transfer > 0:
            self._throughput.update(download.size_bytes * 8.0 / transfer, transfer)
            self._latency.update(download.ttfb_s, 1.0)

    def estimate_bps(self) -> float | None:
        averages = self._throughput.corrected()
        return min(averages) if averages is not None else None

    def latency_s(self) -> float | None:
        averages = self._latency.corrected()
        return max(averages) if averages is not None else None


class SabreSlidingWindow:
    """Sabre's alternative estimate (sabre.py `SlidingWindow`, `-ma sliding -ws 3`): for each window
    size, the plain mean of the last that many samples (TTFB-excluded throughput, and TTFB); the
    estimate is the lowest throughput mean and the highest latency mean. Sabre keeps 20 samples."""

    MAX_STORED = 20  # SlidingWindow.max_store

    def __init__(self, *, window_sizes: Sequence[int] = (3,)) -> None:
        if not window_sizes or any(size < 1 for size in window_sizes):
            raise ValueError(f"window sizes must be >= 1 sample, got {tuple(window_sizes)}")
        self.window_sizes = tuple(window_sizes)
        self._throughputs: deque[float] = deque(maxlen=self.MAX_STORED)
        self._latencies: deque[float] = deque(maxlen=self.MAX_STORED)

    def feed(self, download: Download) -> None:
        transfer = download.duration_s - download.ttfb_s
        if transfer > 0:
            self._throughputs.append(download.size_bytes * 8.0 / transfer)
            self._latencies.append(download.ttfb_s)

    def _means(self, samples: deque[float]) -> list[float]:
        recent = list(samples)
        return [sum(recent[-size:]) / len(recent[-size:]) for size in self.window_sizes]

    def estimate_bps(self) -> float | None:
        return min(self._means(self._throughputs)) if self._throughputs else None

    def latency_s(self) -> float | None:
        return max(self._means(self._latencies)) if self._latencies else None


class Safe:
    """Another estimator scaled by a safety factor in (0, 1] (dash.js bandwidthSafetyFactor 0.9)."""

    def __init__(self, inner: ThroughputEstimator, *, factor: float) -> None:
        if not 0 < factor <= 1:
            raise ValueError(f"safety factor must be in (0, 1], got {factor}")
        self.inner = inner
        self.factor = factor

    def feed(self, download: Download) -> None:
        self.inner.feed(download)

    def estimate_bps(self) -> float | None:
        estimate = self.inner.estimate_bps()
        return estimate * self.factor if estimate is not None else None


@dataclass(frozen=True, kw_only=True, slots=True)
class EstimatorConfig:
    """Which estimator an algorithm builds: `kind` harmonic | ewma | window, `window` samples
    (harmonic/window; None = the kind's default), `safety` factor, and whether samples exclude TTFB."""

    kind: str = "harmonic"
    window: int | None = None
    safety: float = 1.0
    exclude_ttfb: bool = False

    def __post_init__(self) -> None:
        if self.kind not in _KINDS:
            raise ValueError(f"unknown throughput estimator {self.kind!r}; choose from {', '.join(_KINDS)}")
        if self.window is not None and (self.kind == "ewma" or self.window < 1):
            raise ValueError(f"window must be >= 1 sample and only applies to harmonic/window, got {self.window}")
        if not 0 < self.safety <= 1:
            raise ValueError(f"safety factor must be in (0, 1], got {self.safety}")

    def build(self) -> ThroughputEstimator:
        """A fresh estimator with this configuration."""
        kwargs: dict[str, object] = {"exclude_ttfb": self.exclude_ttfb}
        if self.window is not None:
            kwargs["window"] = self.window
        estimator: ThroughputEstimator = _KINDS[self.kind](**kwargs)
        return Safe(estimator, factor=self.safety) if self.safety != 1.0 else estimator


_KINDS: dict[str, Callable[..., ThroughputEstimator]] = {
    "harmonic": HarmonicMean,
    "ewma": DashEwma,
    "window": SlidingWindowMean,
    "chunked": ChunkedThroughput,
}


def estimate(config: EstimatorConfig, downloads: Sequence[Download]) -> float | None:
    """The estimate after feeding `downloads` to a fresh estimator (a pure function of them)."""
    estimator = config.build()
    for download in downloads:
        estimator.feed(download)
    return estimator.estimate_bps()


class DownloadLog:
    """Picks out, from each observation's recent downloads, those not seen in earlier observations.

    Downloads only ever append to the history, so everything after the last download seen before is
    new; if that one has left the history window (or nothing was seen yet), all of them are new.
    """

    __slots__ = ("_last",)

    def __init__(self) -> None:
        self._last: Download | None = None

    def new(self, downloads: Sequence[Download]) -> Sequence[Download]:
        if not downloads:
            return ()
        last = self._last
        self._last = downloads[-1]
        if last is None:
            return downloads
        for i in range(len(downloads) - 1, -1, -1):
            if downloads[i] == last:
                return downloads[i + 1:]
        return downloads
