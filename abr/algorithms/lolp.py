"""`lolp`: LoL+ (Low-on-Latency-plus), a low-latency live ABR.

Bentaleb, Akcay, Lim, Begen and Zimmermann, "Catching the Moment with LoL+ in Twitch-like Low-Latency
Live Streaming Platforms", IEEE Trans. Multimedia 2022 (LoL: Lim et al., MMSys 2020 Grand Challenge),
as in dash.js `LoLpRule.js`, `LearningAbrController.js`, `LoLpWeightSelector.js` and
`LoLpQoEEvaluator.js`. A self-organising map with one neuron per rung (state: throughput, latency,
rebuffer, switch) picks the neuron nearest the measured state under weights that a dynamic weight
selector chooses each segment, among 5^4 candidates, to maximise the live QoE (`abr.qoe.LiveQoe`)
under a latency and a buffer constraint. dash.js seeds its initial weights from Math.random; here a
seeded generator keeps the algorithm deterministic.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import numpy as np

from abr.algorithms.common import mbps
from abr.estimators import ChunkedThroughput, DownloadLog, Safe
from abr.qoe import LiveQoe
from abr.registry import parameters_from, register
from abr.types import Decision, Ladder, Observation

_WEIGHT_VALUES = (0.2, 0.4, 0.6, 0.8, 1.0)  # LoLpWeightSelector valueList
_WEIGHT_OPTIONS = np.array(list(itertools.product(_WEIGHT_VALUES, repeat=4)))  # (625, 4) in dash.js's order


@dataclass(frozen=True, kw_only=True, slots=True)
class LolpParams:
    """LoLpRule.js / LearningAbrController.js constants."""

    target_latency_s: float = 1.5  # DWS_TARGET_LATENCY
    buffer_min_s: float = 0.3  # DWS_BUFFER_MIN
    safety: float = 0.9  # the safe average throughput (dash.js bandwidthSafetyFactor)
    throughput_delta_bps: float = 10_000.0  # "10K + video encoding is the recommended throughput"
    learning_rate: float = 0.01
    neighbourhood_sigma: float = 0.1
    seed: int = 0  # of the k-means++ initial weights (dash.js: Math.random)

    def __post_init__(self) -> None:
        if not self.target_latency_s > 0 or self.buffer_min_s < 0 or not 0 < self.safety <= 1:
            raise ValueError("LoL+ needs target latency > 0 s, buffer min >= 0 s and safety in (0, 1]")
        if not 0 < self.learning_rate <= 1 or not self.neighbourhood_sigma > 0 or self.throughput_delta_bps < 0:
            raise ValueError("LoL+ needs a learning rate in (0, 1], sigma > 0 and a throughput delta >= 0")


def _distance(a: np.ndarray, b: np.ndarray, w: np.ndarray) -> float:
    total = float(np.sum(w * (a - b) ** 2))
    return math.copysign(math.sqrt(abs(total)), total)


class Lolp:
    """LoL+ (module docstring)."""

    name = "lolp"
    conformance_tags: frozenset[str] = frozenset()

    def __init__(self, params: LolpParams) -> None:
        self.params = params
        self._estimator = Safe(ChunkedThroughput(), factor=params.safety)
        self._log = DownloadLog()
        self._ladder: Ladder | None = None
        self._states = np.zeros((0, 4))  # per rung: throughput (normalised), latency, rebuffer, switch
        self._norm = 1.0
        self._weights: np.ndarray | None = None
        self._previous_latency_s = 0.0

    def _setup(self, ladder: Ladder) -> None:
        bitrates = np.asarray(ladder.bitrates_bps, dtype=np.float64)
        self._ladder = ladder
        self._norm = float(np.sqrt(np.sum(bitrates ** 2)))
        self._states = np.zeros((len(bitrates), 4))
        self._states[:, 0] = bitrates / self._norm
        self._weights = self._initial_weights(len(bitrates))

    def _initial_weights(self, neurons: int) -> np.ndarray:
        """`_getInitialKmeansPlusPlusCenters`: the last of k-means++ centres over n^2 random points,
        sorted from the least similar one by distance to it."""
        rng = np.random.default_rng(self.params.seed)
        data = rng.random((neurons ** 2, 4))
        data[:, 0] *= float(self._states[:, 0].max())
        ones = np.ones(4)
        centers = [data[0]]
        for _ in range(1, neurons):
            best, best_distance = data[0], -math.inf
            for point in data:
                nearest = min(_distance(point, c, ones) for c in centers)
                if nearest > best_distance:
                    best, best_distance = point, nearest
            centers.append(best)
        spread = [sum(_distance(c, d, ones) for j, d in enumerate(centers) if j != i) for i, c in enumerate(centers)]
        first = int(np.argmax(spread))
        ordered = [centers.pop(first)]
        while centers:
            k = min(range(len(centers)), key=lambda j: _distance(ordered[0], centers[j], ones))
            ordered.append(centers.pop(k))
        return np.array(ordered[-1])

    def decide(self, obs: Observation) -> Decision:
        if self._ladder != obs.ladder:
            self._setup(obs.ladder)
        for download in self._log.new(obs.downloads):
            if not download.abandoned:
                self._estimator.feed(download)
        throughput_bps = self._estimator.estimate_bps()
        current = obs.last_quality if obs.last_quality is not None else 0
        if throughput_bps is None or throughput_bps <= 0:
            return Decision(quality=current, reason="lolp: no throughput yet")
        quality, why = self._next_quality(obs, throughput_bps, current)
        return Decision(quality=quality, reason=f"lolp: {mbps(throughput_bps)} safe, {why}")

    def _next_buffer_s(self, bitrate_bps: np.ndarray | float, buffer_s: float, throughput_bps: float,
                       segment_s: float) -> np.ndarray:
        download_s = np.asarray(bitrate_bps) * segment_s / throughput_bps
        return np.where(download_s > segment_s, buffer_s - segment_s, buffer_s + segment_s - download_s)

    def _next_quality(self, obs: Observation, throughput_bps: float, current: int) -> tuple[int, str]:
        p, ladder, states = self.params, obs.ladder, self._states
        assert self._weights is not None
        bitrates = np.asarray(ladder.bitrates_bps, dtype=np.float64)
        segment_s = ladder.segment_duration_s
        buffer_s = obs.buffer_s
        latency_s = obs.latency_s or 0.0
        rate = obs.playback_rate
        normalised = throughput_bps / self._norm
        if normalised > 1:
            normalised = float(states[:, 0].max())
        download_s = bitrates[current] * segment_s / throughput_bps
        rebuffer_s = max(0.0, download_s - buffer_s)
        if buffer_s - download_s < p.buffer_min_s:  # a stall is near: the highest lower rung that fits
            lower = [q for q in range(current) if throughput_bps > bitrates[q]]
            quality = max(lower) if lower else current
            return quality, f"buffer low: down-shift to q{quality}"
        self._select_weights(bitrates, latency_s, buffer_s, throughput_bps, rate, segment_s)
        target = np.array([normalised, 0.0, 0.0, 0.0])
        next_buffer = self._next_buffer_s(bitrates, buffer_s, throughput_bps, segment_s)
        best, best_distance = 0, math.inf
        for q in range(len(bitrates)):
            weights = self._weights.copy()
            if (bitrates[q] > throughput_bps - p.throughput_delta_bps or next_buffer[q] < p.buffer_min_s) \
                    and q != 0:
                weights[0] = 100.0  # encourage lower bitrates
            distance = _distance(states[q], target, weights)
            if distance < best_distance:
                best, best_distance = q, distance
        switch = abs(bitrates[current] - bitrates[best]) / self._norm
        self._update(current, np.array([normalised, latency_s / 100.0, rebuffer_s, switch]))
        self._update(best, np.array([normalised, 0.0, 0.0, switch]))
        return best, f"som winner q{best}, weights {tuple(float(w) for w in self._weights)}"

    def _select_weights(self, bitrates: np.ndarray, latency_s: float, buffer_s: float, throughput_bps: float,
                        rate: float, segment_s: float) -> None:
        """LoLpWeightSelector.findWeightVector over every (neuron, weight vector), vectorised."""
        p = self.params
        qoe = LiveQoe.for_ladder(bitrates.tolist(), segment_s)
        delta_latency = abs(latency_s - self._previous_latency_s)
        self._previous_latency_s = latency_s
        if latency_s > p.target_latency_s + delta_latency:
            return  # constraint A1 fails for every candidate: keep the weights
        download_s = bitrates * segment_s / throughput_bps  # (Q,)
        next_buffer = self._next_buffer_s(bitrates, buffer_s, throughput_bps, segment_s)
        rebuffer = np.maximum(1e-5, download_s - next_buffer)
        weighted_rebuffer = rebuffer[:, None] / _WEIGHT_OPTIONS[None, :, 2]  # (Q, 625)
        weighted_latency = self._states[:, 1][:, None] / _WEIGHT_OPTIONS[None, :, 1]
        latency_weight = np.where(weighted_latency <= qoe.latency_threshold_s, qoe.latency_penalty_low,
                                  qoe.latency_penalty_high)
        # calculateSingleUseQoe is passed the bitrate in bit/s (dash.js does so; the other terms use kbit/s)
        total = (qoe.bitrate_reward * bitrates[:, None] - qoe.rebuffer_penalty * weighted_rebuffer
                 - latency_weight * weighted_latency - qoe.speed_penalty * abs(1 - rate))
        total = np.where((next_buffer >= p.buffer_min_s)[:, None], total, -np.inf)
        if np.isneginf(total).all():
            return
        _, option = np.unravel_index(int(np.argmax(total)), total.shape)  # the first maximum, neuron-major
        self._weights = _WEIGHT_OPTIONS[option].astype(np.float64)

    def _update(self, winner: int, x: np.ndarray) -> None:
        """Move every neuron toward `x` in proportion to its neighbourhood of `winner`."""
        p, states = self.params, self._states
        ones = np.ones(4)
        for q in range(states.shape[0]):  # in place, as dash.js: neurons after the winner see it moved
            distance = _distance(states[q], states[winner], ones)
            neighbourhood = math.exp(-distance ** 2 / (2 * p.neighbourhood_sigma ** 2))
            states[q] += (x - states[q]) * p.learning_rate * neighbourhood


@parameters_from(LolpParams)
def make_lolp(**params: object) -> Lolp:
    return Lolp(LolpParams(**params))  # type: ignore[arg-type]


register("lolp", make_lolp, "LoL+ (Bentaleb et al., IEEE TMM 2022; dash.js LoLpRule): SOM low-latency live ABR")
