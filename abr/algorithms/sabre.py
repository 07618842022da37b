"""Sabre's algorithms behind abrkit's interface: the shared machinery and `sabre-throughput`.

Sabre (UMass-LIDS/sabre, src/sabre.py at 09b03bb; Spiteri, Sitaraman, Sparacio, "From Theory to
Practice: Improving Bitrate Adaptation in the DASH Reference Player", MMSys 2018) lets an `Abr` pick a
quality and a delay (`get_quality_delay`), tells it of every buffer-full wait (`report_delay`) and
finished or abandoned download (`report_download`), offers it each download in flight
(`check_abandon`), and shares the player's throughput and latency estimates as globals. `SabreAbr`
rebuilds those calls from observations, so each rule here reads as Sabre states it.

The rules compute in Sabre's units (ms, bits, kbit/s), converted at the boundary: BOLA-E's placeholder
puts the buffer level exactly on a BOLA threshold after an abandonment, and there the floating-point
rounding of Sabre's units decides between two qualities (bbb.json: q4, not q5, at q5's threshold).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from abr.algorithms.common import mbps
from abr.estimators import DownloadLog, SabreEwma, SabreSlidingWindow
from abr.registry import parameters_from, register
from abr.types import Decision, Download, Ladder, Observation, Progress

# ThroughputRule: safety_factor, low_buffer_safety_factor(_init), abandon_multiplier, abandon_grace_time.
THROUGHPUT_SAFETY = 0.9
IBR_SAFETY_START = 0.9  # the insufficient-buffer rule's factor starts here and shrinks x0.9 per decision...
IBR_SAFETY_FLOOR = 0.5  # ...down to this
ABANDON_MULTIPLIER = 1.8  # abandon when the download would take longer than 1.8 segment durations
ABANDON_GRACE_MS = 500.0
# Progress times are sums of float steps in seconds (Sabre checks every 50 ms, counting in ms): 0.02 + 0.03 +
# 9 x 0.05 s falls a hair short of 0.5 s where Sabre's 500 ms does not. A check this close has reached it.
GRACE_TOLERANCE_MS = 1e-6


@dataclass(frozen=True, kw_only=True, slots=True)
class SabreParams:
    """Sabre's command-line settings that reach its algorithms; the defaults are Sabre's."""

    buffer_size_s: float | None = None  # -b (Sabre: 25 s); None: the buffer cap of the first observation
    gamma_p: float = 5.0  # -gp: BOLA's gamma x p; utilities are ln(S_m / S_0)
    oscillation: str = "u"  # BOLA's up-switch cap: "u" BOLA-U (Sabre's default), "o" BOLA-O (-ao)
    basic: bool = False  # -ab: BOLA with V from the buffer size alone and no abandonment
    insufficient_buffer_rule: bool = True  # off with -noibr (BOLA-E then sets V and gp like BOLA)
    estimator: str = "ewma"  # -ma: ewma | sliding
    half_lives_s: tuple[float, float] = (3.0, 8.0)  # -hl (EWMA)
    window_sizes: tuple[int, ...] = (3,)  # -ws (sliding)

    def __post_init__(self) -> None:
        if self.buffer_size_s is not None and not self.buffer_size_s > 0:
            raise ValueError(f"buffer_size_s must be > 0 s, got {self.buffer_size_s}")
        if self.oscillation not in ("u", "o"):
            raise ValueError(f"oscillation must be 'u' (BOLA-U) or 'o' (BOLA-O), got {self.oscillation!r}")
        if self.estimator not in ("ewma", "sliding"):
            raise ValueError(f"unknown Sabre estimator {self.estimator!r}; choose ewma or sliding")
        if len(self.half_lives_s) != 2 or not all(h > 0 for h in self.half_lives_s):
            raise ValueError(f"half_lives_s must be two times > 0 s, got {self.half_lives_s}")
        SabreSlidingWindow(window_sizes=self.window_sizes)  # validates

    def make_estimator(self, ladder: Ladder) -> SabreEstimator:
        if self.estimator == "sliding":
            return SabreSlidingWindow(window_sizes=self.window_sizes)
        fast_s, slow_s = self.half_lives_s
        return SabreEwma(segment_duration_s=ladder.segment_duration_s, fast_half_life_s=fast_s,
                         slow_half_life_s=slow_s)


class SabreEstimator(Protocol):
    """Sabre's `ThroughputHistory`: completed downloads in, the `throughput` and `latency` globals out."""

    def feed(self, download: Download) -> None: ...

    def estimate_bps(self) -> float | None: ...

    def latency_s(self) -> float | None: ...


