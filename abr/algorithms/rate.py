"""`rate`: the highest bitrate at most the predicted throughput.

The default predictor is the harmonic mean of the last 5 samples (bytes over whole request time,
TTFB included), as in Pensieve's rate-based baseline; before any sample it picks quality 0.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from abr.algorithms.common import batch_arithmetic_mean, batch_harmonic_mean, batch_samples_bps, mbps
from abr.estimators import DownloadLog, EstimatorConfig
from abr.registry import parameters_from, register
from abr.types import BatchObservation, Decision, Observation

_DEFAULT_WINDOW = {"harmonic": 5, "window": 4}


@dataclass(frozen=True, kw_only=True, slots=True)
class RateParams:
    """Predictor `estimator` (harmonic | ewma | window), its `window` in samples (None: 5 for harmonic,
    4 for window), and a `safety` factor in (0, 1] applied to the prediction."""

    estimator: str = "harmonic"
    window: int | None = None
    safety: float = 1.0

    def __post_init__(self) -> None:
        self.estimator_config()  # validates

    def estimator_config(self) -> EstimatorConfig:
        window = self.window if self.window is not None else _DEFAULT_WINDOW.get(self.estimator)
        return EstimatorConfig(kind=self.estimator, window=window, safety=self.safety)


class Rate:
    """Throughput-based: quality = highest bitrate <= the estimate."""

    name = "rate"
    conformance_tags = frozenset({"bandwidth-monotone", "buffer-monotone"})

    def __init__(self, params: RateParams) -> None:
        self.params = params
        self._config = params.estimator_config()
        self._estimator = self._config.build()
        self._log = DownloadLog()

    def decide(self, obs: Observation) -> Decision:
        for download in self._log.new(obs.downloads):
            self._estimator.feed(download)
        estimate_bps = self._estimator.estimate_bps()
        if estimate_bps is None:
            return Decision(quality=0, reason="no throughput sample yet -> q0")
        quality = obs.ladder.highest_at_most(estimate_bps)
        return Decision(quality=quality, reason=f"{self._config.kind} {mbps(estimate_bps)} -> q{quality}")


class BatchRate(Rate):
    """`Rate` with a windowed predictor, vectorised over sessions in lock-step."""

    conformance_tags = Rate.conformance_tags | {"batch"}
    conformance_variants: tuple[dict[str, object], ...] = ({}, {"estimator": "window", "safety": 0.8}, {"estimator": "ewma"})

    def decide_batch(self, obs: BatchObservation) -> np.ndarray:
        window = self._config.window
        assert window is not None  # the factory builds BatchRate only for windowed predictors
        samples = batch_samples_bps(obs, window)
        mean = batch_harmonic_mean(samples) if self._config.kind == "harmonic" else batch_arithmetic_mean(samples)
        if self._config.safety != 1.0:
            mean = mean * self._config.safety
        rates = np.asarray(obs.ladder.bitrates_bps, dtype=np.float64)
        quality = np.searchsorted(rates, mean, side="right") - 1  # highest bitrate <= mean
        return np.where(np.isnan(mean), 0, np.maximum(quality, 0)).astype(np.int64)


@parameters_from(RateParams)
def make_rate(**params: object) -> Rate:
    config = RateParams(**params)  # type: ignore[arg-type]
    return BatchRate(config) if config.estimator in _DEFAULT_WINDOW else Rate(config)


register("rate", make_rate, "throughput-based: highest bitrate <= harmonic mean of the last 5 samples")
