"""Sabre's BOLA family: `sabre-bola` (BOLA-U), `bola-o` and `bola-e` (UMass-LIDS/sabre src/sabre.py, 09b03bb).

BOLA (Spiteri, Urgaonkar, Sitaraman, INFOCOM 2016) downloads the quality maximising
(V (u_m + gamma p) - Q) / S_m at buffer level Q. The MMSys 2018 paper ("From Theory to Practice")
adds what the names say: BOLA-O avoids oscillation when the bandwidth lies between two rungs by never
switching up past the quality the throughput sustains, pausing instead so the buffer does not grow
into the next up-switch (Sabre `-ao`; dash.js 2.6 "BOLA-O variant"); BOLA-U, Sabre's default, lets an
up-switch go one rung past it; BOLA-E (Sabre `bolae`) adds the placeholder buffer, V and gp from a
10 s minimum and 2 s per rung, the insufficient buffer rule and a latency-aware abandonment rule.
"""

from __future__ import annotations

import math

from abr.algorithms.bola import bola_min_level
from abr.algorithms.sabre import (
    IBR_SAFETY_FLOOR,
    IBR_SAFETY_START,
    SabreAbr,
    SabreLadder,
    SabreParams,
    SabreProgress,
    SabreRule,
    Snapshot,
    insufficient_buffer_cap,
    kbps,
    quality_from_throughput,
)
from abr.registry import parameters_from, register

# BolaEnh.minimum_buffer and minimum_buffer_per_level.
BOLA_E_MINIMUM_BUFFER_MS = 10000.0
BOLA_E_BUFFER_PER_LEVEL_MS = 2000.0
# Bola.get_quality_delay: with few segments left (or just started), V shrinks to fit half of them, >= 3.
BOLA_HORIZON_MIN_SEGMENTS = 3


def bola_quality(vp: float, gp: float, utilities: tuple[float, ...], ladder: SabreLadder, level_ms: float) -> int:
    """argmax_m (Vp (u_m + gp) - level) / S_m; a tie keeps the lower quality (Sabre's strict `>`,
    where dash.js's `>=` takes the higher one)."""
    best, best_score = 0, -math.inf
    for quality, (utility, bitrate) in enumerate(zip(utilities, ladder.bitrates_kbps)):
        score = (vp * (utility + gp) - level_ms) / bitrate
        if score > best_score:
            best, best_score = quality, score
    return best


def log_utilities(ladder: SabreLadder, lowest: float) -> tuple[float, ...]:
    """ln(S_m) shifted so the lowest rung has utility `lowest`, summed in Sabre's order."""
    offset = lowest - math.log(ladder.bitrates_kbps[0])
    return tuple(math.log(b) + offset for b in ladder.bitrates_kbps)


def _seconds(ms: float) -> str:
    return f"{ms / 1000.0:.1f}s"


class BolaRule:
    """Sabre `Bola`: V from the buffer size (or, unless basic, from half the segments left, >= 3); the
    up-switch cap of BOLA-U or BOLA-O (with its pause); abandonment to a lower quality whose whole
    segment beats what is left of this one in BOLA's objective (not when basic)."""

    def __init__(self, ladder: SabreLadder, params: SabreParams, buffer_size_ms: float) -> None:
        self.ladder = ladder
        self.utilities = log_utilities(ladder, 0.0)
        self.gp = params.gamma_p
        self.buffer_size_ms = buffer_size_ms
        self.basic = params.basic
        self.oscillation = params.oscillation
        self.vp = (buffer_size_ms - ladder.segment_ms) / (self.utilities[-1] + self.gp)
        self.last_quality = 0

    def choose(self, now: Snapshot) -> tuple[int, float, str]:
        segment_ms = self.ladder.segment_ms
        if not self.basic:
            horizon = min(now.segment_index, now.segment_count - now.segment_index)  # no seeks: last seek at 0
            horizon_ms = max(horizon / 2, BOLA_HORIZON_MIN_SEGMENTS) * segment_ms
            self.vp = (min(self.buffer_size_ms, horizon_ms) - segment_ms) / (self.utilities[-1] + self.gp)
        quality = bola_quality(self.vp, self.gp, self.utilities, self.ladder, now.buffer_ms)
        reason = f"buffer {_seconds(now.buffer_ms)} -> q{quality}"
        delay_ms = 0.0
        if quality > self.last_quality:
            sustained = quality_from_throughput(self.ladder, now.throughput_kbps, now.latency_ms)
            if quality <= sustained:
                pass
            elif self.last_quality > sustained:
                quality = self.last_quality
                reason += f", held at q{quality} (throughput sustains q{sustained})"
            elif self.oscillation == "u":
                quality = sustained + 1
                reason += f", BOLA-U: one above sustained q{sustained}"
            else:
                quality = sustained
                if quality != self.ladder.top:
                    delay_ms = max(0.0, now.buffer_ms - self.vp * (self.gp + self.utilities[quality]))
                reason += f", BOLA-O: sustained q{sustained}, wait {_seconds(delay_ms)}"
        self.last_quality = quality
        return quality, delay_ms, reason

    def report_delay(self, delay_ms: float) -> None:
        pass

    def report_download(self, quality: int, time_ms: float, buffer_ms: float, abandoned_to: int | None) -> None:
        pass  # Sabre's Bola keeps its own last decision (or abandon target) as the last quality

    def check_abandon(self, progress: SabreProgress, now: Snapshot) -> int | None:
        left_bits = progress.size_bits - progress.downloaded_bits
        if self.basic or progress.downloaded_bits <= 0 or left_bits <= 0:
            return None
        rates = self.ladder.bitrates_kbps
        score = (self.vp * (self.gp + self.utilities[progress.quality]) - now.buffer_ms) / left_bits
        if score < 0:
            return None
        target = None
        for quality in range(progress.quality):
            other_bits = progress.size_bits * rates[quality] / rates[progress.quality]
            other_score = (self.vp * (self.gp + self.utilities[quality]) - now.buffer_ms) / other_bits
            if other_bits < left_bits and other_score > score:
                score, target = other_score, quality
        if target is not None:
            self.last_quality = target
        return target


