"""Small helpers the algorithm modules share: reason formatting and batched throughput samples."""

from __future__ import annotations

import numpy as np

from abr.estimators import throughput_bps_array
from abr.types import BatchObservation


def mbps(rate_bps: float) -> str:
    """A rate for a decision's reason string."""
    return f"{rate_bps / 1e6:.2f} Mbit/s"


def batch_samples_bps(obs: BatchObservation, window: int) -> np.ndarray:
    """(B, k) throughput samples of each session's last k = min(H, window) downloads, oldest first,
    computed as `abr.estimators.sample_bps` does so batch and scalar estimates round alike."""
    k = min(obs.download_bytes.shape[1], window)
    return throughput_bps_array(obs.download_bytes[:, obs.download_bytes.shape[1] - k:],
                                obs.download_s[:, obs.download_s.shape[1] - k:])


def batch_harmonic_mean(samples: np.ndarray) -> np.ndarray:
    """Row-wise `abr.estimators.harmonic_mean` with the same order of operations; NaN for empty rows."""
    rows, k = samples.shape
    if k == 0:
        return np.full(rows, np.nan)
    total = np.zeros(rows)
    with np.errstate(divide="ignore"):
        for j in range(k):
            total = total + 1.0 / samples[:, j]
        mean = 1.0 / (total / k)
    return np.where(np.any(samples <= 0, axis=1), 0.0, mean)


def batch_arithmetic_mean(samples: np.ndarray) -> np.ndarray:
    """Row-wise mean summed left to right like Python's `sum`; NaN for empty rows."""
    rows, k = samples.shape
    if k == 0:
        return np.full(rows, np.nan)
    total = np.zeros(rows)
    for j in range(k):
        total = total + samples[:, j]
    return total / k
