"""Behaviour of the built-in algorithms on hand-made observations (the conformance suite covers the rest)."""

from __future__ import annotations

import dataclasses
import itertools
import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pytest

import abr
from abr.algorithms.bola import BolaCore, BolaParams
from abr.algorithms.mpc import Mpc, RobustMpc
from abr.algorithms.rate import BatchRate, Rate
from abr.estimators import sample_bps
from abr.types import Abandoning, BatchAbr, Decision, Download, Ladder, Observation, Progress

ObsFactory = Callable[..., Observation]
HistoryFactory = Callable[..., tuple[Download, ...]]

# -- parameters checked by each algorithm (the registry's own checks: test_registry.py) -------------------------


@pytest.mark.parametrize(("name", "params", "match"), [
    ("rate", {"estimator": "median"}, "unknown throughput estimator"),
    ("rate", {"window": 0}, "window"),
    ("rate", {"safety": 0}, "safety"),
    ("bba", {"reservoir_s": -1}, "reservoir_s"),
    ("bba", {"cushion_s": 0}, "cushion_s"),
    ("bba", {"map": "linear"}, "unknown BBA map"),
    ("bola", {"stable_buffer_s": 0}, "stable_buffer_s"),
    ("bola", {"safety": 1.2}, "safety"),
    ("bola", {"placeholder_decay": 0}, "placeholder_decay"),
    ("bola", {"buffer_per_level_s": 0, "stable_buffer_s": 8}, "buffer target"),
    ("dynamic", {"estimator": "median"}, "unknown throughput estimator"),
    ("mpc", {"horizon": 0}, "horizon"),
    ("mpc", {"rebuffer_penalty": -1}, "rebuffer_penalty"),
    ("mpc-robust", {"error_window": 0}, "error_window"),
])
def test_make_rejects_bad_parameters_with_value_error(name: str, params: dict[str, Any], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        abr.make(name, **params)


@pytest.mark.parametrize(("name", "params", "cls"), [
    ("rate", {}, BatchRate),
    ("rate", {"estimator": "window"}, BatchRate),
    ("rate", {"estimator": "ewma"}, Rate),  # EWMA has no windowed batch form
    ("mpc", {}, Mpc),
    ("mpc-robust", {}, RobustMpc),
])
def test_factories_build_the_batch_form_only_where_it_exists(name: str, params: dict[str, Any], cls: type) -> None:
    algorithm = abr.make(name, **params)
    assert type(algorithm) is cls
    assert isinstance(algorithm, BatchAbr) == hasattr(cls, "decide_batch")


# -- rate --------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("rates_bps", "expected"), [
    ([], 0),  # no sample yet
    ([5e6], 5),
    ([1.3e6], 2),
    ([1e6, 2e6, 4e6], 2),  # harmonic mean 1.714 Mbit/s
    ([50e6, 1e6, 1e6, 1e6, 1e6, 1e6], 1),  # only the last five count
    ([300e3], 0),  # exactly the lowest bitrate
    ([299e3], 0),  # below every bitrate: still the lowest
])
def test_rate_picks_highest_bitrate_at_most_harmonic_mean(make_obs: ObsFactory, history: HistoryFactory,
                                                          rates_bps: list[float], expected: int) -> None:
    assert abr.make("rate").decide(make_obs(downloads=history(rates_bps))).quality == expected


def test_rate_counts_ttfb_in_the_sample(make_obs: ObsFactory, history: HistoryFactory) -> None:
    # 2 Mbit/s while transferring, but 1 s of TTFB per 1 s transfer halves the sample to 1 Mbit/s.
    assert abr.make("rate").decide(make_obs(downloads=history([2e6], ttfb_s=1.0))).quality == 1


def test_rate_safety_factor_lowers_the_choice(make_obs: ObsFactory, history: HistoryFactory) -> None:
    obs = make_obs(downloads=history([2e6]))
    assert abr.make("rate").decide(obs).quality == 3
    assert abr.make("rate", safety=0.9).decide(obs).quality == 2


