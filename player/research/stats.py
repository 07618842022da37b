"""Small statistics for reports: mean with a Student-t 95% interval, and bootstrap intervals."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

# Two-sided 95% Student-t quantiles t(0.975, df) for df = 1..30; beyond that the normal 1.96 is
# within 2% and is used.
_T975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145,
         2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048,
         2.045, 2.042)


@dataclass(frozen=True, kw_only=True, slots=True)
class Interval:
    mean: float
    low: float
    high: float
    n: int

    @property
    def half_width(self) -> float:
        return (self.high - self.low) / 2

    def __str__(self) -> str:
        if self.n < 2:  # one value has no spread to estimate: say so rather than print "± 0.00"
            return f"{self.mean:.2f} (n=1, no CI)" if self.n == 1 else "n/a"
        return f"{self.mean:.2f} ± {self.half_width:.2f}"


def t_quantile_975(df: int) -> float:
    if df < 1:
        return math.nan
    return _T975[df - 1] if df <= len(_T975) else 1.96


def mean_ci(values: Sequence[float] | np.ndarray) -> Interval:
    """Mean and its 95% confidence interval (Student t)."""
    x = np.asarray(values, dtype=np.float64)
    n = x.size
    if n == 0:
        return Interval(mean=math.nan, low=math.nan, high=math.nan, n=0)
    mean = float(x.mean())
    if n == 1:
        return Interval(mean=mean, low=mean, high=mean, n=1)
    half = t_quantile_975(n - 1) * float(x.std(ddof=1)) / math.sqrt(n)
    return Interval(mean=mean, low=mean - half, high=mean + half, n=n)


def bootstrap_ci(values: Sequence[float] | np.ndarray, statistic: Callable[[np.ndarray], float] = np.mean, *,
                 resamples: int = 2000, seed: int = 0) -> Interval:
    """Percentile bootstrap 95% interval of `statistic` (seeded, so reports are reproducible)."""
    x = np.asarray(values, dtype=np.float64)
    if x.size == 0:
        return Interval(mean=math.nan, low=math.nan, high=math.nan, n=0)
    rng = np.random.default_rng(seed)
    samples = x[rng.integers(0, x.size, size=(resamples, x.size))]
    stats = np.apply_along_axis(statistic, 1, samples) if statistic is not np.mean else samples.mean(axis=1)
    low, high = np.percentile(stats, [2.5, 97.5])
    return Interval(mean=float(statistic(x)), low=float(low), high=float(high), n=int(x.size))


def relative_pct(difference: float, reference: float) -> float:
    """`difference` as a percentage of `reference`'s magnitude (NaN when the reference is 0)."""
    return 100.0 * difference / abs(reference) if reference else math.nan


@dataclass(frozen=True, kw_only=True, slots=True)
class PairedComparison:
    """An algorithm against a baseline over the sessions both ran (same trace, same start offset):
    the mean of the per-session differences (algorithm - baseline) with a percentile bootstrap 95%
    interval, and how many sessions it won, tied and lost."""

    abr: str
    baseline: str
    pairs: int
    baseline_mean: float
    difference: Interval
    wins: int
    ties: int
    losses: int

    @property
    def relative_pct(self) -> float:
        """The mean difference as a percentage of the baseline's mean (NaN when that is 0)."""
        return relative_pct(self.difference.mean, self.baseline_mean)

    def as_dict(self) -> dict[str, object]:
        return {"baseline": self.baseline, "pairs": self.pairs, "baseline_mean": self.baseline_mean,
                "difference_mean": self.difference.mean, "difference_ci95": [self.difference.low, self.difference.high],
                "relative_pct": self.relative_pct, "wins": self.wins, "ties": self.ties, "losses": self.losses}


def paired_comparison(abr: str, values: dict[str, float], baseline: str, baseline_values: dict[str, float], *,
                      seed: int = 0, tie_tolerance: float = 1e-9) -> PairedComparison:
    """`abr` against `baseline` on the session keys both have (values keyed by session)."""
    keys = [k for k in values if k in baseline_values]
    mine = np.array([values[k] for k in keys], dtype=np.float64)
    base = np.array([baseline_values[k] for k in keys], dtype=np.float64)
    diff = mine - base
    tied = np.abs(diff) <= tie_tolerance * np.maximum(1.0, np.abs(base))
    return PairedComparison(
        abr=abr, baseline=baseline, pairs=len(keys), baseline_mean=float(base.mean()) if keys else math.nan,
        difference=bootstrap_ci(diff, seed=seed), wins=int(np.sum((diff > 0) & ~tied)), ties=int(np.sum(tied)),
        losses=int(np.sum((diff < 0) & ~tied)),
    )
