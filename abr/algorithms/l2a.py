"""`l2a`: Learn2Adapt-LowLatency (L2A-LL), a low-latency live ABR.

Karagkioules, Mekuria, Griffioen and Wagenaar, "Online learning for low-latency adaptive streaming",
ACM MMSys 2020 (Grand Challenge), as in dash.js `L2ARule.js` (Unified Streaming, 2020). Bitrate
selection is online convex optimisation: a probability vector w over the rungs moves by Lagrangian
descent on the latency each rung would cause at the measured throughput and playback rate, Q tracks
the buffer displacement, and the choice is the rung nearest the expected bitrate under w, climbing at
most one rung at a time. Until the buffer first reaches B_target (1.5 s) the throughput rule decides.
"""

from __future__ import annotations

from dataclasses import dataclass

from abr.algorithms.common import mbps
from abr.estimators import ChunkedThroughput, DownloadLog, sample_bps
from abr.registry import parameters_from, register
from abr.types import Decision, Observation


@dataclass(frozen=True, kw_only=True, slots=True)
class L2aParams:
    """L2ARule.js constants."""

    horizon: int = 4  # optimisation horizon: steps to convergence
    react: float = 2.0  # reactiveness to volatility: re-calibrates Q after an over-estimate
    target_buffer_s: float = 1.5  # B_target: leave start-up once the buffer reaches it
    safety: float = 0.9  # the start-up rule's safe throughput (dash.js bandwidthSafetyFactor)

    def __post_init__(self) -> None:
        if self.horizon < 1 or not self.react > 0 or not self.target_buffer_s > 0 or not 0 < self.safety <= 1:
            raise ValueError("L2A needs horizon >= 1, react > 0, target buffer > 0 s and safety in (0, 1]")


def simplex_projection(values: list[float]) -> list[float]:
    """Euclidean projection onto the probability simplex (Chen and Ye, arXiv:1101.6081), as L2ARule's
    `euclideanProjection`."""
    m = len(values)
    ordered = sorted(values, reverse=True)
    total = 0.0
    tmax = 0.0
    found = False
    for i in range(m - 1):
        total += ordered[i]
        tmax = (total - 1) / (i + 1)
        if tmax >= ordered[i + 1]:
            found = True
            break
    if not found:
        tmax = (total + ordered[m - 1] - 1) / m
    return [max(v - tmax, 0.0) for v in values]


class L2a:
    """L2A-LL (module docstring). Throughputs in kbit/s as in dash.js."""

    name = "l2a"
    conformance_tags: frozenset[str] = frozenset()

    def __init__(self, params: L2aParams) -> None:
        self.params = params
        self._estimator = ChunkedThroughput()
        self._log = DownloadLog()
        self._steady = False
        self._w: list[float] = []
        self._prev_w: list[float] = []
        self._q = 0.0
        self._last_quality = 0

    def _startup_budget_bps(self, obs: Observation, estimate_bps: float) -> float:
        """dash.js `getQualityIndexForBitrate`: the safe throughput less the share of a segment's time
        the request latency takes (the mean TTFB of the last 3 downloads; 0 if it exceeds a segment)."""
        recent = [d.ttfb_s for d in obs.downloads[-3:]]
        latency_s = sum(recent) / len(recent)
        dead = min(latency_s / obs.ladder.segment_duration_s, 1.0)
        return estimate_bps * self.params.safety * (1.0 - dead)

    def decide(self, obs: Observation) -> Decision:
        for download in self._log.new(obs.downloads):
            if not download.abandoned:
                self._estimator.feed(download)
        estimate_bps = self._estimator.estimate_bps()
        if estimate_bps is None or not obs.downloads:
            return Decision(quality=0, reason="l2a start-up: no throughput yet")
        horizon = self.params.horizon
        vl = horizon ** 0.99  # cautiousness
        alpha = max(horizon, vl * horizon ** 0.5)  # step size
        bitrates_kbps = [b / 1e3 for b in obs.ladder.bitrates_bps]
        count = len(bitrates_kbps)
        if not self._steady:
            quality = obs.ladder.highest_at_most(self._startup_budget_bps(obs, estimate_bps))
            self._last_quality = quality
            if obs.buffer_s >= self.params.target_buffer_s:
                self._steady = True
                self._q = vl
                self._prev_w = [1.0 if i == quality else 0.0 for i in range(count)]
            return Decision(quality=quality, reason=f"l2a start-up: {mbps(estimate_bps)} x {self.params.safety:g}, "
                                                    f"less latency dead time")
        last = obs.downloads[-1]
        last_kbps = max((sample_bps(last, exclude_ttfb=True) or 0.0) / 1e3, 1.0)  # 1 kbit/s on an outage
        rate = obs.playback_rate
        v = obs.ladder.segment_duration_s
        sign = 1.0
        w = []
        for i in range(count):
            if rate * bitrates_kbps[i] > last_kbps:  # this rung would drain the buffer: descend
                sign = -1.0
            w.append(self._prev_w[i] + sign * (v / (2 * alpha)) * ((self._q + vl) * (rate * bitrates_kbps[i] / last_kbps)))
        w = simplex_projection(w)
        diff = [w[i] - self._prev_w[i] for i in range(count)]
        self._prev_w = w
        expected = sum(b * p for b, p in zip(bitrates_kbps, w))
        self._q = max(0.0, self._q - v + v * rate * ((expected + sum(b * d for b, d in zip(bitrates_kbps, diff)))
                                                        / last_kbps))
        quality = min(range(count), key=lambda i: abs(bitrates_kbps[i] - expected))
        if quality > self._last_quality and bitrates_kbps[self._last_quality + 1] <= last_kbps:
            quality = self._last_quality + 1  # cautious, stepwise ascent
        if bitrates_kbps[quality] >= last_kbps:
            self._q = self.params.react * max(vl, self._q)  # provision against over-estimation
        self._last_quality = quality
        return Decision(quality=quality, reason=f"l2a: last {last_kbps:.0f} kbit/s, E[w] {expected:.0f} kbit/s, "
                                                f"Q {self._q:.2f}")


@parameters_from(L2aParams)
def make_l2a(**params: object) -> L2a:
    return L2a(L2aParams(**params))  # type: ignore[arg-type]


register("l2a", make_l2a, "L2A-LL (Karagkioules et al., MMSys 2020; dash.js L2ARule): online learning for low-latency live")