@dataclass(frozen=True, slots=True)
class SabreLadder:
    """A ladder in Sabre's units: `ManifestInfo.segment_time` (ms) and `bitrates` (kbit/s)."""

    segment_ms: float
    bitrates_kbps: tuple[float, ...]

    @classmethod
    def of(cls, ladder: Ladder) -> SabreLadder:
        return cls(ladder.segment_duration_s * 1000.0, tuple(b / 1000.0 for b in ladder.bitrates_bps))

    @property
    def top(self) -> int:
        return len(self.bitrates_kbps) - 1


@dataclass(frozen=True, kw_only=True, slots=True)
class Snapshot:
    """What a Sabre rule reads from the player's globals when it decides or checks a download."""

    buffer_ms: float  # get_buffer_level(), or the buffer level `check_abandon` is given
    segment_index: int
    segment_count: int  # len(manifest.segments) (0 when checking a download: unused there)
    throughput_kbps: float  # the estimator's `throughput`
    latency_ms: float  # the estimator's `latency`


@dataclass(frozen=True, kw_only=True, slots=True)
class SabreProgress:
    """Sabre's `DownloadProgress` of a download in flight (bits and ms)."""

    quality: int
    size_bits: float
    downloaded_bits: float
    time_ms: float  # since the request, time to first bit included
    time_to_first_bit_ms: float

    @classmethod
    def of(cls, progress: Progress, ttfb_s: float) -> SabreProgress:
        return cls(quality=progress.quality, size_bits=progress.size_bytes * 8.0,
                   downloaded_bits=progress.bytes_received * 8.0, time_ms=progress.elapsed_s * 1000.0,
                   time_to_first_bit_ms=ttfb_s * 1000.0)


class SabreRule(Protocol):
    """One of Sabre's `Abr` classes. `choose` returns (quality, delay in ms, reason); `report_download`
    gets the download's quality, its whole time (ms), the buffer level after it and, if it was
    abandoned, the quality it was abandoned for; `check_abandon` returns a lower quality or None."""

    def choose(self, now: Snapshot) -> tuple[int, float, str]: ...

    def report_delay(self, delay_ms: float) -> None: ...

    def report_download(self, quality: int, time_ms: float, buffer_ms: float, abandoned_to: int | None) -> None: ...

    def check_abandon(self, progress: SabreProgress, now: Snapshot) -> int | None: ...


def quality_from_throughput(ladder: SabreLadder, throughput_kbps: float, latency_ms: float) -> int:
    """`Abr.quality_from_throughput`: the highest quality whose segment, requested now, arrives within one
    segment duration: latency + duration x bitrate / throughput <= duration."""
    if not throughput_kbps > 0:
        return 0
    p = ladder.segment_ms
    rates = ladder.bitrates_kbps
    quality = 0
    while quality + 1 < len(rates) and latency_ms + p * rates[quality + 1] / throughput_kbps <= p:
        quality += 1
    return quality


def insufficient_buffer_cap(ladder: SabreLadder, quality: int, safe_bits: float) -> int:
    """Sabre's insufficient buffer rule: the first quality whose next rung's segment exceeds `safe_bits`
    (what the buffer, less one latency, pays for at a shrinking fraction of the throughput)."""
    for lower in range(quality):
        if ladder.bitrates_kbps[lower + 1] * ladder.segment_ms > safe_bits:
            return lower
    return quality


