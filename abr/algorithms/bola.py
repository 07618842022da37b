"""`bola`: BOLA as dash.js implements it (BolaRule.js, v3/v4), with its placeholder buffer.

BOLA (Spiteri et al., INFOCOM 2016) picks the quality maximising (V (u_m + gamma p) - Q) / S_m for
buffer level Q; dash.js adds the placeholder buffer of BOLA-E and the BOLA-O oscillation guard (Spiteri,
Sitaraman, Sparacio, "From theory to practice", MMSys 2018). State is rebuilt from observations:
elapsed wall time is a difference of `time_s` values, never a clock.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum

from abr.algorithms.common import mbps
from abr.algorithms.dashjs import AbandonRule, DashContext, DashParams, buffer_before_append_s
from abr.registry import parameters_from, register
from abr.types import Decision, Download, Ladder, Observation, Progress


@dataclass(frozen=True, kw_only=True, slots=True)
class BolaParams(DashParams):
    """BolaRule.js constants, plus the player settings in `DashParams`."""

    # MINIMUM_BUFFER_S: BOLA prefers the lowest quality up to this buffer level and never delays below it.
    minimum_buffer_s: float = 10.0
    # MINIMUM_BUFFER_PER_BITRATE_LEVEL_S: the top quality is reached at >= 10 + 2 s per rung (22 s for 6).
    buffer_per_level_s: float = 2.0
    # PLACEHOLDER_BUFFER_DECAY: the placeholder shrinks by 1% per segment so it does not linger.
    placeholder_decay: float = 0.99

    def __post_init__(self) -> None:
        DashParams.__post_init__(self)
        if not self.minimum_buffer_s > 0:
            raise ValueError(f"minimum_buffer_s must be > 0 s, got {self.minimum_buffer_s}")
        if self.buffer_per_level_s < 0:
            raise ValueError(f"buffer_per_level_s must be >= 0 s, got {self.buffer_per_level_s}")
        if self.buffer_per_level_s == 0 and self.stable_buffer_s <= self.minimum_buffer_s:
            raise ValueError("the BOLA buffer target must exceed minimum_buffer_s: raise stable_buffer_s "
                             "or buffer_per_level_s")
        if not 0 < self.placeholder_decay <= 1:
            raise ValueError(f"placeholder_decay must be in (0, 1], got {self.placeholder_decay}")


def bola_min_level(vp: float, gp: float, utilities: Sequence[float], bitrates_bps: Sequence[int], quality: int) -> float:
    """The lowest buffer level at which BOLA's objective prefers `quality` to every lower quality: where
    (Vp (u_q + gp) - Q) / S_q = (Vp (u_i + gp) - Q) / S_i for the hardest i < q (0 for quality 0)."""
    rate_q, utility_q = bitrates_bps[quality], utilities[quality]
    level = 0.0
    for rate_i, utility_i in zip(bitrates_bps[:quality], utilities[:quality]):
        level = max(level, vp * (gp + (rate_q * utility_i - rate_i * utility_q) / (rate_q - rate_i)))
    return level


class _State(Enum):
    STARTUP = "startup"  # pick by throughput, set the placeholder to match
    STEADY = "steady"  # pick by (buffer + placeholder)


class BolaCore:
    """BolaRule's state machine for one ladder, fed events by `Bola` or `Dynamic`."""

    def __init__(self, ladder: Ladder, params: BolaParams) -> None:
        self.ladder = ladder
        self.params = params
        self.bitrates_bps = ladder.bitrates_bps
        # Utilities ln(S_m), shifted so the lowest is 1: the expressions for gp and Vp below assume it.
        self.utilities = tuple(math.log(b) - math.log(self.bitrates_bps[0]) + 1.0 for b in self.bitrates_bps)
        target_s = max(params.stable_buffer_s, params.minimum_buffer_s + params.buffer_per_level_s * len(ladder))
        # Choose gp and Vp so the lowest quality wins up to minimum_buffer_s and the top from target_s on:
        # Vp (u_0 + gp - 1) = minimum_buffer_s and Vp (u_top + gp - 1) = target_s (BolaRule calculateBolaParameters).
        self.gp = (self.utilities[-1] - 1.0) / (target_s / params.minimum_buffer_s - 1.0)
        self.vp = params.minimum_buffer_s / self.gp
        self.state = _State.STARTUP
        self.placeholder_s = 0.0
        self.last_quality = 0
        self._segment_loaded = False  # dash.js lastSegmentDurationS is known
        self._last_finish_s: float | None = None  # lastSegmentFinishTimeMs, until consumed
        self._last_call_s: float | None = None  # lastCallTimeMs

    # -- the BOLA objective ---------------------------------------------------------------------------

    def quality_for_level(self, level_s: float) -> int:
        """argmax_m (Vp (u_m + gp) - level) / S_m, ties to the higher quality as in dash.js (>=)."""
        best, best_score = 0, -math.inf
        for quality, (utility, bitrate) in enumerate(zip(self.utilities, self.bitrates_bps)):
            score = (self.vp * (utility + self.gp) - level_s) / bitrate
            if score >= best_score:
                best, best_score = quality, score
        return best

    def max_level_for(self, quality: int) -> float:
        """The highest buffer level at which BOLA still prefers downloading `quality` to waiting."""
        return self.vp * (self.utilities[quality] + self.gp)

    def min_level_for(self, quality: int) -> float:
        """The lowest buffer level at which BOLA prefers `quality` to every lower quality."""
        return bola_min_level(self.vp, self.gp, self.utilities, self.bitrates_bps, quality)

    # -- events (dash.js event handlers, here driven by observations) ---------------------------------------

    def on_seek(self) -> None:
        """PLAYBACK_SEEKING: start over."""
        self.state = _State.STARTUP
        self.placeholder_s = 0.0
        self._segment_loaded = False
        self._last_finish_s = None
        self._last_call_s = None

    def on_buffer_empty(self) -> None:
        """BUFFER_EMPTY: after a stall the placeholder must not keep the quality artificially high."""
        if self.state is _State.STEADY:
            self.placeholder_s = 0.0

    def on_segment_loaded(self, download: Download, buffer_before_s: float) -> None:
        """checkNewSegment: decay the placeholder and keep it below what the last quality justified."""
        self.last_quality = download.quality
        self._segment_loaded = True
        self._last_finish_s = download.start_time_s + download.duration_s
        self.placeholder_s *= self.params.placeholder_decay
        buffer_at_request_s = max(buffer_before_s, 0.0) + download.duration_s
        self.placeholder_s = min(self.placeholder_s, max(0.0, self.max_level_for(self.last_quality) - buffer_at_request_s))

    def on_abandoned(self, buffer_s: float, new_quality: int) -> None:
        """onFragmentLoadingAbandoned: deflate the placeholder to where BOLA just picks `new_quality`."""
        wanted_s = self.min_level_for(new_quality) if new_quality > 0 else self.params.minimum_buffer_s
        self.placeholder_s = min(self.placeholder_s, max(0.0, wanted_s - buffer_s))

    def apply(self, obs: Observation, new: Sequence[Download], abandon_quality: int | None) -> None:
        """Dispatch the events an observation implies, in the order dash.js sees them."""
        for download in new:
            if download.abandoned:
                self.on_abandoned(obs.buffer_s, self.last_quality if abandon_quality is None else abandon_quality)
        completed = [d for d in new if not d.abandoned]
        if completed:
            before_s = buffer_before_append_s(obs, completed[-1])
            if before_s <= 1e-9:  # the buffer ran dry while it downloaded
                self.on_buffer_empty()
            self.on_segment_loaded(completed[-1], before_s)
        if obs.rebuffering:
            self.on_buffer_empty()

    # -- getMaxIndex ----------------------------------------------------------------------------------------

    def choose(self, obs: Observation, safe_bps: float, throughput_quality: int) -> tuple[int, float, str]:
        """Quality, delay before fetching (s) and a reason; `throughput_quality` is the quality the
        safe throughput sustains (AbrController.getQualityForBitrate)."""
        buffer_s = obs.buffer_s
        if self.state is _State.STARTUP:
            quality = throughput_quality
            self.placeholder_s = max(0.0, self.min_level_for(quality) - buffer_s)
            self.last_quality = quality
            if self._segment_loaded and buffer_s >= self.ladder.segment_duration_s:
                self.state = _State.STEADY
            return quality, 0.0, f"startup: safe {mbps(safe_bps)} -> q{quality}"
        self._grow_placeholder(obs.time_s)
        level_s = buffer_s + self.placeholder_s
        quality = self.quality_for_level(level_s)
        note = ""
        # BOLA-O: never switch *up* past what the throughput sustains, and never drop below the last quality
        # for that reason (it only damps oscillation between two rungs around the bandwidth).
        if quality > self.last_quality and quality > throughput_quality:
            quality = max(throughput_quality, self.last_quality)
            note = f", capped by {mbps(safe_bps)}"
        # Waiting is better than filling the buffer with low quality: spend the placeholder first.
        delay_s = max(0.0, level_s - self.max_level_for(quality))
        if delay_s <= self.placeholder_s:
            self.placeholder_s -= delay_s
            delay_s = 0.0
        else:
            delay_s -= self.placeholder_s
            self.placeholder_s = 0.0
            if quality == self.ladder.top:
                delay_s = 0.0  # at the top, the player's buffer target decides how far to fill
        self.last_quality = quality
        reason = f"buffer {buffer_s:.1f}s + placeholder {level_s - buffer_s:.1f}s -> q{quality}{note}"
        if delay_s > 0:
            reason += f", wait {delay_s:.1f}s"
        return quality, delay_s, reason

    def _grow_placeholder(self, now_s: float) -> None:
        """updatePlaceholderBuffer: time not spent downloading (a buffer-full wait, a pause) must not
        move the decision, so it goes into the placeholder."""
        if self._last_finish_s is not None:
            self.placeholder_s += max(0.0, now_s - self._last_finish_s)
        elif self._last_call_s is not None:
            self.placeholder_s += max(0.0, now_s - self._last_call_s)
        self._last_call_s = now_s
        self._last_finish_s = None


