"""Throughput estimators: samples, harmonic/sliding/EWMA means, safety factor, new-download tracking."""

from __future__ import annotations

import math

import numpy as np
import pytest

from abr.algorithms.common import batch_arithmetic_mean, batch_harmonic_mean
from abr.estimators import (
    DashEwma,
    DownloadLog,
    EstimatorConfig,
    HarmonicMean,
    LatencyEwma,
    SabreEwma,
    SabreSlidingWindow,
    Safe,
    SlidingWindowMean,
    estimate,
    harmonic_mean,
    sample_bps,
    throughput_bps,
    throughput_bps_array,
)
from abr.types import Download


def dl(size_bytes: int, duration_s: float, ttfb_s: float = 0.0, index: int = 0) -> Download:
    return Download(segment_index=index, quality=0, size_bytes=size_bytes, duration_s=duration_s, ttfb_s=ttfb_s,
                    start_time_s=4.0 * index)


@pytest.mark.parametrize(("download", "exclude_ttfb", "expected"), [
    (dl(1_000_000, 2.0, ttfb_s=0.5), False, 4e6),  # whole request time, TTFB included
    (dl(1_000_000, 2.0, ttfb_s=0.5), True, 8e6 / 1.5),  # dash.js dead-time: first to last byte only
    (dl(1_000_000, 0.0), False, None),  # no time measured: no sample
    (dl(1_000, 0.5, ttfb_s=0.5), True, 8e3 / 1e-3),  # zero transfer time clamps to 1 ms as in dash.js
])
def test_sample_bps_measures_bits_over_request_time(download: Download, exclude_ttfb: bool,
                                                    expected: float | None) -> None:
    assert sample_bps(download, exclude_ttfb=exclude_ttfb) == expected


def test_throughput_bps_is_bits_over_seconds_and_refuses_no_time() -> None:
    assert throughput_bps(1_000_000, 2.0) == 4e6
    assert throughput_bps(3, 0.5) == 48.0
    for seconds in (0.0, -1.0, math.nan):
        with pytest.raises(ValueError, match="time > 0 s"):
            throughput_bps(1_000, seconds)


def test_throughput_bps_array_matches_the_scalar_rule_exactly() -> None:
    rng = np.random.default_rng(3)
    sizes = rng.integers(1, 5_000_000, (50, 4))
    seconds = rng.uniform(0.01, 8.0, (50, 4))
    rates = throughput_bps_array(sizes, seconds)
    assert all(rates[i, j] == throughput_bps(int(sizes[i, j]), float(seconds[i, j]))
               for i in range(50) for j in range(4))
    seconds[3, 2] = 0.0
    with pytest.raises(ValueError, match="times > 0 s"):
        throughput_bps_array(sizes, seconds)


@pytest.mark.parametrize(("values", "expected"), [
    ([3e6], 3e6),
    ([1e6, 1e6], 1e6),
    ([1e6, 2e6], 4e6 / 3),
    ([1e6, 2e6, 4e6], 3 / (1 / 1e6 + 1 / 2e6 + 1 / 4e6)),
    ([2e6, 0.0], 0.0),  # a stalled download drags the mean to zero
])
def test_harmonic_mean_of_samples(values: list[float], expected: float) -> None:
    assert harmonic_mean(values) == pytest.approx(expected, rel=1e-12)


def test_harmonic_mean_keeps_only_last_window_samples() -> None:
    estimator = HarmonicMean(window=5)
    estimator.feed(dl(10_000, 1.0))  # 80 kbit/s: must fall out of the window
    for i in range(5):
        estimator.feed(dl(250_000, 1.0, index=i + 1))  # 2 Mbit/s
    assert estimator.estimate_bps() == pytest.approx(2e6)


def test_sliding_window_mean_defaults_to_dashjs_four_samples() -> None:
    estimator = SlidingWindowMean()
    for i, size in enumerate([1_000_000, 125_000, 250_000, 375_000, 500_000]):  # 8, 1, 2, 3, 4 Mbit/s
        estimator.feed(dl(size, 1.0, index=i))
    assert estimator.estimate_bps() == pytest.approx(2.5e6)


