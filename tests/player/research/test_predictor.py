"""The learned throughput predictor (research): its inputs, the truth it is fitted on, determinism,
refusals, and a history whose next value it must predict where the harmonic mean cannot."""

from __future__ import annotations

import numpy as np
import pytest

from abr.estimators import HarmonicMean
from abr.registry import make
from abr.types import Download
from netsim import synthetic
from player.research.predictor import (
    PredictedThroughput,
    PredictorConfig,
    fit_predictor,
    future_capacity_bps,
    history_inputs,
    play_histories,
    training_set,
)
from player.research.sim import PROFILES, LatencyLookup, LockStep
from player.video import Video

PERIOD_MBPS = (0.5, 2.0, 4.0)  # a link whose next rate follows from the last one


def test_history_inputs_pad_missing_downloads_and_keep_the_last_ones() -> None:
    size = np.array([[125_000.0, 250_000.0, 500_000.0]])  # 1, 2 and 4 Mbit/s over 1 s each
    seconds = np.ones((1, 3))
    x = history_inputs(size, seconds, 5)
    assert x.shape == (1, 11)
    np.testing.assert_allclose(x[0, :5], [0.0, 0.0, 0.0, 1.0, 2.0])  # log2 Mbit/s, the oldest repeated
    np.testing.assert_allclose(x[0, 5:10], [0.0, 0.0, 0.1, 0.1, 0.1])  # download times / 10 s, 0 when missing
    assert x[0, 10] == pytest.approx(3 / 5)
    last_two = history_inputs(size, seconds, 2)
    np.testing.assert_allclose(last_two[0], [1.0, 2.0, 0.1, 0.1, 1.0])