def kbps(rate_kbps: float) -> str:
    return mbps(rate_kbps * 1000.0)


class ThroughputRule:
    """Sabre `ThroughputRule`: the quality 0.9 x the estimate sustains (latency counted), capped by the
    insufficient buffer rule; abandons, after 0.5 s, a download heading past 1.8 segment durations for
    what 0.9 x its own rate sustains, if that segment is smaller than what is left."""

    def __init__(self, ladder: SabreLadder, params: SabreParams) -> None:
        self.ladder = ladder
        self.use_ibr = params.insufficient_buffer_rule
        self.ibr_safety = IBR_SAFETY_START

    def choose(self, now: Snapshot) -> tuple[int, float, str]:
        quality = quality_from_throughput(self.ladder, now.throughput_kbps * THROUGHPUT_SAFETY, now.latency_ms)
        reason = f"throughput {kbps(now.throughput_kbps)} x {THROUGHPUT_SAFETY:g} -> q{quality}"
        if self.use_ibr:
            safe_bits = self.ibr_safety * (now.buffer_ms - now.latency_ms) * now.throughput_kbps
            self.ibr_safety = max(self.ibr_safety * IBR_SAFETY_START, IBR_SAFETY_FLOOR)
            capped = insufficient_buffer_cap(self.ladder, quality, safe_bits)
            if capped < quality:
                quality, reason = capped, f"{reason}; insufficient buffer -> q{capped}"
        return quality, 0.0, reason

    def report_delay(self, delay_ms: float) -> None:
        pass

    def report_download(self, quality: int, time_ms: float, buffer_ms: float, abandoned_to: int | None) -> None:
        pass

    def check_abandon(self, progress: SabreProgress, now: Snapshot) -> int | None:
        transfer_ms = progress.time_ms - progress.time_to_first_bit_ms
        if progress.time_ms < ABANDON_GRACE_MS - GRACE_TOLERANCE_MS or not transfer_ms > 0:
            return None
        rate_kbps = progress.downloaded_bits / transfer_ms
        left_bits = progress.size_bits - progress.downloaded_bits
        if not rate_kbps > 0 or progress.time_ms + left_bits / rate_kbps <= ABANDON_MULTIPLIER * self.ladder.segment_ms:
            return None
        quality = quality_from_throughput(self.ladder, rate_kbps * THROUGHPUT_SAFETY, now.latency_ms)
        rates = self.ladder.bitrates_kbps
        if quality >= progress.quality or progress.size_bits * rates[quality] / rates[progress.quality] >= left_bits:
            return None
        return quality