# -- bba ---------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("buffer_s", "expected"), [
    (0.0, 0), (4.99, 0), (5.0, 0), (7.0, 1), (9.5, 2), (12.0, 3), (14.99, 4), (15.0, 5), (60.0, 5),
])
def test_bba_pensieve_map_matches_reference_formula(make_obs: ObsFactory, buffer_s: float, expected: int) -> None:
    decision = abr.make("bba", map="pensieve").decide(make_obs(buffer_s=buffer_s))
    assert decision.quality == expected
    assert f"{buffer_s:.1f}s" in decision.reason


@pytest.mark.parametrize(("buffer_s", "last", "expected"), [
    (5.0, 5, 0),  # in the reservoir: the lowest rate whatever came before
    (15.0, 0, 5),  # past the cushion: the highest
    (9.0, 0, 3),  # f(9 s) = 1.9 Mbit/s >= R+ (0.75): the highest rate below f
    (9.0, 2, 3),  # R+ = 1.85 <= 1.9: step up
    (9.0, 3, 3),  # R- = 1.2 < 1.9 < R+ = 2.85: stay
    (9.0, 4, 4),  # R- = 1.85 < 1.9: stay
    (9.0, 5, 4),  # R- = 2.85 >= 1.9: the lowest rate above f
    (5.1, 3, 1),  # f just above R_min: down to the lowest rate above it
])
def test_bba_rate_map_switches_only_when_f_crosses_neighbour_rates(make_obs: ObsFactory, buffer_s: float,
                                                                   last: int, expected: int) -> None:
    assert abr.make("bba").decide(make_obs(buffer_s=buffer_s, last_quality=last)).quality == expected


@pytest.mark.parametrize("bba_map", ["rate", "pensieve"])
def test_bba_ignores_throughput(make_obs: ObsFactory, history: HistoryFactory, bba_map: str) -> None:
    slow = abr.make("bba", map=bba_map).decide(make_obs(downloads=history([1e5] * 3), last_quality=3))
    fast = abr.make("bba", map=bba_map).decide(make_obs(downloads=history([1e8] * 3), last_quality=3))
    assert slow == fast


# -- bola ---------------------------------------------------------------------------------------------------------------


def test_bola_parameters_follow_dashjs(ladder: Ladder) -> None:
    core = BolaCore(ladder, BolaParams())
    target_s = 10 + 2 * len(ladder)  # max(stableBufferTime 12, 10 s + 2 s per rung) = 22 s
    assert core.utilities[0] == 1.0
    assert core.vp * (core.utilities[0] + core.gp - 1) == pytest.approx(10.0)
    assert core.vp * (core.utilities[-1] + core.gp - 1) == pytest.approx(target_s)


def test_bola_quality_steps_up_at_its_threshold_levels(ladder: Ladder) -> None:
    core = BolaCore(ladder, BolaParams())
    levels = np.linspace(0.0, 40.0, 401)
    qualities = [core.quality_for_level(level) for level in levels]
    assert qualities[0] == 0 and qualities[-1] == ladder.top
    assert all(a <= b for a, b in zip(qualities, qualities[1:]))
    for quality in range(1, len(ladder)):
        threshold = core.min_level_for(quality)
        assert core.quality_for_level(threshold - 1e-6) < quality <= core.quality_for_level(threshold + 1e-6)