class BolaERule:
    """Sabre `BolaEnh` (BOLA-E). STARTUP: the first decision takes the quality the throughput sustains and
    a placeholder that puts BOLA there. STEADY: BOLA on buffer + placeholder, the BOLA-U/O up-switch cap,
    a wait beyond the level BOLA wants spent from the placeholder first, then the insufficient buffer
    rule. Buffer-full waits grow the placeholder; downloads keep it within what their quality justifies."""

    def __init__(self, ladder: SabreLadder, params: SabreParams, buffer_size_ms: float) -> None:
        self.ladder = ladder
        self.utilities = log_utilities(ladder, 1.0)
        self.oscillation = params.oscillation
        self.use_ibr = params.insufficient_buffer_rule
        if not self.use_ibr:  # -noibr: V and gp as BOLA's (gp - 1 because utilities start at 1)
            self.gp = params.gamma_p - 1
            self.vp = (buffer_size_ms - ladder.segment_ms) / (self.utilities[-1] + self.gp)
        else:  # the lowest rung up to 10 s of buffer, the top one from max(10 s + 2 s per rung, buffer size)
            target_ms = max(BOLA_E_MINIMUM_BUFFER_MS + BOLA_E_BUFFER_PER_LEVEL_MS * len(ladder.bitrates_kbps),
                            buffer_size_ms)
            self.gp = (self.utilities[-1] - 1) / (target_ms / BOLA_E_MINIMUM_BUFFER_MS - 1)
            self.vp = BOLA_E_MINIMUM_BUFFER_MS / self.gp
        self.startup = True
        self.placeholder_ms = 0.0
        self.last_quality = 0
        self.ibr_safety = IBR_SAFETY_START

    def min_level(self, quality: int) -> float:
        return bola_min_level(self.vp, self.gp, self.utilities, self.ladder.bitrates_kbps, quality)

    def max_level(self, quality: int) -> float:
        return self.vp * (self.utilities[quality] + self.gp)

    def choose(self, now: Snapshot) -> tuple[int, float, str]:
        level_ms = now.buffer_ms
        if self.startup:
            self.startup = False
            self.ibr_safety = IBR_SAFETY_START
            quality = quality_from_throughput(self.ladder, now.throughput_kbps, now.latency_ms)
            self.placeholder_ms = max(0.0, self.min_level(quality) - level_ms)
            return quality, 0.0, f"startup: throughput {kbps(now.throughput_kbps)} sustains q{quality}"
        quality = bola_quality(self.vp, self.gp, self.utilities, self.ladder, level_ms + self.placeholder_ms)
        reason = f"buffer {_seconds(level_ms)} + placeholder {_seconds(self.placeholder_ms)} -> q{quality}"
        sustained = quality_from_throughput(self.ladder, now.throughput_kbps, now.latency_ms)
        if quality > self.last_quality and quality > sustained:
            quality = max(self.last_quality, sustained) + (1 if self.oscillation == "u" else 0)
            reason += f", capped to q{quality} (BOLA-{self.oscillation.upper()}, throughput sustains q{sustained})"
        delay_ms = level_ms + self.placeholder_ms - self.max_level(quality)
        if delay_ms > 0:
            if delay_ms <= self.placeholder_ms:
                self.placeholder_ms -= delay_ms
                delay_ms = 0.0
            else:
                delay_ms -= self.placeholder_ms
                self.placeholder_ms = 0.0
        else:
            delay_ms = 0.0
        if quality == self.ladder.top:
            delay_ms = 0.0
        if self.use_ibr:
            safe_bits = self.ibr_safety * (level_ms - now.latency_ms) * now.throughput_kbps
            self.ibr_safety = max(self.ibr_safety * IBR_SAFETY_START, IBR_SAFETY_FLOOR)
            capped = insufficient_buffer_cap(self.ladder, quality, safe_bits)
            if capped < quality:
                quality, delay_ms = capped, 0.0
                self.placeholder_ms = min(max(0.0, self.min_level(quality) - level_ms), self.placeholder_ms)
                reason += f"; insufficient buffer -> q{quality}"
        if delay_ms > 0:
            reason += f", wait {_seconds(delay_ms)}"
        return quality, delay_ms, reason

    def report_delay(self, delay_ms: float) -> None:
        self.placeholder_ms += delay_ms

    def report_download(self, quality: int, time_ms: float, buffer_ms: float, abandoned_to: int | None) -> None:
        self.last_quality = quality
        if abandoned_to is None:
            level_was_ms = buffer_ms + time_ms
            self.placeholder_ms = min(self.placeholder_ms, max(0.0, self.max_level(quality) - level_was_ms))
            if buffer_ms > 0:  # not after a stall: an empty buffer already says enough
                self.placeholder_ms = max(self.placeholder_ms, self.min_level(quality) - level_was_ms)
        else:  # an abandonment means something went wrong: deflate to a conservative level
            wanted_ms = self.min_level(abandoned_to) if abandoned_to > 0 else BOLA_E_MINIMUM_BUFFER_MS
            self.placeholder_ms = min(self.placeholder_ms, max(0.0, wanted_ms - buffer_ms))

    def check_abandon(self, progress: SabreProgress, now: Snapshot) -> int | None:
        left_bits = progress.size_bits - progress.downloaded_bits
        ttfb_ms = progress.time_to_first_bit_ms
        transfer_ms = progress.time_ms - ttfb_ms
        if progress.downloaded_bits <= 0 or left_bits <= 0 or not transfer_ms > 0:
            return None
        # A new request pays the latency again: judge the buffer and the bits left one latency later.
        level_ms = max(0.0, now.buffer_ms + self.placeholder_ms - ttfb_ms)
        rate_kbps = progress.downloaded_bits / transfer_ms
        left_after_bits = left_bits - ttfb_ms * rate_kbps
        if left_after_bits <= 0:
            return None
        rates = self.ladder.bitrates_kbps
        score = (self.vp * (self.gp + self.utilities[progress.quality]) - level_ms) / left_after_bits
        target = None
        for quality in range(progress.quality):
            other_bits = progress.size_bits * rates[quality] / rates[progress.quality]
            other_score = (self.vp * (self.gp + self.utilities[quality]) - level_ms) / other_bits
            # The size check is not implied by the score: a large buffer penalises the bigger download more.
            if other_bits < left_after_bits and other_score > score:
                score, target = other_score, quality
        return target


