"""Sabre's hybrids: `sabre-dynamic` (Sabre `dynamic`) and `dynamic-dash` (Sabre `dynamicdash`).

DYNAMIC (Spiteri, Sitaraman, Sparacio, MMSys 2018, the dash.js default) uses the throughput rule while
the buffer is low and BOLA once it is high. Sabre has two versions (src/sabre.py at 09b03bb):
`dynamic` pairs BOLA with the throughput rule and switches on one 10 s threshold, asking both rules
every time and BOLA only when BOLA would not pick less; `dynamicdash` pairs BOLA-E with the throughput
rule and switches with hysteresis (to BOLA-E above 10 s, back below 5 s), asking only the active rule.
"""

from __future__ import annotations

from abr.algorithms.sabre import SabreAbr, SabreLadder, SabreParams, SabreProgress, SabreRule, Snapshot, ThroughputRule
from abr.algorithms.sabre_bola import BolaERule, BolaRule
from abr.registry import parameters_from, register

DYNAMIC_THRESHOLD_MS = 10000.0  # Dynamic.low_buffer_threshold
# DynamicDash: the (buffer size - segment) / 2 and - 100 ms thresholds Sabre computes are overridden by these.
DYNAMIC_DASH_LOW_MS = 5000.0
DYNAMIC_DASH_HIGH_MS = 10000.0


class _Hybrid:
    """A BOLA rule and the throughput rule side by side: both hear of every wait and download."""

    bola: SabreRule
    throughput: ThroughputRule

    def report_delay(self, delay_ms: float) -> None:
        self.bola.report_delay(delay_ms)
        self.throughput.report_delay(delay_ms)

    def report_download(self, quality: int, time_ms: float, buffer_ms: float, abandoned_to: int | None) -> None:
        self.bola.report_download(quality, time_ms, buffer_ms, abandoned_to)
        self.throughput.report_download(quality, time_ms, buffer_ms, abandoned_to)


class DynamicRule(_Hybrid):
    """Sabre `Dynamic`: both rules decide every segment (so both keep their state moving); BOLA's answer is
    taken once the buffer is above 10 s and BOLA picks at least the throughput rule's quality, until the
    buffer is below 10 s and BOLA picks less. Only the throughput rule abandons."""

    def __init__(self, ladder: SabreLadder, params: SabreParams, buffer_size_ms: float) -> None:
        self.bola = BolaRule(ladder, params, buffer_size_ms)
        self.throughput = ThroughputRule(ladder, params)
        self.use_bola = False

    def choose(self, now: Snapshot) -> tuple[int, float, str]:
        by_buffer = self.bola.choose(now)
        by_throughput = self.throughput.choose(now)
        if self.use_bola:
            self.use_bola = not (now.buffer_ms < DYNAMIC_THRESHOLD_MS and by_buffer[0] < by_throughput[0])
        else:
            self.use_bola = now.buffer_ms > DYNAMIC_THRESHOLD_MS and by_buffer[0] >= by_throughput[0]
        quality, delay_ms, reason = by_buffer if self.use_bola else by_throughput
        return quality, delay_ms, f"{'bola' if self.use_bola else 'throughput'}: {reason}"

    def check_abandon(self, progress: SabreProgress, now: Snapshot) -> int | None:
        return self.throughput.check_abandon(progress, now)  # Sabre: `if False and self.is_bola`


class DynamicDashRule(_Hybrid):
    """Sabre `DynamicDash`: BOLA-E above 10 s of buffer until it falls below 5 s, the throughput rule
    otherwise; only the active rule decides and abandons, both hear of downloads and waits."""

    def __init__(self, ladder: SabreLadder, params: SabreParams, buffer_size_ms: float) -> None:
        self.bola = BolaERule(ladder, params, buffer_size_ms)
        self.throughput = ThroughputRule(ladder, params)
        self.use_bola = False

    def choose(self, now: Snapshot) -> tuple[int, float, str]:
        if self.use_bola and now.buffer_ms < DYNAMIC_DASH_LOW_MS:
            self.use_bola = False
        elif not self.use_bola and now.buffer_ms > DYNAMIC_DASH_HIGH_MS:
            self.use_bola = True
        rule: SabreRule = self.bola if self.use_bola else self.throughput
        quality, delay_ms, reason = rule.choose(now)
        return quality, delay_ms, f"{'bola-e' if self.use_bola else 'throughput'}: {reason}"

    def check_abandon(self, progress: SabreProgress, now: Snapshot) -> int | None:
        rule: SabreRule = self.bola if self.use_bola else self.throughput
        return rule.check_abandon(progress, now)


class SabreDynamic(SabreAbr):
    """Sabre's `dynamic`."""

    name = "sabre-dynamic"
    # Not buffer-monotone: once on BOLA, just under 10 s it keeps the throughput rule's higher pick, just above
    # it takes BOLA's, which may be lower.
    conformance_tags = frozenset({"bandwidth-monotone"})
    conformance_variants: tuple[dict[str, object], ...] = ({}, {"oscillation": "o", "estimator": "sliding"})

    def build_rule(self, ladder: SabreLadder, buffer_size_ms: float) -> SabreRule:
        return DynamicRule(ladder, self.params, buffer_size_ms)


class DynamicDash(SabreAbr):
    """Sabre's `dynamicdash` (DYNAMIC-DASH)."""

    name = "dynamic-dash"
    conformance_tags = frozenset({"bandwidth-monotone"})  # not buffer-monotone: 10 s hands over to BOLA-E
    conformance_variants: tuple[dict[str, object], ...] = ({}, {"oscillation": "o"})

    def build_rule(self, ladder: SabreLadder, buffer_size_ms: float) -> SabreRule:
        return DynamicDashRule(ladder, self.params, buffer_size_ms)


@parameters_from(SabreParams)
def make_sabre_dynamic(**params: object) -> SabreDynamic:
    return SabreDynamic(SabreParams(**params))  # type: ignore[arg-type]


@parameters_from(SabreParams)
def make_dynamic_dash(**params: object) -> DynamicDash:
    return DynamicDash(SabreParams(**params))  # type: ignore[arg-type]


register("sabre-dynamic", make_sabre_dynamic, "Sabre's DYNAMIC: throughput rule below 10 s of buffer, BOLA above")
register("dynamic-dash", make_dynamic_dash,
         "DYNAMIC-DASH (Sabre dynamicdash): throughput rule, BOLA-E above 10 s until the buffer falls below 5 s")
