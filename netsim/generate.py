"""Seeded trace sets for training curricula: Markov-modulated bandwidth levels with outages.

The model follows the synthetic traces of Pensieve (Mao et al., SIGCOMM 2017, section 5.3): a hidden
Markov chain over bandwidth levels, and each interval's rate drawn around the current level. Here a
level is left with `switch_probability` per interval, the next level is drawn with weights
`locality ** (distance - 1)` (1: any other level alike; small: mostly a neighbour), the rate is the
level times (1 + noise x N(0, 1)), floored at `floor_bps`, and an outage (rate 0) starts with
`outage_probability` per interval and lasts a geometric number of intervals of mean `outage_mean_s`.

Parameters given as ranges (lo, hi) are drawn per trace (uniformly; `scale` log-uniformly), so a set
spans a distribution of links; a curriculum is a sequence of sets with harder ranges. Trace `index`
of a set depends only on (seed, index) and the spec: the same seed gives the same traces, and more
traces extend a set without changing the first ones.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

import numpy as np

from netsim.trace import Trace

Range = tuple[float, float]

# Levels spanning the Pensieve/FCC test links and the Envivio ladder (0.3-4.3 Mbit/s), log-spaced.
DEFAULT_LEVELS_BPS: tuple[float, ...] = (0.2e6, 0.4e6, 0.75e6, 1.2e6, 1.85e6, 2.85e6, 4.3e6, 6.5e6)


def _check_range(name: str, value: Range, low: float, high: float, *, open_low: bool = False) -> None:
    lo, hi = value
    shown = f"{lo:g}" if lo == hi else f"{lo:g}:{hi:g}"
    if not (math.isfinite(lo) and math.isfinite(hi)) or lo > hi:
        raise ValueError(f"{name} must be a finite number or a range lo:hi with lo <= hi, got {shown}")
    if (lo <= low if open_low else lo < low) or hi > high:
        bound = "(" if open_low else "["
        raise ValueError(f"{name} must lie in {bound}{low:g}, {high:g}], got {shown}")


@dataclass(frozen=True, kw_only=True, slots=True)
class MarkovSpec:
    """A distribution of Markov-modulated traces (see the module docstring); ranges are (lo, hi)."""

    levels_bps: tuple[float, ...] = DEFAULT_LEVELS_BPS
    scale: Range = (1.0, 1.0)  # every level times a per-trace factor (log-uniform in the range)
    switch_probability: Range = (0.1, 0.1)  # per interval, of leaving the current level
    locality: float = 0.5  # weight ratio per extra level of distance when choosing the next level
    noise: Range = (0.15, 0.15)  # std of the rate around its level, as a fraction of the level
    outage_probability: Range = (0.0, 0.0)  # per interval, of an outage starting
    outage_mean_s: float = 2.0  # mean outage length
    interval_s: float = 1.0
    duration_s: float = 320.0
    floor_bps: float = 50e3  # lowest rate outside outages

    def __post_init__(self) -> None:
        levels = tuple(float(v) for v in self.levels_bps)
        if not levels or not all(math.isfinite(v) and v > 0 for v in levels):
            raise ValueError("levels must be one or more finite rates > 0")
        object.__setattr__(self, "levels_bps", tuple(sorted(levels)))
        _check_range("scale", self.scale, 0.0, 1e6, open_low=True)
        _check_range("switch probability", self.switch_probability, 0.0, 1.0)
        _check_range("noise", self.noise, 0.0, 10.0)
        _check_range("outage probability", self.outage_probability, 0.0, 1.0)
        if self.outage_probability[1] >= 1.0:
            raise ValueError("outage probability must be < 1 (1 would leave no time outside outages)")
        if not 0 < self.locality <= 1:
            raise ValueError(f"locality must be in (0, 1], got {self.locality:g}")
        if not (math.isfinite(self.interval_s) and self.interval_s > 0):
            raise ValueError(f"interval must be > 0 s, got {self.interval_s:g}")
        if not (math.isfinite(self.duration_s) and self.duration_s >= self.interval_s):
            raise ValueError(f"duration ({self.duration_s:g} s) must be at least one interval ({self.interval_s:g} s)")
        if self.duration_s / self.interval_s > 10_000_000:
            raise ValueError(f"{self.duration_s:g} s in {self.interval_s:g} s intervals is over 10 million intervals")
        if not (math.isfinite(self.outage_mean_s) and self.outage_mean_s > 0):
            raise ValueError(f"outage mean must be > 0 s, got {self.outage_mean_s:g}")
        if not (math.isfinite(self.floor_bps) and self.floor_bps > 0):
            raise ValueError(f"floor must be > 0 bit/s, got {self.floor_bps:g}")

    def as_dict(self) -> dict[str, object]:
        """The parameters, JSON-ready (for a set's provenance)."""
        return {f.name: getattr(self, f.name) for f in fields(self)}


def _draw(rng: np.random.Generator, value: Range, *, log: bool = False) -> float:
    lo, hi = value
    if lo == hi:
        return lo
    return float(np.exp(rng.uniform(np.log(lo), np.log(hi)))) if log else float(rng.uniform(lo, hi))


def markov_trace(spec: MarkovSpec, *, seed: int, index: int = 0, name: str | None = None) -> Trace:
    """Trace `index` of the set `spec` generates for `seed`."""
    if seed < 0 or index < 0:
        raise ValueError(f"seed and index must be >= 0, got seed {seed} and index {index}")
    rng = np.random.default_rng(np.random.SeedSequence([seed, index]))
    scale = _draw(rng, spec.scale, log=True)
    switch = _draw(rng, spec.switch_probability)
    noise = _draw(rng, spec.noise)
    outage = _draw(rng, spec.outage_probability)
    levels = np.asarray(spec.levels_bps) * scale
    count = len(levels)
    intervals = max(1, round(spec.duration_s / spec.interval_s))
    # The chain, drawn with vectorised uniforms: one for "leave?", one for "where to", one for noise.
    leave = rng.random(intervals) < switch
    where = rng.random(intervals)
    gauss = rng.standard_normal(intervals)
    starts = rng.random(intervals) < outage
    lengths = rng.geometric(min(1.0, spec.interval_s / spec.outage_mean_s), size=intervals)
    distance = np.abs(np.arange(count)[:, None] - np.arange(count)[None, :])
    weights = np.where(distance > 0, spec.locality ** np.maximum(distance - 1, 0), 0.0)
    cumulative = np.cumsum(weights / np.maximum(weights.sum(axis=1, keepdims=True), 1e-300), axis=1)
    state = int(rng.integers(count))
    rates = np.empty(intervals)
    outage_left = 0
    for i in range(intervals):
        if count > 1 and leave[i]:
            state = min(int(np.searchsorted(cumulative[state], where[i], side="right")), count - 1)
        if outage_left == 0 and i > 0 and starts[i]:  # the first interval never is one: a trace is never all dark
            outage_left = int(lengths[i])
        if outage_left > 0:
            rates[i] = 0.0
            outage_left -= 1
        else:
            rates[i] = max(levels[state] * (1.0 + noise * gauss[i]), spec.floor_bps)
    return Trace(name=name or f"markov-s{seed}-{index:04d}", durations_s=np.full(intervals, spec.interval_s),
                 bandwidth_bps=rates)


def markov_set(spec: MarkovSpec, *, seed: int, count: int, prefix: str = "markov") -> list[Trace]:
    """`count` traces of `spec` for `seed`, named `{prefix}-s{seed}-{index:04d}`."""
    if count < 1:
        raise ValueError(f"count must be >= 1, got {count}")
    return [markov_trace(spec, seed=seed, index=i, name=f"{prefix}-s{seed}-{i:04d}") for i in range(count)]