def _session(name: str, ladder: Ladder, rate_bps: float, steps: int, **params: Any) -> list[Observation]:
    """Observations of a consistent session (buffer drains while downloading, delays honoured), as the
    algorithm's own decisions drive it at a constant `rate_bps`; the last one is not yet decided."""
    algorithm = abr.make(name, **params)
    sizes = tuple(tuple(int(b * ladder.segment_duration_s / 8) for b in ladder.bitrates_bps) for _ in range(6))
    time_s = buffer_s = 0.0
    downloads: list[Download] = []
    observations = []
    for index in range(steps + 1):
        obs = Observation(time_s=time_s, buffer_s=buffer_s, segment_index=index, segment_count=48, ladder=ladder,
                          last_quality=downloads[-1].quality if downloads else None, downloads=tuple(downloads),
                          next_sizes_bytes=sizes, rebuffering=buffer_s == 0)
        observations.append(obs)
        if index == steps:
            break
        decision = algorithm.decide(obs)
        time_s += decision.delay_s
        buffer_s = max(buffer_s - decision.delay_s, 0.0)
        size = sizes[0][decision.quality]
        duration_s = 0.05 + size * 8 / rate_bps
        downloads.append(Download(segment_index=index, quality=decision.quality, size_bytes=size,
                                  duration_s=duration_s, ttfb_s=0.05, start_time_s=time_s))
        time_s += duration_s
        buffer_s = max(buffer_s - duration_s, 0.0) + ladder.segment_duration_s
    return observations


def _replay(name: str, observations: Sequence[Observation], final: Observation, **params: Any) -> Decision:
    algorithm = abr.make(name, **params)
    for obs in observations:
        algorithm.decide(obs)
    return algorithm.decide(final)


def test_bola_drops_quality_when_buffer_low(ladder: Ladder) -> None:
    *prefix, final = _session("bola", ladder, 10e6, steps=8)
    assert _replay("bola", prefix, final).quality == ladder.top
    # The same history but the buffer ran dry during the last download: the placeholder is dropped too.
    low = _replay("bola", prefix, dataclasses.replace(final, buffer_s=ladder.segment_duration_s))
    assert low.quality == 0
    assert "placeholder 0.0s" in low.reason


def test_bola_waits_instead_of_filling_the_buffer_with_low_quality(ladder: Ladder) -> None:
    observations = _session("bola", ladder, 1.5e6, steps=40)
    decisions = [_replay("bola", observations[:i], obs) for i, obs in enumerate(observations)]
    waits = [d for d in decisions if d.delay_s > 0]
    assert waits and all(d.quality < ladder.top for d in waits)
    assert all("wait" in d.reason for d in waits)


def test_bola_never_waits_at_top_quality(ladder: Ladder) -> None:
    observations = _session("bola", ladder, 50e6, steps=15)
    assert all(_replay("bola", observations[:i], obs).delay_s == 0 for i, obs in enumerate(observations))


def test_bola_does_not_switch_up_past_the_safe_throughput(ladder: Ladder) -> None:
    # At 1.5 Mbit/s the safe rate (x 0.9) sustains q2; the buffer alone would pick more (BOLA-O).
    observations = _session("bola", ladder, 1.5e6, steps=40)
    decisions = [_replay("bola", observations[:i], obs) for i, obs in enumerate(observations)]
    assert max(d.quality for d in decisions) == 2
    assert any("capped by 1.35 Mbit/s" in d.reason for d in decisions)


def test_bola_placeholder_absorbs_time_not_spent_downloading(ladder: Ladder) -> None:
    *prefix, final = _session("bola", ladder, 3e6, steps=10)
    right_away = _replay("bola", prefix, final)
    # The player waited 8 s after the last download (a buffer-full pause): the buffer is 8 s lower, but
    # BOLA moves that time into its placeholder, so the decision does not change.
    later = dataclasses.replace(final, time_s=final.time_s + 8.0, buffer_s=final.buffer_s - 8.0)
    assert final.buffer_s > 8.0
    assert _replay("bola", prefix, later).quality == right_away.quality


