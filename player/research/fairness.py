"""Fairness between players behind one bottleneck: Jain's index, QoE spread, instability, utilisation.

Pure functions of per-player figures, so simulated groups (`sim_shared`) and emulated ones (players
through one shaper) are scored by the same code. `mode_gap` compares the two modes over the same
links with the statistics a single realisation needs: a paired bootstrap interval and the range of
gaps the simulator's own timing chaos gives (bench/fairness.py, docs/FLEET.md).
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


# -- how far two modes' means differ, beside what chaos alone gives ----------------------------------


@dataclass(frozen=True, kw_only=True, slots=True)
class ModeGap:
    """Emulation against the simulator over the same links (traces x start offsets), paired per link.

    `gap_pct` is (emulated - simulated mean) / |simulated mean|, with a paired percentile-bootstrap
    95% interval over links (`gap_ci_pct`: links resampled with replacement, their mean difference
    over the full sample's |simulated mean|).
    `chaos_pct` is the 95% range of the gap a perfect model would show when the timing differs by at
    most what `jittered` moves it: per link, one of the simulator's own answers with the timing moved,
    against its answer unmoved. A gap inside it cannot be told from chaos by its size; a gap outside
    it, with a bootstrap interval that excludes 0, is a model error (`verdict`). `jitter_spread_pct`: how
    far the simulator's mean over all links moves over the timing moves (max - min over |mean|).
    `gap_to_jitter_mean_pct`: the emulated mean against the simulator's mean over its timing moves
    (the nominal one included), which a single realisation of a chaotic cell does not pin down."""

    links: int
    sim_mean: float
    emu_mean: float
    gap_pct: float
    gap_ci_pct: tuple[float, float]
    chaos_pct: tuple[float, float]
    jitter_spread_pct: float
    gap_to_jitter_mean_pct: float
    gap_to_jitter_mean_ci_pct: tuple[float, float]

    @property
    def verdict(self) -> str:
        """'within 10%'; else by whether the gap lies in the chaos range and whether the bootstrap
        interval holds 0: 'chaos' (both), 'chaos or bias' (in the range, but one sign over the links:
        look per link, a small systematic error hides there), 'not significant' (outside the range,
        the interval holds 0), 'model error' (neither)."""
        if abs(self.gap_pct) <= 10.0:
            return "within 10%"
        chaotic = self.chaos_pct[0] <= self.gap_pct <= self.chaos_pct[1]
        low, high = self.gap_ci_pct
        if chaotic:
            return "chaos" if low <= 0.0 <= high else "chaos or bias"
        return "not significant" if low <= 0.0 <= high else "model error"

    def as_dict(self) -> dict[str, object]:
        return {"links": self.links, "sim_mean": self.sim_mean, "emu_mean": self.emu_mean, "gap_pct": self.gap_pct,
                "gap_ci95_pct": list(self.gap_ci_pct), "chaos95_pct": list(self.chaos_pct),
                "jitter_spread_pct": self.jitter_spread_pct, "gap_to_jitter_mean_pct": self.gap_to_jitter_mean_pct,
                "gap_to_jitter_mean_ci95_pct": list(self.gap_to_jitter_mean_ci_pct), "verdict": self.verdict}


def mode_gap(sim: Sequence[float], emu: Sequence[float], jittered: Sequence[Sequence[float]], *,
             resamples: int = 4000, seed: int = 0) -> ModeGap:
    """`sim[l]`, `emu[l]`: link l's mean (over its players) in each mode; `jittered[l]`: the simulator's
    answers for link l with the timing moved a little (at least one each; the unmoved one left out).
    See `ModeGap`. Seeded, so a report is reproducible."""
    s, e = np.asarray(sim, dtype=np.float64), np.asarray(emu, dtype=np.float64)
    if s.ndim != 1 or s.shape != e.shape or s.size == 0 or len(jittered) != s.size:
        raise ValueError(f"give one simulated, emulated and jittered entry per link, got {len(s)}, {len(e)}, "
                         f"{len(jittered)}")
    if any(len(j) == 0 for j in jittered):
        raise ValueError("every link needs at least one answer with the timing moved")
    moves = max(len(j) for j in jittered)
    # Links with fewer moves repeat theirs cyclically, so every draw picks uniformly among a link's own.
    moved = np.array([[float(j[k % len(j)]) for k in range(moves)] for j in jittered])
    rng = np.random.default_rng(seed)
    n = s.size

    def pct(difference: np.ndarray, reference: np.ndarray) -> np.ndarray:
        with np.errstate(divide="ignore", invalid="ignore"):
            return 100.0 * difference / np.abs(reference)

    # Intervals of the mean difference over resampled links, as a percentage of the full sample's mean
    # (a resample's own mean as the denominator blows up where a mean is near 0, as BBA's is).
    picks = rng.integers(0, n, size=(resamples, n))
    gaps = pct((e - s)[picks].mean(axis=1), np.full(resamples, s.mean()))
    centre = (moved.sum(axis=1) + s) / (moves + 1)  # the simulator's mean over its timing moves
    to_centre = pct((e - centre)[picks].mean(axis=1), np.full(resamples, centre.mean()))
    which = rng.integers(0, moves, size=(resamples, n))
    chaos = pct(moved[np.arange(n), which].mean(axis=1) - s.mean(), np.full(resamples, s.mean()))
    means = np.concatenate([[s.mean()], moved.mean(axis=0)])
    return ModeGap(links=n, sim_mean=float(s.mean()), emu_mean=float(e.mean()),
                   gap_pct=float(pct(np.array([e.mean() - s.mean()]), np.array([s.mean()]))[0]),
                   gap_ci_pct=_percentiles(gaps), chaos_pct=_percentiles(chaos),
                   jitter_spread_pct=float(pct(np.array([means.max() - means.min()]), np.array([s.mean()]))[0]),
                   gap_to_jitter_mean_pct=float(pct(np.array([e.mean() - centre.mean()]), np.array([centre.mean()]))[0]),
                   gap_to_jitter_mean_ci_pct=_percentiles(to_centre))


def _percentiles(values: np.ndarray) -> tuple[float, float]:
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return (math.nan, math.nan)
    low, high = np.percentile(finite, [2.5, 97.5])
    return (float(low), float(high))
