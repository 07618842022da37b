"""Training traces with falling bandwidth: copies of real traces with seeded drops.

The learned policy's losses against the offline optimum concentrate on a few sessions where the
bandwidth collapses for tens of seconds (docs/LEARNED.md, round 6): a policy that keeps a high quality
a little too long stalls for seconds, at 4.3 QoE per second. Rollouts on the real training traces
meet such collapses rarely, so the student seldom sees the states where stepping down pays. A falling
copy is a real trace with drops laid over it: after a normal stretch of `normal_s` seconds the
bandwidth falls to a fraction `factor` of the trace's own (in two steps, `ramp_s` apart, as a link
degrades), stays there `drop_s` seconds and recovers; the stretches repeat over the whole trace.
Everything else (the trace's own variation, its duration) is the real trace's, so the student learns
to step down on the throughput history it will actually see.

A copy depends on (seed, trace index, copy) only. Copies are made from the fit share of the training
traces, never from validation or test traces.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from netsim.trace import Trace


@dataclass(frozen=True, kw_only=True, slots=True)
class FallingSpec:
    """Ranges (low, high) each drop draws its values from, uniformly."""

    normal_s: tuple[float, float] = (30.0, 90.0)
    drop_s: tuple[float, float] = (8.0, 30.0)
    factor: tuple[float, float] = (0.08, 0.4)
    ramp_s: tuple[float, float] = (1.0, 4.0)

    def __post_init__(self) -> None:
        for name in ("normal_s", "drop_s", "factor", "ramp_s"):
            low, high = getattr(self, name)
            if not (0 < low <= high) or not np.isfinite(high):
                raise ValueError(f"FallingSpec.{name} must be a range 0 < low <= high, got {(low, high)}")
        if self.factor[1] > 1:
            raise ValueError(f"FallingSpec.factor is a fraction of the bandwidth (<= 1), got {self.factor}")


def _multiplier(duration_s: float, rng: np.random.Generator, spec: FallingSpec) -> tuple[np.ndarray, np.ndarray]:
    """(edges_s, factor): the factor from edges[i] to edges[i + 1] (the last one to the end)."""
    edges, factors = [0.0], [1.0]
    t = float(rng.uniform(0.0, spec.normal_s[1]))  # the first drop anywhere in the first stretch
    while t < duration_s:
        low = float(rng.uniform(*spec.factor))
        ramp, drop = float(rng.uniform(*spec.ramp_s)), float(rng.uniform(*spec.drop_s))
        edges += [t, t + ramp, t + ramp + drop]
        factors += [(1.0 + low) / 2, low, 1.0]
        t += ramp + drop + float(rng.uniform(*spec.normal_s))
    return np.asarray(edges), np.asarray(factors)


def falling_copy(trace: Trace, rng: np.random.Generator, spec: FallingSpec, name: str) -> Trace:
    """`trace` with drops laid over it (its intervals cut where a drop starts or ends)."""
    ends = np.cumsum(trace.durations_s)
    total = float(ends[-1])
    edges, factors = _multiplier(total, rng, spec)
    cuts = np.union1d(np.concatenate([[0.0], ends]), edges[(edges > 0) & (edges < total)])
    cuts = cuts[np.concatenate([[True], np.diff(cuts) >= 1e-3])]  # no sliver intervals: merged into the last
    cuts[-1] = total
    mids = (cuts[:-1] + cuts[1:]) / 2
    source = np.minimum(np.searchsorted(ends, mids, side="right"), len(ends) - 1)
    factor = factors[np.searchsorted(edges, mids, side="right") - 1]
    latency = None if trace.latency_s is None else trace.latency_s[source]
    return Trace(name=name, durations_s=np.diff(cuts), bandwidth_bps=trace.bandwidth_bps[source] * factor,
                 latency_s=latency)


def falling_copies(traces: Sequence[Trace], copies: int, seed: int, spec: FallingSpec | None = None) -> list[Trace]:
    """`copies` falling copies of each trace, named `<trace>~falling<k>`."""
    if copies < 0:
        raise ValueError(f"copies must be >= 0, got {copies}")
    spec = spec or FallingSpec()
    return [falling_copy(trace, np.random.default_rng([seed, 0xFA11, j, k]), spec, f"{trace.name}~falling{k}")
            for j, trace in enumerate(traces) for k in range(copies)]