def _progress(ladder: Ladder, *, received: int, elapsed_s: float, quality: int = 5, buffer_s: float = 6.0,
              segment: int = 7) -> Progress:
    size = int(ladder.bitrates_bps[quality] * ladder.segment_duration_s / 8)
    return Progress(time_s=30.0 + elapsed_s, buffer_s=buffer_s, segment_index=segment, quality=quality,
                    bytes_received=received, size_bytes=size, elapsed_s=elapsed_s, ladder=ladder)


def _slow_reports(algorithm: Abandoning, ladder: Ladder, count: int, **kwargs: Any) -> Decision | None:
    """`count` progress reports of a download crawling at 0.5 Mbit/s; the last answer."""
    answer = None
    for i in range(1, count + 1):
        answer = algorithm.should_abandon(_progress(ladder, received=int(0.5e6 / 8 * i), elapsed_s=float(i), **kwargs))
    return answer


@pytest.mark.parametrize("name", ["bola", "dynamic"])
def test_dash_algorithms_abandon_a_crawling_download_for_a_lower_quality(ladder: Ladder, name: str) -> None:
    algorithm = abr.make(name)
    assert isinstance(algorithm, Abandoning)
    assert _slow_reports(algorithm, ladder, 4) is None  # dash.js waits for 5 progress reports
    decision = algorithm.should_abandon(_progress(ladder, received=int(0.5e6 / 8 * 5), elapsed_s=5.0))
    assert decision is not None and decision.quality == 0  # 0.45 Mbit/s safe sustains only q0
    assert "abandon" in decision.reason
    assert algorithm.should_abandon(_progress(ladder, received=int(0.5e6 / 8 * 6), elapsed_s=6.0)) is None  # once


@pytest.mark.parametrize(("kwargs", "params"), [
    ({"buffer_s": 20.0}, {}),  # above the stable buffer time: no hurry
    ({"quality": 0}, {}),  # nothing lower to go to
    ({}, {"abandon": False}),
])
def test_dash_algorithms_keep_downloads_they_need_not_abandon(ladder: Ladder, kwargs: dict[str, Any],
                                                              params: dict[str, Any]) -> None:
    algorithm = abr.make("bola", **params)
    assert isinstance(algorithm, Abandoning)
    assert _slow_reports(algorithm, ladder, 8, **kwargs) is None


def test_bola_retry_after_abandon_stays_at_or_below_the_abandon_quality(ladder: Ladder) -> None:
    *prefix, final = _session("bola", ladder, 50e6, steps=6)
    algorithm = abr.make("bola")
    for obs in prefix:
        algorithm.decide(obs)
    assert isinstance(algorithm, Abandoning)
    decision = _slow_reports(algorithm, ladder, 5, segment=final.segment_index)
    assert decision is not None
    partial = Download(segment_index=final.segment_index, quality=ladder.top, size_bytes=int(0.5e6 / 8 * 5),
                       duration_s=5.0, start_time_s=final.time_s, abandoned=True)
    retry = dataclasses.replace(final, time_s=final.time_s + 5.0, buffer_s=final.buffer_s - 5.0,
                                downloads=final.downloads + (partial,))
    assert algorithm.decide(retry).quality <= decision.quality


# -- dynamic -----------------------------------------------------------------------------------------------------------


def test_dynamic_switches_rule_at_stable_buffer_with_hysteresis(make_obs: ObsFactory, history: HistoryFactory) -> None:
    downloads = history([3e6] * 4)
    algorithm = abr.make("dynamic")
    rules = []
    for buffer_s in (11.9, 12.5, 7.0, 6.0, 11.0, 12.0, 12.1):
        reason = algorithm.decide(make_obs(downloads=downloads, buffer_s=buffer_s)).reason
        rules.append(reason.split(":")[0])
    # BOLA above 12 s (stableBufferTime); back to throughput only at <= 6 s; strictly above 12 s to return.
    assert rules == ["throughput", "bola", "bola", "throughput", "throughput", "throughput", "bola"]