@pytest.mark.parametrize("estimator", [HarmonicMean(), SlidingWindowMean(), DashEwma()])
def test_estimators_have_no_estimate_before_a_sample(estimator: HarmonicMean | SlidingWindowMean | DashEwma) -> None:
    assert estimator.estimate_bps() is None
    estimator.feed(dl(1_000, 0.0))  # unmeasurable: ignored
    assert estimator.estimate_bps() is None


def test_dash_ewma_single_sample_is_unbiased() -> None:
    estimator = DashEwma()
    estimator.feed(dl(500_000, 1.0))
    assert estimator.estimate_bps() == pytest.approx(4e6)


def test_dash_ewma_hand_computed_drop_takes_fast_average() -> None:
    # 8 then 2 Mbit/s, 1 s each. fast (3 s half-life): a=0.5^(1/3); ((1-a)2e6 + a(1-a)8e6) / (1 - a^2)
    # = 4.65496e6; slow (8 s): 4.87012e6; the estimate is the smaller, fast one.
    estimator = DashEwma()
    estimator.feed(dl(1_000_000, 1.0))
    estimator.feed(dl(250_000, 1.0, index=1))
    assert estimator.estimate_bps() == pytest.approx(4.65496e6, rel=1e-5)


def test_dash_ewma_weighs_samples_by_transfer_time() -> None:
    short_slow, long_slow = DashEwma(), DashEwma()
    for estimator, seconds in ((short_slow, 0.5), (long_slow, 8.0)):
        estimator.feed(dl(1_000_000, 1.0))  # 8 Mbit/s for 1 s
        estimator.feed(dl(round(1e6 * seconds / 8), seconds, index=1))  # then 1 Mbit/s for `seconds`
    long_bps, short_bps = long_slow.estimate_bps(), short_slow.estimate_bps()
    assert long_bps is not None and short_bps is not None and long_bps < short_bps


def test_latency_ewma_is_pessimistic_and_counts_zero_ttfb_as_one_ms() -> None:
    latency = LatencyEwma()
    latency.feed(dl(1000, 1.0, ttfb_s=0.2))
    latency.feed(dl(1000, 1.0, ttfb_s=0.0, index=1))
    fast, slow = 0.5, 0.5 ** 0.5  # alphas of the 1- and 2-request half-lives
    fast_value = ((1 - fast) * 1e-3 + fast * (1 - fast) * 0.2) / (1 - fast ** 2)
    slow_value = ((1 - slow) * 1e-3 + slow * (1 - slow) * 0.2) / (1 - slow ** 2)
    assert latency.estimate_s() == pytest.approx(max(fast_value, slow_value))


