"""A learned throughput predictor, after Puffer's transmission-time predictor (Yan et al., "Learning
in situ", NSDI 2020): a regressor fitted, by supervised learning, on what the link really offered
after each history of the player's own downloads. Research code: how much it (or the truth it
estimates) would add to the learned policy's inputs is measured by `bench/prediction_headroom.py`
(docs/LEARNED.md, round 13); nothing at runtime uses it.

Targets, in log2 Mbit/s, from a session's next request (`future_capacity_bps`): the link's mean
capacity during the next segment's transfer at the last quality played, and over the next `window_s`.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from abr.types import BatchAbr, Download
from netsim.trace import Trace
from player.research.dagger_batch import start_sessions
from player.research.sim import LockStep, SimProfile, download_step
from player.video import Video

TARGETS = ("next", "window")  # the columns of `future_capacity_bps` and of a prediction
KINDS = ("mlp", "linear")
_LOG2_MBPS_CLIP = (-10.0, 8.0)  # 1 kbit/s .. 256 Mbit/s
_DOWNLOAD_10S_CLIP = 5.0


@dataclass(frozen=True, kw_only=True, slots=True)
class PredictorConfig:
    """`history` downloads seen per prediction; an MLP (`hidden_sizes`, L2 `l2_alpha`, `max_epochs`
    of Adam) or a ridge regression (`kind="linear"`, L2 `l2_alpha`), seeded by `seed`."""

    history: int = 8
    kind: str = "mlp"
    hidden_sizes: tuple[int, ...] = (64, 64)
    l2_alpha: float = 1e-3
    max_epochs: int = 100
    seed: int = 0

    def __post_init__(self) -> None:
        if self.history < 1:
            raise ValueError(f"history must be >= 1 download, got {self.history}")
        if self.kind not in KINDS:
            raise ValueError(f"unknown predictor kind {self.kind!r}; choose from {', '.join(KINDS)}")
        if not self.hidden_sizes or any(h < 1 for h in self.hidden_sizes):
            raise ValueError(f"hidden_sizes must be one or more positive widths, got {self.hidden_sizes}")
        if not (self.l2_alpha >= 0 and np.isfinite(self.l2_alpha)):
            raise ValueError(f"l2_alpha must be finite and >= 0, got {self.l2_alpha}")
        if self.max_epochs < 1:
            raise ValueError(f"max_epochs must be >= 1, got {self.max_epochs}")


def input_names(history: int) -> tuple[str, ...]:
    return (tuple(f"log2_mbps_{k}" for k in range(history)) + tuple(f"download_10s_{k}" for k in range(history))
            + ("seen_frac",))


def history_inputs(download_bytes: np.ndarray, download_s: np.ndarray, history: int) -> np.ndarray:
    """(B, 2 * history + 1) inputs from B sessions' downloads so far, (B, h) each, oldest first: the
    log2 throughput in Mbit/s of the last `history` downloads (missing ones repeat the oldest seen),
    their download times / 10 s (0 when missing) and the share of the `history` seen."""
    size, seconds = np.asarray(download_bytes, dtype=np.float64), np.asarray(download_s, dtype=np.float64)
    if size.ndim != 2 or seconds.shape != size.shape:
        raise ValueError(f"need (B, h) download sizes and times of one shape, got {size.shape} and {seconds.shape}")
    if size.shape[1] == 0:
        raise ValueError("a prediction needs at least one download seen")
    if not (np.all(np.isfinite(size)) and np.all(size >= 0)):
        raise ValueError("download sizes must be finite and >= 0 bytes")
    if not (np.all(np.isfinite(seconds)) and np.all(seconds > 0)):
        raise ValueError("download times must be finite and > 0 s")
    size, seconds = size[:, -history:], seconds[:, -history:]
    seen = size.shape[1]
    with np.errstate(divide="ignore"):
        log_rate = np.clip(np.log2(size * 8.0 / seconds / 1e6), *_LOG2_MBPS_CLIP)
    pad = history - seen
    log_rate = np.concatenate([np.repeat(log_rate[:, :1], pad, axis=1), log_rate], axis=1)
    times = np.concatenate([np.zeros((size.shape[0], pad)), np.minimum(seconds / 10.0, _DOWNLOAD_10S_CLIP)], axis=1)
    return np.concatenate([log_rate, times, np.full((size.shape[0], 1), seen / history)], axis=1)


def future_capacity_bps(state: LockStep, window_s: float) -> np.ndarray:
    """(B, 2) what the link offers each session of `state` from its next request (trace time
    `state.trace_time_s`): the mean capacity during the transfer of the next segment at the last
    quality played (rung 0 before any), and the mean over the next `window_s`. Payload as the
    simulator counts it (the profile's payload factor). The first column needs no choice: at the
    quality about to be chosen, the transfer's length would tell a policy fed with it that choice."""
    if not window_s > 0:
        raise ValueError(f"window_s must be > 0 s, got {window_s}")
    prof, t = state.prof, state.trace_time_s
    size = state.video.sizes_bytes[state.segment_index, np.maximum(state.last_quality, 0)].astype(np.float64)
    finish, _ = download_step(state.links, state.latency, prof, t, size, state.which)  # the simulator's own step
    start = t + state.latency.at(t, state.which) if prof.latency_on_trace_clock else t  # its first byte's request
    payload = size + prof.response_header_bytes
    return np.stack([payload * 8.0 / (finish - start), mean_capacity_bps(state, 0.0, window_s)], axis=1)


def mean_capacity_bps(state: LockStep, from_s: float, to_s: float) -> np.ndarray:
    """(B,) each session's mean link capacity from `from_s` to `to_s` after its next request."""
    if not to_s > from_s:
        raise ValueError(f"need from_s < to_s, got {from_s} and {to_s}")
    links, which, t = state.links, state.which, state.trace_time_s
    return (links.bytes_until(t + to_s, which) - links.bytes_until(t + from_s, which)) * 8.0 / (to_s - from_s)


@dataclass(frozen=True, kw_only=True, slots=True, eq=False)
class Histories:
    """B sessions played to the end: every download as the player measured it, (B, n), and before
    each request i what the link then offered (`truth_bps[:, i]`, `future_capacity_bps`)."""

    download_bytes: np.ndarray  # (B, n)
    download_s: np.ndarray  # (B, n) request to last byte
    ttfb_s: np.ndarray  # (B, n) request to first byte
    request_s: np.ndarray  # (B, n) session time of each request
    quality: np.ndarray  # (B, n)
    truth_bps: np.ndarray  # (B, n, 2)

    def downloads(self, session: int) -> list[Download]:
        """Session `session`'s downloads as `abr.estimators` are fed them."""
        return [Download(segment_index=i, quality=int(self.quality[session, i]),
                         size_bytes=int(self.download_bytes[session, i]), duration_s=float(self.download_s[session, i]),
                         ttfb_s=float(self.ttfb_s[session, i]), start_time_s=float(self.request_s[session, i]))
                for i in range(self.download_bytes.shape[1])]


def play_histories(abr: BatchAbr, video: Video, prof: SimProfile, traces: Sequence[Trace], which: Sequence[int],
                   offsets_s: Sequence[float], *, window_s: float) -> Histories:
    """Sessions j = 0..B-1 of `abr` on `traces[which[j]]` from `offsets_s[j]` on the lock-step engine,
    with the truth before every request."""
    state = start_sessions(video, prof, traces, offsets_s, which)
    truth, ttfb = [], []
    while not state.done:
        truth.append(future_capacity_bps(state, window_s))
        ttfb.append(state.latency.at(state.trace_time_s, state.which))
        fixed = state.fixed_quality()
        state.step(fixed if fixed is not None else np.asarray(abr.decide_batch(state.observation()), dtype=np.int64))
    return Histories(download_bytes=state.hist_bytes.copy(), download_s=state.hist_s.copy(),
                     ttfb_s=np.stack(ttfb, axis=1), request_s=state.request_s.T.copy(), quality=state.qualities.T.copy(),
                     truth_bps=np.stack(truth, axis=1))


def training_set(histories: Histories, history: int) -> tuple[np.ndarray, np.ndarray]:
    """(inputs, targets in log2 Mbit/s) of every request with at least one download before it."""
    n = histories.download_bytes.shape[1]
    inputs = [history_inputs(histories.download_bytes[:, :i], histories.download_s[:, :i], history) for i in range(1, n)]
    targets = np.log2(histories.truth_bps[:, 1:].transpose(1, 0, 2).reshape(-1, len(TARGETS)) / 1e6)
    return np.concatenate(inputs), np.clip(targets, *_LOG2_MBPS_CLIP)


@dataclass(frozen=True, kw_only=True, slots=True, eq=False)
class ThroughputPredictor:
    """A fitted predictor: `predict_log2_mbps(history_inputs(...))` is (B, 2), the `TARGETS` columns."""

    config: PredictorConfig
    model_: Any  # a fitted scikit-learn pipeline (standardisation, then the regressor)

    def predict_log2_mbps(self, inputs: np.ndarray) -> np.ndarray:
        width = 2 * self.config.history + 1
        if inputs.ndim != 2 or inputs.shape[1] != width:
            raise ValueError(f"need (B, {width}) inputs for a history of {self.config.history}, got {inputs.shape}")
        return np.asarray(self.model_.predict(inputs), dtype=np.float64).reshape(-1, len(TARGETS))


def fit_predictor(inputs: np.ndarray, targets: np.ndarray, config: PredictorConfig) -> ThroughputPredictor:
    """Fit on (n, 2 * history + 1) inputs and (n, 2) targets in log2 Mbit/s, on one BLAS thread (the
    same seed gives the same predictor)."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import Ridge
    from sklearn.neural_network import MLPRegressor
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from threadpoolctl import threadpool_limits

    width = 2 * config.history + 1
    if inputs.ndim != 2 or inputs.shape[1] != width or targets.shape != (inputs.shape[0], len(TARGETS)):
        raise ValueError(f"need (n, {width}) inputs and (n, {len(TARGETS)}) targets, got {inputs.shape} and "
                         f"{targets.shape}")
    if inputs.shape[0] < 2:
        raise ValueError(f"need at least 2 samples to fit, got {inputs.shape[0]}")
    if not (np.all(np.isfinite(inputs)) and np.all(np.isfinite(targets))):
        raise ValueError("inputs and targets must be finite")
    if config.kind == "mlp":
        regressor: Any = MLPRegressor(hidden_layer_sizes=config.hidden_sizes, alpha=config.l2_alpha,
                                      max_iter=config.max_epochs, random_state=config.seed, shuffle=True)
    else:
        regressor = Ridge(alpha=config.l2_alpha)
    model = make_pipeline(StandardScaler(), regressor)
    with threadpool_limits(limits=1), warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.fit(inputs, targets)
    return ThroughputPredictor(config=config, model_=model)


class PredictedThroughput:
    """A `ThroughputEstimator` (fed downloads oldest first) that answers with a predictor's estimate
    of one target (`TARGETS`), so that estimator benches score it like any other; None before the
    first download."""

    def __init__(self, predictor: ThroughputPredictor, target: str = "next") -> None:
        if target not in TARGETS:
            raise ValueError(f"unknown target {target!r}; choose from {', '.join(TARGETS)}")
        self.predictor, self.column = predictor, TARGETS.index(target)
        self._bytes: list[float] = []
        self._seconds: list[float] = []

    def feed(self, download: Download) -> None:
        self._bytes.append(float(download.size_bytes))
        self._seconds.append(float(download.duration_s))

    def estimate_bps(self) -> float | None:
        if not self._bytes:
            return None
        inputs = history_inputs(np.asarray([self._bytes]), np.asarray([self._seconds]), self.predictor.config.history)
        return float(2.0 ** self.predictor.predict_log2_mbps(inputs)[0, self.column] * 1e6)