class DashAbr:
    """What `bola` and `dynamic` share: the dash.js context, the BOLA core, rule caps and abandonment."""

    name = "dash"
    conformance_tags: frozenset[str] = frozenset({"bandwidth-monotone"})

    def __init__(self, params: BolaParams) -> None:
        self.params = params
        self._context = DashContext(params)
        self._abandon = AbandonRule(params)
        self._abandon_quality: int | None = None
        self._core: BolaCore | None = None

    def decide(self, obs: Observation) -> Decision:
        if len(obs.ladder) == 1:
            return Decision(quality=0, reason="one bitrate")
        new, seeked = self._context.observe(obs)
        if self._core is not None and self._core.ladder is not obs.ladder and self._core.ladder != obs.ladder:
            self._core = None
        if self._core is not None:
            if seeked:
                self._core.on_seek()
            self._core.apply(obs, new, self._abandon_quality)
        retry_cap = self._abandon_quality if any(d.abandoned for d in new) else None
        self._abandon_quality = None
        throughput_bps = self._context.throughput_bps()
        if throughput_bps is None:
            quality = obs.last_quality or 0
            return Decision(quality=quality, reason=f"no throughput sample yet -> q{quality}")
        quality, delay_s, reason = self._rule(obs, throughput_bps)
        cap = self._context.insufficient_buffer_cap(obs, throughput_bps)
        if cap is not None and cap < quality:
            quality, reason = cap, f"{reason}; insufficient buffer -> q{cap}"
        if retry_cap is not None and retry_cap < quality:
            quality, reason = retry_cap, f"{reason}; retry after abandon -> q{retry_cap}"
        return Decision(quality=quality, delay_s=delay_s, reason=reason)

    def _rule(self, obs: Observation, throughput_bps: float) -> tuple[int, float, str]:
        raise NotImplementedError

    def _bola(self, obs: Observation, throughput_bps: float) -> tuple[int, float, str]:
        if self._core is None:
            self._core = BolaCore(obs.ladder, self.params)
        safe_bps = throughput_bps * self.params.safety
        return self._core.choose(obs, safe_bps, self._context.quality_for(obs.ladder, safe_bps))

    def should_abandon(self, progress: Progress) -> Decision | None:
        if not self.params.abandon:
            return None
        decision = self._abandon.check(progress)
        if decision is not None:
            self._abandon_quality = decision.quality
        return decision


class Bola(DashAbr):
    """dash.js BOLA alone (ABR strategy "abrBola"): BolaRule plus InsufficientBufferRule."""

    name = "bola"
    conformance_tags = frozenset({"bandwidth-monotone", "buffer-monotone"})
    conformance_variants: tuple[dict[str, object], ...] = ({}, {"estimator": "window", "dead_time_latency": False})

    def _rule(self, obs: Observation, throughput_bps: float) -> tuple[int, float, str]:
        return self._bola(obs, throughput_bps)


@parameters_from(BolaParams)
def make_bola(**params: object) -> Bola:
    return Bola(BolaParams(**params))  # type: ignore[arg-type]


register("bola", make_bola, "BOLA as in dash.js: buffer-based utility maximisation with placeholder buffer")