@pytest.mark.parametrize(("size", "seconds", "message"), [
    (np.zeros((2, 0)), np.zeros((2, 0)), "at least one download"),
    (np.ones((2, 3)), np.ones((2, 2)), "one shape"),
    (np.ones(3), np.ones(3), r"\(B, h\)"),
    (-np.ones((1, 2)), np.ones((1, 2)), "sizes must be finite and >= 0"),
    (np.ones((1, 2)), np.zeros((1, 2)), "times must be finite and > 0"),
    (np.ones((1, 2)), np.array([[1.0, np.nan]]), "times must be finite"),
])
def test_history_inputs_refuse_bad_downloads(size: np.ndarray, seconds: np.ndarray, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        history_inputs(size, seconds, 8)


def test_config_and_fit_refuse_bad_values() -> None:
    with pytest.raises(ValueError, match="history must be >= 1"):
        PredictorConfig(history=0)
    with pytest.raises(ValueError, match="unknown predictor kind 'tree'"):
        PredictorConfig(kind="tree")
    with pytest.raises(ValueError, match=r"need \(n, 17\) inputs and \(n, 2\) targets"):
        fit_predictor(np.zeros((10, 16)), np.zeros((10, 2)), PredictorConfig())
    with pytest.raises(ValueError, match="finite"):
        fit_predictor(np.full((10, 17), np.nan), np.zeros((10, 2)), PredictorConfig())
    with pytest.raises(ValueError, match="unknown target"):
        PredictedThroughput(fit_predictor(np.zeros((4, 3)), np.zeros((4, 2)), PredictorConfig(history=1, kind="linear")),
                            "later")


def _periodic_sessions(sessions: int, downloads: int, seed: int) -> list[list[Download]]:
    """Downloads of 1 s each whose rate cycles through `PERIOD_MBPS` from a random phase."""
    phases = np.random.default_rng(seed).integers(0, len(PERIOD_MBPS), size=sessions)
    return [[Download(segment_index=i, quality=0, size_bytes=int(PERIOD_MBPS[(p + i) % 3] * 1e6 / 8), duration_s=1.0)
             for i in range(downloads)] for p in phases]


def _arrays(sessions: list[list[Download]]) -> tuple[np.ndarray, np.ndarray]:
    return (np.array([[d.size_bytes for d in s] for s in sessions], dtype=np.float64),
            np.array([[d.duration_s for d in s] for s in sessions]))


def _periodic_training_set(history: int) -> tuple[np.ndarray, np.ndarray]:
    size, seconds = _arrays(_periodic_sessions(60, 12, seed=0))
    rate = np.log2(size * 8 / seconds / 1e6)
    x = np.concatenate([history_inputs(size[:, :i], seconds[:, :i], history) for i in range(1, 12)])
    y = np.concatenate([rate[:, i] for i in range(1, 12)])
    return x, np.stack([y, y], axis=1)


def _relative_errors(build: object, sessions: list[list[Download]]) -> np.ndarray:
    errors = []
    for downloads in sessions:
        estimator = build()  # type: ignore[operator]
        for d in downloads:
            estimate = estimator.estimate_bps()
            if estimate is not None:
                true_bps = d.size_bytes * 8 / d.duration_s
                errors.append(abs(estimate - true_bps) / true_bps)
            estimator.feed(d)
    return np.asarray(errors)


@pytest.mark.parametrize("kind", ["mlp", "linear"])
def test_the_predictor_learns_a_periodic_link_the_harmonic_mean_cannot_follow(kind: str) -> None:
    config = PredictorConfig(history=4, kind=kind, hidden_sizes=(32,), max_epochs=300,
                             l2_alpha=1e-4 if kind == "mlp" else 1e-3)
    predictor = fit_predictor(*_periodic_training_set(config.history), config)
    held = _periodic_sessions(10, 12, seed=1)
    learned = _relative_errors(lambda: PredictedThroughput(predictor, "next"), held)
    harmonic = _relative_errors(lambda: HarmonicMean(window=5), held)
    assert learned.size == harmonic.size == 10 * 11
    # The harmonic mean of (0.5, 2, 4) is 1.04 Mbit/s: off by half or more whatever comes next.
    assert np.median(harmonic) > 0.4
    assert np.median(learned) < 0.05 and np.mean(learned) < 0.5 * np.mean(harmonic)


def test_a_seed_gives_the_same_predictor() -> None:
    x, y = _periodic_training_set(4)
    config = PredictorConfig(history=4, hidden_sizes=(16,), max_epochs=20)
    first, again = fit_predictor(x, y, config), fit_predictor(x, y, config)
    other = fit_predictor(x, y, PredictorConfig(history=4, hidden_sizes=(16,), max_epochs=20, seed=1))
    assert first.predict_log2_mbps(x).shape == (x.shape[0], 2)
    np.testing.assert_array_equal(first.predict_log2_mbps(x), again.predict_log2_mbps(x))
    assert not np.array_equal(first.predict_log2_mbps(x), other.predict_log2_mbps(x))


def test_histories_hold_the_links_truth_before_every_request(video_10: Video) -> None:
    prof = PROFILES["pensieve"]
    traces = [synthetic.constant(2e6, duration_s=300.0), synthetic.step([4e6, 1e6], step_s=20.0)]
    runs = play_histories(make("bba"), video_10, prof, traces, [0, 1, 1], [0.0, 0.0, 10.0], window_s=20.0)
    assert runs.download_bytes.shape == runs.quality.shape == (3, 10) and runs.truth_bps.shape == (3, 10, 2)
    # Constant link: both targets are its payload rate.
    np.testing.assert_allclose(runs.truth_bps[0], 2e6 * prof.payload_factor, rtol=1e-9)
    # Step link from 10 s: the next 20 s are 10 s at 4 and 10 s at 1 Mbit/s.
    assert runs.truth_bps[2, 0, 1] == pytest.approx(2.5e6 * prof.payload_factor, rel=1e-9)
    # The next transfer's truth is what that transfer measured when the quality stayed the same.
    measured = runs.download_bytes * 8 / (runs.download_s - runs.ttfb_s)
    same = np.zeros_like(runs.quality, dtype=bool)
    same[:, 1:] = runs.quality[:, 1:] == runs.quality[:, :-1]
    assert same.sum() > 10
    np.testing.assert_allclose(runs.truth_bps[..., 0][same], measured[same], rtol=1e-9)
    x, y = training_set(runs, 8)
    assert x.shape == (3 * 9, 17) and y.shape == (3 * 9, 2)
    np.testing.assert_allclose(y[0], np.log2(2e6 * prof.payload_factor / 1e6))
    assert [d.size_bytes for d in runs.downloads(1)] == [int(b) for b in runs.download_bytes[1]]


def test_future_capacity_refuses_an_empty_window(video_10: Video) -> None:
    from netsim.link import LinkBatch

    prof = PROFILES["pensieve"]
    traces = [synthetic.constant(2e6, duration_s=100.0)]
    state = LockStep(video_10, prof, LinkBatch(traces, payload_factor=prof.payload_factor), LatencyLookup(traces, prof),
                     np.zeros(1))
    with pytest.raises(ValueError, match="window_s must be > 0"):
        future_capacity_bps(state, 0.0)