def test_safe_scales_the_inner_estimate() -> None:
    safe = Safe(HarmonicMean(), factor=0.9)
    safe.feed(dl(1_000_000, 2.0))
    assert safe.estimate_bps() == pytest.approx(3.6e6)


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"kind": "median"}, "unknown throughput estimator"),
    ({"kind": "harmonic", "window": 0}, "window"),
    ({"kind": "ewma", "window": 3}, "window"),
    ({"safety": 0.0}, "safety"),
    ({"safety": 1.5}, "safety"),
    ({"safety": math.nan}, "safety"),
])
def test_estimator_config_rejects_bad_values(kwargs: dict[str, object], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        EstimatorConfig(**kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize("kind", ["harmonic", "ewma", "window"])
def test_estimate_is_a_function_of_the_downloads(kind: str) -> None:
    downloads = [dl(200_000 * (i + 1), 1.0 + 0.1 * i, ttfb_s=0.05, index=i) for i in range(7)]
    config = EstimatorConfig(kind=kind, safety=0.9)
    fed = config.build()
    for download in downloads:
        fed.feed(download)
    assert estimate(config, downloads) == fed.estimate_bps() == estimate(config, downloads)


def test_download_log_returns_only_downloads_not_seen_before() -> None:
    log = DownloadLog()
    history = [dl(1000, 1.0, index=i) for i in range(6)]
    assert list(log.new(history[:2])) == history[:2]
    assert list(log.new(history[:2])) == []  # the same observation again: nothing new
    assert list(log.new(history[1:4])) == history[2:4]  # the window slid by one, two arrived
    assert list(log.new(history[5:6])) == history[5:6]  # the last seen one left the window: all are new


def test_batched_means_round_exactly_like_the_scalar_estimators() -> None:
    # The batched simulator must reproduce scalar decisions bit for bit, so equal is equal, not approx.
    rng = np.random.default_rng(7)
    samples = rng.lognormal(14.0, 1.5, (200, 5))
    for k in range(1, 6):
        rows = samples[:, :k]
        harmonic, arithmetic = batch_harmonic_mean(rows), batch_arithmetic_mean(rows)
        for i, row in enumerate(rows.tolist()):
            assert harmonic[i] == harmonic_mean(row)
            assert arithmetic[i] == sum(row) / len(row)
    empty = samples[:, :0]
    assert np.isnan(batch_harmonic_mean(empty)).all() and np.isnan(batch_arithmetic_mean(empty)).all()


# -- Sabre's estimators (sabre.py Ewma and SlidingWindow) -------------------------------------------------------


def test_sabre_ewma_hand_computed_throughput_and_latency() -> None:
    # 8 Mbit/s over 1 s then 2 Mbit/s over 2 s, TTFB 0.1 s then 0.3 s, 3 s segments.
    # Throughput: alpha = 0.5^(transfer / h); corrected by 1 - 0.5^(3 s / h); the lower of h = 3 s and 8 s.
    # Latency: one unit per request, half-lives 3/3 = 1 and 8/3 requests; the higher of the two.
    estimator = SabreEwma(segment_duration_s=3.0)
    estimator.feed(dl(1_000_000, 1.1, ttfb_s=0.1))
    estimator.feed(dl(500_000, 2.3, ttfb_s=0.3, index=1))

    def average(first: float, second: float, w1: float, w2: float, half_life: float) -> float:
        a1, a2 = 0.5 ** (w1 / half_life), 0.5 ** (w2 / half_life)
        value = a2 * (1 - a1) * first + (1 - a2) * second
        return value / (1 - 0.5 ** ((w1 + w2) / half_life))

    throughput = min(average(8e6, 2e6, 1.0, 2.0, 3.0), average(8e6, 2e6, 1.0, 2.0, 8.0))
    latency = max(average(0.1, 0.3, 1.0, 1.0, 1.0), average(0.1, 0.3, 1.0, 1.0, 8.0 / 3.0))
    assert estimator.estimate_bps() == pytest.approx(throughput, rel=1e-12)
    assert estimator.latency_s() == pytest.approx(latency, rel=1e-12)
    assert throughput == pytest.approx(3.5595e6, rel=1e-4) and latency == pytest.approx(0.2333, rel=1e-3)  # fast, fast


def test_sabre_ewma_ignores_downloads_without_transfer_time() -> None:
    estimator = SabreEwma(segment_duration_s=2.0)
    estimator.feed(dl(1_000, 0.2, ttfb_s=0.2))
    assert estimator.estimate_bps() is None and estimator.latency_s() is None
    estimator.feed(dl(250_000, 1.5, ttfb_s=0.5, index=1))
    assert estimator.estimate_bps() == pytest.approx(2e6) and estimator.latency_s() == pytest.approx(0.5)


@pytest.mark.parametrize(("windows", "throughput", "latency"), [
    ((3,), (2e6 + 4e6 + 6e6) / 3, (0.3 + 0.1 + 0.2) / 3),
    ((1, 3), 4e6, 0.2),  # lowest throughput mean, highest latency mean
    ((1,), 6e6, 0.2),
])
def test_sabre_sliding_window_is_conservative_over_window_sizes(windows: tuple[int, ...], throughput: float,
                                                                  latency: float) -> None:
    estimator = SabreSlidingWindow(window_sizes=windows)
    for i, (rate, ttfb) in enumerate([(1e6, 0.5), (2e6, 0.3), (4e6, 0.1), (6e6, 0.2)]):
        estimator.feed(dl(round(rate / 8), 1.0 + ttfb, ttfb_s=ttfb, index=i))
    assert estimator.estimate_bps() == pytest.approx(throughput)
    assert estimator.latency_s() == pytest.approx(latency)


def test_sabre_sliding_window_keeps_twenty_samples() -> None:
    estimator = SabreSlidingWindow(window_sizes=(30,))
    for i in range(25):
        estimator.feed(dl(125_000 * (i + 1), 1.0, index=i))  # (i + 1) Mbit/s
    assert estimator.estimate_bps() == pytest.approx(np.mean(np.arange(6, 26)) * 1e6)


@pytest.mark.parametrize("kwargs", [{"window_sizes": ()}, {"window_sizes": (0,)}])
def test_sabre_sliding_window_rejects_empty_windows(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError, match="window sizes"):
        SabreSlidingWindow(**kwargs)  # type: ignore[arg-type]


# -- chunked low-latency downloads ------------------------------------------------------------------------------


def test_chunk_active_time_leaves_out_the_idle_gaps_between_chunks() -> None:
    from abr.estimators import ChunkArrival, chunk_active_s
    # Four 0.5 s chunks made one after another; each crosses the link in 0.1 s once it exists.
    chunks = [ChunkArrival(first_byte_s=0.5 * c, last_byte_s=0.5 * c + 0.1, size_bytes=62_500) for c in range(4)]
    assert chunk_active_s(chunks) == pytest.approx(0.4)
    # Chunks queued back to back (the link is the bottleneck): their overlap is counted once.
    queued = [ChunkArrival(first_byte_s=0.0, last_byte_s=1.0, size_bytes=1), ChunkArrival(first_byte_s=0.5,
                                                                                             last_byte_s=2.0, size_bytes=1)]
    assert chunk_active_s(queued) == pytest.approx(2.0)
    assert chunk_active_s([]) == pytest.approx(1e-3)  # dash.js's 1 ms floor


def test_chunk_arrival_rejects_a_last_byte_before_the_first() -> None:
    from abr.estimators import ChunkArrival
    with pytest.raises(ValueError):
        ChunkArrival(first_byte_s=1.0, last_byte_s=0.5, size_bytes=10)


def test_a_chunked_download_is_measured_over_its_active_time() -> None:
    from abr.estimators import ChunkedThroughput
    # 250 kB over a 2 s request at the live edge: 1 Mbit/s over the request, 5 Mbit/s over the 0.4 s of chunks.
    chunked = Download(segment_index=0, quality=0, size_bytes=250_000, duration_s=2.0, ttfb_s=0.05, active_s=0.4)
    assert chunked.throughput_bps == pytest.approx(1e6)
    assert sample_bps(chunked) == pytest.approx(5e6)
    assert sample_bps(chunked, exclude_ttfb=True) == pytest.approx(5e6)
    estimator = ChunkedThroughput()
    for _ in range(3):
        estimator.feed(chunked)
    assert estimator.estimate_bps() == pytest.approx(5e6)
    # The other estimators follow the same sample rule (dash.js applies its low-latency mode to every rule).
    ewma = DashEwma()
    ewma.feed(chunked)
    assert ewma.estimate_bps() == pytest.approx(5e6)
    assert EstimatorConfig(kind="chunked").build().__class__ is ChunkedThroughput


def test_a_whole_download_is_unchanged_by_the_chunk_rule() -> None:
    whole = Download(segment_index=0, quality=0, size_bytes=250_000, duration_s=2.0, ttfb_s=0.0)
    assert sample_bps(whole) == pytest.approx(1e6)