@pytest.mark.parametrize(("ttfb_s", "expected"), [
    (0.0, 3),  # safe 2.1 x 0.9 = 1.89 Mbit/s >= 1.85
    (0.2, 2),  # the same transfer rate, but 0.2 s of each 4 s segment is dead time: 1.80 < 1.85
])
def test_dynamic_throughput_rule_discounts_safety_and_dead_time(make_obs: ObsFactory, history: HistoryFactory,
                                                                ttfb_s: float, expected: int) -> None:
    obs = make_obs(downloads=history([2.1e6] * 4, ttfb_s=ttfb_s), buffer_s=8.0)
    assert abr.make("dynamic").decide(obs).quality == expected


@pytest.mark.parametrize(("params", "expected"), [({}, 2), ({"insufficient_buffer_rule": False}, 5)])
def test_insufficient_buffer_rule_caps_quality_at_low_buffer(make_obs: ObsFactory, history: HistoryFactory,
                                                             params: dict[str, Any], expected: int) -> None:
    # 10 Mbit/s sustains the top, but 1 s of buffer only pays for 10 x 1/4 x 0.5 = 1.25 Mbit/s.
    decision = abr.make("dynamic", **params).decide(make_obs(downloads=history([10e6] * 4), buffer_s=1.0))
    assert decision.quality == expected
    assert ("insufficient buffer" in decision.reason) == (expected == 2)


# -- mpc ---------------------------------------------------------------------------------------------------------------


def _brute_force_first(rates_kbps: Sequence[int], sizes: Sequence[Sequence[int]], rate_mbs: float, buffer_s: float,
                       last: int, segment_s: float, penalty: float) -> int:
    """Pensieve's test/mpc.py search written out plainly: every plan, its QoE_lin, last best on ties."""
    best_plan: tuple[int, ...] = ()
    best_reward = -math.inf
    for plan in itertools.product(range(len(rates_kbps)), repeat=len(sizes)):
        level, stall, total, switches, previous = buffer_s, 0.0, 0, 0, last
        for position, quality in enumerate(plan):
            download = (sizes[position][quality] / 1000000.) / rate_mbs
            if level < download:
                stall += download - level
                level = 0
            else:
                level -= download
            level += segment_s
            total += rates_kbps[quality]
            switches += abs(rates_kbps[quality] - rates_kbps[previous])
            previous = quality
        reward = (total / 1000.) - (penalty * stall) - (switches / 1000.)
        if reward >= best_reward:
            best_plan, best_reward = plan, reward
    return best_plan[0]


@pytest.mark.parametrize("penalty", [None, 4.3, 12.0])  # None: the top rung's Mbit/s (3.0 here), Pensieve's rule
@pytest.mark.parametrize("pensieve_indexing", [False, True])
@pytest.mark.parametrize("seed", range(4))
def test_mpc_matches_a_plain_exhaustive_search(seed: int, pensieve_indexing: bool, penalty: float | None) -> None:
    rng = np.random.default_rng(seed)
    rates_kbps = (200, 600, 1500, 3000)
    ladder = Ladder(bitrates_bps=tuple(r * 1000 for r in rates_kbps), segment_duration_s=2.0)
    for _ in range(25):
        count = int(rng.integers(5, 12))
        index = int(rng.integers(1, count))
        rows = [[int(r * 250 * rng.uniform(0.5, 1.5)) for r in rates_kbps] for _ in range(6)]
        size = int(rng.integers(10_000, 2_000_000))
        download = Download(segment_index=index - 1, quality=int(rng.integers(4)), size_bytes=size,
                            duration_s=float(rng.uniform(0.1, 6.0)), start_time_s=0.0)
        obs = Observation(time_s=10.0, buffer_s=float(rng.choice([0.0, 0.7, 3.0, 9.0, 25.0])), segment_index=index,
                          segment_count=count, ladder=ladder, last_quality=download.quality, downloads=(download,),
                          next_sizes_bytes=tuple(tuple(r) for r in rows))
        horizon = min(3, count - index)
        offset = int(pensieve_indexing)
        rate_mbs = sample_bps(download) / 8e6  # type: ignore[operator]
        expected = _brute_force_first(rates_kbps, rows[offset:offset + horizon], rate_mbs, obs.buffer_s,
                                      download.quality, ladder.segment_duration_s,
                                      rates_kbps[-1] / 1000 if penalty is None else penalty)
        algorithm = abr.make("mpc", horizon=3, pensieve_indexing=pensieve_indexing, rebuffer_penalty=penalty)
        assert algorithm.decide(obs).quality == expected