class SabreBola(SabreAbr):
    """Sabre's `bola` (BOLA-U unless oscillation="o")."""

    name = "sabre-bola"
    conformance_tags = frozenset({"bandwidth-monotone", "buffer-monotone"})
    conformance_variants: tuple[dict[str, object], ...] = ({}, {"basic": True}, {"estimator": "sliding"})

    def build_rule(self, ladder: SabreLadder, buffer_size_ms: float) -> SabreRule:
        return BolaRule(ladder, self.params, buffer_size_ms)


class BolaO(SabreBola):
    """BOLA-O: Sabre's `bola -ao`."""

    name = "bola-o"
    conformance_variants = ({}, {"basic": True})


class BolaE(SabreAbr):
    """Sabre's `bolae` (BOLA-E; BOLA-U unless oscillation="o")."""

    name = "bola-e"
    conformance_tags = frozenset({"bandwidth-monotone", "buffer-monotone"})
    conformance_variants: tuple[dict[str, object], ...] = (
        {}, {"oscillation": "o"}, {"insufficient_buffer_rule": False})

    def build_rule(self, ladder: SabreLadder, buffer_size_ms: float) -> SabreRule:
        return BolaERule(ladder, self.params, buffer_size_ms)


@parameters_from(SabreParams)
def make_sabre_bola(**params: object) -> SabreBola:
    return SabreBola(SabreParams(**params))  # type: ignore[arg-type]


@parameters_from(SabreParams)
def make_bola_o(**params: object) -> BolaO:
    if "oscillation" in params:
        raise ValueError("bola-o is sabre-bola with oscillation='o'; use sabre-bola to choose the variant")
    return BolaO(SabreParams(oscillation="o", **params))  # type: ignore[arg-type]


@parameters_from(SabreParams)
def make_bola_e(**params: object) -> BolaE:
    return BolaE(SabreParams(**params))  # type: ignore[arg-type]


register("sabre-bola", make_sabre_bola, "Sabre's BOLA (BOLA-U): buffer-based, one rung past the sustained throughput")
register("bola-o", make_bola_o, "BOLA-O (Sabre bola -ao): BOLA that pauses instead of switching past the throughput")
register("bola-e", make_bola_e, "BOLA-E (Sabre bolae): BOLA with placeholder buffer, insufficient buffer rule, abandonment")
