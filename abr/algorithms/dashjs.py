"""dash.js machinery shared by `bola` and `dynamic` (dash.js v4, src/streaming/rules/abr/ and
controllers/AbrController.js): throughput and latency history, the quality for a bitrate, the
InsufficientBufferRule cap and the AbandonRequestsRule, all driven by observations instead of events.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from abr.algorithms.common import mbps
from abr.estimators import DownloadLog, EstimatorConfig, LatencyEwma, ThroughputEstimator
from abr.types import Decision, Download, Ladder, Observation, Progress

# InsufficientBufferRule.js INSUFFICIENT_BUFFER_SAFETY_FACTOR and SEGMENT_IGNORE_COUNT.
INSUFFICIENT_BUFFER_SAFETY = 0.5
INSUFFICIENT_BUFFER_IGNORED_SEGMENTS = 2
# AbandonRequestsRule.js: ABANDON_MULTIPLIER, GRACE_TIME_THRESHOLD (ms), MIN_LENGTH_TO_AVERAGE.
ABANDON_MULTIPLIER = 1.8
ABANDON_GRACE_S = 0.5
ABANDON_MIN_PROGRESS_SAMPLES = 5


@dataclass(frozen=True, kw_only=True, slots=True)
class DashParams:
    """Player-wide dash.js settings (Settings.js defaults) shared by its throughput and BOLA rules."""

    stable_buffer_s: float = 12.0  # streaming.buffer.stableBufferTime
    safety: float = 0.9  # streaming.abr.bandwidthSafetyFactor
    estimator: str = "ewma"  # throughput average: ewma (v5 default) | window (v4 sliding window) | harmonic
    dead_time_latency: bool = True  # streaming.abr.useDeadTimeLatency: samples exclude TTFB, rate discounted
    insufficient_buffer_rule: bool = True  # also apply InsufficientBufferRule (dash.js takes the min of rules)
    abandon: bool = True  # offer AbandonRequestsRule through should_abandon

    def __post_init__(self) -> None:
        if not self.stable_buffer_s > 0:
            raise ValueError(f"stable_buffer_s must be > 0 s, got {self.stable_buffer_s}")
        if not 0 < self.safety <= 1:
            raise ValueError(f"safety must be in (0, 1], got {self.safety}")
        EstimatorConfig(kind=self.estimator)  # validates the name

    def estimator_config(self) -> EstimatorConfig:
        return EstimatorConfig(kind=self.estimator, exclude_ttfb=self.dead_time_latency)


def quality_for_bitrate(ladder: Ladder, bitrate_bps: float, latency_s: float | None, *, dead_time: bool) -> int:
    """AbrController.getQualityForBitrate: with dead-time latency, a request that waits `latency_s`
    of each segment duration can only use the rest of it, so the rate is scaled by (1 - latency/duration)."""
    if dead_time and latency_s:
        duration_s = ladder.segment_duration_s
        if latency_s > duration_s:
            return 0
        bitrate_bps *= 1 - latency_s / duration_s
    return ladder.highest_at_most(bitrate_bps)


class DashContext:
    """What dash.js's AbrController and ThroughputHistory keep per media type, rebuilt from observations:
    the throughput and latency histories, segments loaded since start or seek, and seek detection."""

    def __init__(self, params: DashParams) -> None:
        self.params = params
        self._log = DownloadLog()
        self._throughput: ThroughputEstimator = params.estimator_config().build()
        self._latency = LatencyEwma()
        self._last_segment: int | None = None
        self.loaded_since_seek = 0

    def observe(self, obs: Observation) -> tuple[Sequence[Download], bool]:
        """Feed the observation's new downloads; returns them and whether playback jumped (a seek)."""
        new = self._log.new(obs.downloads)
        for download in new:
            self._throughput.feed(download)
            self._latency.feed(download)
        # Segments are decided in order; a retry (abandon, failure) decides the same one again.
        seeked = self._last_segment is not None and obs.segment_index not in (self._last_segment,
                                                                              self._last_segment + 1)
        if seeked:
            self.loaded_since_seek = 0
        self.loaded_since_seek += sum(1 for d in new if not d.abandoned)
        self._last_segment = obs.segment_index
        return new, seeked

    def throughput_bps(self) -> float | None:
        return self._throughput.estimate_bps()

    def latency_s(self) -> float | None:
        return self._latency.estimate_s()

    def quality_for(self, ladder: Ladder, bitrate_bps: float) -> int:
        return quality_for_bitrate(ladder, bitrate_bps, self.latency_s(), dead_time=self.params.dead_time_latency)

    def insufficient_buffer_cap(self, obs: Observation, throughput_bps: float) -> int | None:
        """InsufficientBufferRule: at most what the buffer can pay for at half the average throughput
        (quality 0 on an empty buffer); silent for the first two segments after start or seek."""
        if not self.params.insufficient_buffer_rule or self.loaded_since_seek < INSUFFICIENT_BUFFER_IGNORED_SEGMENTS:
            return None
        if obs.rebuffering:
            return 0
        budget_bps = throughput_bps * (obs.buffer_s / obs.ladder.segment_duration_s) * INSUFFICIENT_BUFFER_SAFETY
        return self.quality_for(obs.ladder, budget_bps)


def buffer_before_append_s(obs: Observation, download: Download) -> float:
    """Estimated buffer when `download` finished, before its segment was added: the buffer now, plus
    what played out since it finished, minus the segment it added."""
    finished_s = download.start_time_s + download.duration_s
    return obs.buffer_s + max(obs.time_s - finished_s, 0.0) - obs.ladder.segment_duration_s


class AbandonRule:
    """AbandonRequestsRule.js: give up a download that will take longer than 1.8 segment durations at
    the rate measured so far, if a lower quality (at 0.9 of that rate) would need fewer bytes than are
    left. Needs 5 progress reports and 0.5 s of transfer first; abandons each segment at most once."""

    def __init__(self, params: DashParams) -> None:
        self.params = params
        self._segment: tuple[int, int] | None = None
        self._samples_bps: list[float] = []
        self._abandoned: set[int] = set()

    def check(self, progress: Progress) -> Decision | None:
        if progress.buffer_s > self.params.stable_buffer_s:
            return None
        key = (progress.segment_index, progress.quality)
        if key != self._segment:
            self._segment = key
            self._samples_bps = []
        if progress.bytes_received > 0 and progress.elapsed_s > 0:
            self._samples_bps.append(progress.bytes_received * 8.0 / progress.elapsed_s)
        if (len(self._samples_bps) < ABANDON_MIN_PROGRESS_SAMPLES or progress.elapsed_s <= ABANDON_GRACE_S
                or not 0 < progress.bytes_received < progress.size_bytes):
            return None
        measured_bps = sum(self._samples_bps) / len(self._samples_bps)
        ladder = progress.ladder
        expected_s = progress.size_bytes * 8.0 / measured_bps
        if (expected_s < ladder.segment_duration_s * ABANDON_MULTIPLIER or progress.quality == 0
                or progress.segment_index in self._abandoned):
            return None
        quality = ladder.highest_at_most(measured_bps * self.params.safety)
        rates = ladder.bitrates_bps
        other_total_bytes = progress.size_bytes * rates[quality] / rates[progress.quality]
        if progress.size_bytes - progress.bytes_received <= other_total_bytes:
            return None
        self._abandoned.add(progress.segment_index)
        return Decision(quality=quality, reason=f"abandon: {mbps(measured_bps)} needs {expected_s:.1f}s -> q{quality}")