def test_mpc_breaks_ties_toward_the_later_plan(two_rung_ladder: Ladder) -> None:
    # One segment left, a 20 s buffer: no plan stalls, and 3 - |3 - 1| = 1 ties with staying at 1 Mbit/s.
    obs = Observation(time_s=50.0, buffer_s=20.0, segment_index=9, segment_count=10, ladder=two_rung_ladder,
                      last_quality=0, downloads=(Download(segment_index=8, quality=0, size_bytes=500_000,
                                                          duration_s=1.0),),
                      next_sizes_bytes=((500_000, 1_500_000),))
    assert abr.make("mpc").decide(obs).quality == 1


def test_mpc_pensieve_indexing_sizes_the_plan_one_segment_later(make_obs: ObsFactory,
                                                                 history: HistoryFactory) -> None:
    nominal = make_obs().next_sizes_bytes[0]
    only_lowest_fits = (nominal[0],) + tuple(100_000_000 for _ in nominal[1:])
    # Segment `index` is enormous above q0; Pensieve's indexing plans from index+1 and never sees it.
    obs = make_obs(downloads=history([3e6] * 3), buffer_s=4.0, next_sizes_bytes=(only_lowest_fits,) + (nominal,) * 5)
    plain = abr.make("mpc-robust").decide(obs).quality
    shifted = abr.make("mpc-robust", pensieve_indexing=True).decide(obs).quality
    assert plain == 0 < shifted


def test_mpc_estimates_missing_sizes_from_bitrate(make_obs: ObsFactory, history: HistoryFactory) -> None:
    downloads = history([2.5e6, 1.5e6, 2e6])
    with_sizes = make_obs(downloads=downloads, buffer_s=3.0)  # nominal sizes: bitrate x 4 s
    without = dataclasses.replace(with_sizes, next_sizes_bytes=())
    assert abr.make("mpc-robust").decide(without) == abr.make("mpc-robust").decide(with_sizes)


def test_mpc_robust_discounts_by_the_largest_recent_error(make_obs: ObsFactory, history: HistoryFactory) -> None:
    # Predicted 2 Mbit/s after the first sample, then measured 1: error |2 - 1| / 1 = 1.0.
    # Harmonic mean 1.33 Mbit/s / (1 + 1.0) = 0.67 Mbit/s.
    decision = abr.make("mpc-robust").decide(make_obs(downloads=history([2e6, 1e6])))
    assert "hm 1.33 Mbit/s / (1+1.00)" in decision.reason
    plain = abr.make("mpc").decide(make_obs(downloads=history([2e6, 1e6])))
    assert "hm 1.33 Mbit/s," in plain.reason and "(1+" not in plain.reason


def test_mpc_robust_errors_are_per_instance(make_obs: ObsFactory, history: HistoryFactory) -> None:
    algorithm = abr.make("mpc-robust")
    algorithm.decide(make_obs(downloads=history([2e6, 1e6])))
    fresh = abr.make("mpc-robust").decide(make_obs(downloads=history([1e6])))
    assert "(1+0.00)" in fresh.reason


def test_mpc_chooses_lowest_quality_without_samples(make_obs: ObsFactory) -> None:
    assert abr.make("mpc").decide(make_obs(segment_index=0, downloads=())).quality == 0
