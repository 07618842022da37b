"""Fairness between players behind one bottleneck: Jain's index, QoE spread, instability, utilisation.

Pure functions of per-player figures, so simulated groups (`sim_shared`) and emulated ones (players
through one shaper) are scored by the same code.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

# FESTIVE (Jiang, Sekar, Zhang, CoNEXT 2012, section 5) weighs the switches of the last k = 20 s.
FESTIVE_WINDOW_S = 20.0


def jain_index(values: Sequence[float] | np.ndarray) -> float:
    """Jain's fairness index (sum x)^2 / (n sum x^2): 1 when all are equal, 1/n when one gets everything."""
    x = np.asarray(values, dtype=np.float64)
    if x.size == 0:
        raise ValueError("Jain's index needs at least one value")
    if not np.all(np.isfinite(x)) or np.any(x < 0):
        raise ValueError(f"Jain's index needs finite values >= 0, got {x.tolist()}")
    squares = float(np.sum(x * x))
    if squares == 0.0:
        return 1.0  # nobody got anything: equally so
    return float(np.sum(x)) ** 2 / (x.size * squares)


def festive_instability(bitrates_bps: Sequence[float] | np.ndarray, segment_duration_s: float) -> float:
    """FESTIVE's instability index averaged over a session: at each segment t, the switches of the last
    k segments (k = 20 s of media) weighted by recency, w(d) = k - d, over the bitrate fetched in them:

        sum_{d=0}^{k-1} |b[t-d] - b[t-d-1]| w(d) / sum_{d=1}^{k} b[t-d]

    0 for a session that never switches."""
    if not segment_duration_s > 0:
        raise ValueError(f"segment duration must be > 0 s, got {segment_duration_s!r}")
    b = np.asarray(bitrates_bps, dtype=np.float64)
    if b.size < 2:
        return 0.0
    k = max(1, round(FESTIVE_WINDOW_S / segment_duration_s))
    change = np.abs(np.diff(b))  # change[t - 1] = |b[t] - b[t-1]|
    values = []
    for t in range(1, b.size):
        d = np.arange(min(k, t))
        numerator = float(np.sum(change[t - 1 - d] * (k - d)))
        denominator = float(np.sum(b[max(0, t - k): t]))
        values.append(numerator / denominator if denominator > 0 else 0.0)
    return float(np.mean(values))


@dataclass(frozen=True, kw_only=True, slots=True)
class LinkFairness:
    """How N players on one link fared together (QoE in the named model's units)."""

    players: int
    jain_bitrate: float  # Jain's index of the players' mean video bitrates
    qoe_mean: float
    qoe_spread: float  # best player's QoE - worst player's
    switches_mean: float  # quality switches per player
    instability_mean: float  # FESTIVE instability per player (`festive_instability`)
    utilisation: float  # bytes the players received / bytes the link offered until the last one finished

    def as_dict(self) -> dict[str, float]:
        return {"players": self.players, "jain_bitrate": self.jain_bitrate, "qoe_mean": self.qoe_mean,
                "qoe_spread": self.qoe_spread, "switches_mean": self.switches_mean,
                "instability_mean": self.instability_mean, "utilisation": self.utilisation}


def link_fairness(*, avg_bitrates_bps: Sequence[float], qoes: Sequence[float], switches: Sequence[float],
                  instabilities: Sequence[float], received_bytes: float, capacity_bytes: float) -> LinkFairness:
    """The group's figures from each player's (same order in every sequence) and the link's totals."""
    n = len(avg_bitrates_bps)
    if n == 0 or not len(qoes) == len(switches) == len(instabilities) == n:
        raise ValueError("give the same number (>= 1) of bitrates, QoEs, switch counts and instabilities")
    if not capacity_bytes > 0 or received_bytes < 0 or not math.isfinite(received_bytes):
        raise ValueError(f"utilisation needs capacity > 0 and received >= 0 bytes, got {received_bytes!r} of "
                         f"{capacity_bytes!r}")
    q = np.asarray(qoes, dtype=np.float64)
    return LinkFairness(players=n, jain_bitrate=jain_index(avg_bitrates_bps), qoe_mean=float(q.mean()),
                        qoe_spread=float(q.max() - q.min()), switches_mean=float(np.mean(switches)),
                        instability_mean=float(np.mean(instabilities)),
                        utilisation=received_bytes / capacity_bytes)