class SabreAbr:
    """Runs a Sabre rule on observations: new downloads become `report_download` (abandoned ones
    included) and, when completed, estimator samples; the time between the last download's end and
    this decision is Sabre's buffer-full wait (`report_delay`). The first segment is quality 0
    (`get_first_quality`) and is never abandoned (Sabre fetches it with no abandonment check)."""

    name = "sabre"
    conformance_tags: frozenset[str] = frozenset()

    def __init__(self, params: SabreParams) -> None:
        self.params = params
        self._log = DownloadLog()
        self._ladder: Ladder | None = None
        self._rule: SabreRule | None = None
        self._estimator: SabreEstimator | None = None
        self._abandoned_to: int | None = None

    def build_rule(self, ladder: SabreLadder, buffer_size_ms: float) -> SabreRule:
        raise NotImplementedError

    def decide(self, obs: Observation) -> Decision:
        if len(obs.ladder) == 1:
            return Decision(quality=0, reason="one bitrate")
        rule, estimator = self._prepare(obs)
        self._report(rule, estimator, obs, self._log.new(obs.downloads))
        throughput_bps, latency_s = estimator.estimate_bps(), estimator.latency_s()
        if throughput_bps is None or latency_s is None:
            return Decision(quality=0, reason="no throughput sample yet: Sabre starts at q0")
        quality, delay_ms, reason = rule.choose(Snapshot(
            buffer_ms=obs.buffer_s * 1000.0, segment_index=obs.segment_index, segment_count=obs.segment_count,
            throughput_kbps=throughput_bps / 1000.0, latency_ms=latency_s * 1000.0))
        return Decision(quality=quality, delay_s=delay_ms / 1000.0, reason=reason)

    def _prepare(self, obs: Observation) -> tuple[SabreRule, SabreEstimator]:
        if self._rule is None or self._estimator is None or self._ladder != obs.ladder:
            buffer_size_s = self.params.buffer_size_s if self.params.buffer_size_s is not None else obs.buffer_cap_s
            self._ladder = obs.ladder
            self._rule = self.build_rule(SabreLadder.of(obs.ladder), buffer_size_s * 1000.0)
            self._estimator = self.params.make_estimator(obs.ladder)
        return self._rule, self._estimator

    def _report(self, rule: SabreRule, estimator: SabreEstimator, obs: Observation,
                new: Sequence[Download]) -> None:
        waited_s = 0.0
        for download in new:
            # Exact for the latest download (the buffer only played out since); Sabre decides after each one.
            waited_s = max(0.0, obs.time_s - (download.start_time_s + download.duration_s))
            abandoned_to = None
            if download.abandoned:  # abandoned by someone else than us: as deep a cut as Sabre's (to q0)
                abandoned_to = self._abandoned_to if self._abandoned_to is not None else 0
            rule.report_download(download.quality, download.duration_s * 1000.0, (obs.buffer_s + waited_s) * 1000.0,
                                 abandoned_to)
            if not download.abandoned:
                estimator.feed(download)
        self._abandoned_to = None
        if waited_s > 0:
            rule.report_delay(waited_s * 1000.0)

    def should_abandon(self, progress: Progress) -> Decision | None:
        rule, estimator = self._rule, self._estimator
        if rule is None or estimator is None or self._ladder != progress.ladder:
            return None
        throughput_bps, latency_s = estimator.estimate_bps(), estimator.latency_s()
        if throughput_bps is None or latency_s is None or progress.size_bytes <= 0:
            return None  # the first segment (or a size the player does not know)
        ttfb_s = progress.ttfb_s if progress.ttfb_s is not None else latency_s
        quality = rule.check_abandon(SabreProgress.of(progress, ttfb_s), Snapshot(
            buffer_ms=progress.buffer_s * 1000.0, segment_index=progress.segment_index, segment_count=0,
            throughput_kbps=throughput_bps / 1000.0, latency_ms=latency_s * 1000.0))
        if quality is None:
            return None
        self._abandoned_to = quality
        return Decision(quality=quality, reason=(f"abandon q{progress.quality} after {progress.bytes_received}/"
                                                 f"{progress.size_bytes} bytes in {progress.elapsed_s:.2f}s -> q{quality}"))


class SabreThroughput(SabreAbr):
    """Sabre's `throughput` algorithm."""

    name = "sabre-throughput"
    conformance_tags = frozenset({"bandwidth-monotone", "buffer-monotone"})
    conformance_variants: tuple[dict[str, object], ...] = (
        {}, {"insufficient_buffer_rule": False}, {"estimator": "sliding"})

    def build_rule(self, ladder: SabreLadder, buffer_size_ms: float) -> SabreRule:
        return ThroughputRule(ladder, self.params)


@parameters_from(SabreParams)
def make_sabre_throughput(**params: object) -> SabreThroughput:
    return SabreThroughput(SabreParams(**params))  # type: ignore[arg-type]


register("sabre-throughput", make_sabre_throughput,
         "Sabre's throughput rule: 0.9 x EWMA throughput (latency-aware) with the insufficient buffer rule")
