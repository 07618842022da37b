"""`dynamic`: dash.js's default DYNAMIC strategy (AbrController, ABR_STRATEGY_DYNAMIC).

The throughput rule (ThroughputRule.js: the safe average throughput, latency-aware) while the buffer
is low, BOLA once it is high: BOLA takes over when the buffer exceeds the stable buffer time (12 s)
and hands back when it falls to half of it or less (hysteresis, `_updateDynamicAbrStrategy`). dash.js
re-evaluates on every buffer-level metric; here it is evaluated at each decision.
"""

from __future__ import annotations

from abr.algorithms.bola import BolaParams, DashAbr
from abr.algorithms.common import mbps
from abr.registry import parameters_from, register
from abr.types import Observation


class Dynamic(DashAbr):
    """ThroughputRule below the stable buffer time, BolaRule above, InsufficientBufferRule on top."""

    name = "dynamic"
    conformance_tags = frozenset({"bandwidth-monotone"})
    conformance_variants: tuple[dict[str, object], ...] = ({}, {"estimator": "harmonic", "insufficient_buffer_rule": False})

    def __init__(self, params: BolaParams) -> None:
        super().__init__(params)
        self._use_bola = False

    def _rule(self, obs: Observation, throughput_bps: float) -> tuple[int, float, str]:
        stable_s = self.params.stable_buffer_s
        self._use_bola = obs.buffer_s > (0.5 * stable_s if self._use_bola else stable_s)
        if self._use_bola:
            quality, delay_s, reason = self._bola(obs, throughput_bps)
            return quality, delay_s, f"bola: {reason}"
        safe_bps = throughput_bps * self.params.safety
        quality = self._context.quality_for(obs.ladder, safe_bps)
        return quality, 0.0, f"throughput: {mbps(throughput_bps)} x {self.params.safety:g} -> q{quality}"


@parameters_from(BolaParams)
def make_dynamic(**params: object) -> Dynamic:
    return Dynamic(BolaParams(**params))  # type: ignore[arg-type]


register("dynamic", make_dynamic, "dash.js DYNAMIC: throughput rule at low buffer, BOLA above the stable buffer")
