"""A bounded summary of a long stream of magnitudes (A/V offsets, drift): count, mean, max and
percentiles in fixed memory, however long a window plays.

The first `exact_limit` values are kept as they are, so a session of a few minutes reports exactly
what `numpy.percentile` (linear interpolation) would. Past that, values go into logarithmic bins
(HdrHistogram's idea): bin i > 0 holds [floor * gamma**(i-1), floor * gamma**i), bin 0 everything
below `floor`. A percentile is then interpolated between the two order statistics numpy would use,
each read as its bin's geometric middle (clamped to the exact min and max), so it is off by at most
`relative_error` of the value plus `floor / 2` (values below `floor` share one bin). Count, mean,
min and max stay exact. With the defaults (0.5 %, 0.01 ms) values from 0 to a day in ms need at
most about 2,300 bins.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

EXACT_LIMIT = 4096


@dataclass(slots=True)
class Distribution:
    """Streaming count/mean/min/max/percentiles of non-negative values in bounded memory."""

    exact_limit: int = EXACT_LIMIT
    relative_error: float = 0.005
    floor: float = 0.01
    count: int = 0
    total: float = 0.0
    min: float = math.inf
    max: float = 0.0
    _exact: list[float] = field(default_factory=list)
    _bins: dict[int, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not 0.0 < self.relative_error < 1.0 or self.floor <= 0.0 or self.exact_limit < 1:
            raise ValueError("relative_error must be in (0, 1), floor > 0 and exact_limit >= 1")

    @property
    def _log_gamma(self) -> float:
        # gamma = (1 + e) ** 2: a bin's geometric middle is within e of every value in the bin.
        return 2.0 * math.log1p(self.relative_error)

    def add(self, value: float) -> None:
        if value < 0.0 or math.isnan(value):
            raise ValueError(f"a magnitude must be >= 0, got {value}")
        self.count += 1
        self.total += value
        self.min = min(self.min, value)
        self.max = max(self.max, value)
        if self._bins or len(self._exact) >= self.exact_limit:
            for kept in self._exact:
                self._bin(kept)
            self._exact.clear()
            self._bin(value)
        else:
            self._exact.append(value)

    def _bin(self, value: float) -> None:
        index = 0 if value < self.floor else 1 + int(math.log(value / self.floor) / self._log_gamma)
        self._bins[index] = self._bins.get(index, 0) + 1

    @property
    def size(self) -> int:
        """How many numbers are held (bounded by `exact_limit` + the bins a range of values needs)."""
        return len(self._exact) + len(self._bins)

    @property
    def mean(self) -> float:
        return self.total / self.count if self.count else 0.0

    def percentile(self, q: float) -> float:
        """The q-th percentile (0-100) as `numpy.percentile` computes it (exact while at most
        `exact_limit` values came, else within the stated error); 0.0 when empty."""
        if not self.count:
            return 0.0
        if not self._bins:
            return float(np.percentile(np.asarray(self._exact), q))
        rank = (self.count - 1) * q / 100.0
        low, high = math.floor(rank), math.ceil(rank)
        a, b = self._order_statistic(low), self._order_statistic(high)
        return a + (b - a) * (rank - low)

    def _order_statistic(self, k: int) -> float:
        """The k-th smallest value (0-based), read as its bin's middle."""
        seen = 0
        for index in sorted(self._bins):
            seen += self._bins[index]
            if k < seen:
                if index == 0:
                    middle = self.floor / 2
                else:
                    middle = self.floor * math.exp((index - 0.5) * self._log_gamma)
                return min(max(middle, self.min), self.max)
        return self.max
