"""Sabre's algorithms (abr/algorithms/sabre*.py): the observation adapter and each rule as Sabre states it."""

from __future__ import annotations

import math
from typing import Any

import pytest

import abr
from abr.algorithms.sabre import (
    SabreAbr,
    SabreLadder,
    SabreParams,
    SabreProgress,
    Snapshot,
    ThroughputRule,
    quality_from_throughput,
)
from abr.algorithms.sabre_bola import BolaERule, BolaRule
from abr.algorithms.sabre_dynamic import DynamicDashRule, DynamicRule
from abr.types import Download, Ladder, Observation, Progress

SABRE_NAMES = ("sabre-throughput", "sabre-bola", "bola-o", "bola-e", "sabre-dynamic", "dynamic-dash")
# Sabre's example/mmsys18/bbb.json ladder (kbit/s), 3 s segments.
BBB = Ladder(bitrates_bps=tuple(k * 1000 for k in (230, 331, 477, 688, 991, 1427, 2056, 2962, 5027, 6000)),
             segment_duration_s=3.0)


def snapshot(buffer_ms: float, throughput_kbps: float, *, latency_ms: float = 0.0, segment_index: int = 50,
             segment_count: int = 100) -> Snapshot:
    return Snapshot(buffer_ms=buffer_ms, segment_index=segment_index, segment_count=segment_count,
                    throughput_kbps=throughput_kbps, latency_ms=latency_ms)


def download(index: int, *, size_bytes: int, transfer_s: float, start_s: float, ttfb_s: float = 0.0,
             quality: int = 0, abandoned: bool = False) -> Download:
    return Download(segment_index=index, quality=quality, size_bytes=size_bytes, duration_s=ttfb_s + transfer_s,
                    ttfb_s=ttfb_s, start_time_s=start_s, abandoned=abandoned)


def observe(ladder: Ladder, downloads: tuple[Download, ...], *, time_s: float, buffer_s: float,
            segment_index: int | None = None, cap_s: float = 25.0) -> Observation:
    index = segment_index if segment_index is not None else sum(not d.abandoned for d in downloads)
    return Observation(time_s=time_s, buffer_s=buffer_s, segment_index=index, segment_count=100, ladder=ladder,
                       last_quality=None, downloads=downloads, buffer_cap_s=cap_s)


# -- shared pieces ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("throughput_kbps", "latency_ms", "expected"), [
    (1200.0, 0.0, 2),  # 1.2 Mbit/s exactly sustains the 1.2 Mbit/s rung
    (1200.0, 100.0, 1),  # ...but not once 100 ms of each 4 s segment goes to latency
    (299.0, 0.0, 0),
    (1e9, 0.0, 5),
    (1e9, 5000.0, 0),  # latency longer than a segment: nothing is sustainable
])
def test_quality_from_throughput_leaves_room_for_the_latency(ladder: Ladder, throughput_kbps: float,
                                                             latency_ms: float, expected: int) -> None:
    assert quality_from_throughput(SabreLadder.of(ladder), throughput_kbps, latency_ms) == expected


@pytest.mark.parametrize("name", SABRE_NAMES)
def test_sabre_algorithms_start_at_the_lowest_quality_and_keep_the_first_segment(ladder: Ladder, name: str) -> None:
    algorithm = abr.make(name)
    first = algorithm.decide(observe(ladder, (), time_s=0.0, buffer_s=0.0))
    assert (first.quality, first.delay_s) == (0, 0.0)
    crawling = Progress(time_s=5.0, buffer_s=0.0, segment_index=0, quality=0, bytes_received=10, size_bytes=150_000,
                        elapsed_s=5.0, ladder=ladder, ttfb_s=0.1)
    assert algorithm.should_abandon(crawling) is None  # type: ignore[attr-defined]


class _Recorder:
    """A rule that records what the adapter tells it."""

    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []

    def choose(self, now: Snapshot) -> tuple[int, float, str]:
        self.calls.append(("choose", now.buffer_ms, now.throughput_kbps, now.latency_ms))
        return 1, 1500.0, "recorded"

    def report_delay(self, delay_ms: float) -> None:
        self.calls.append(("delay", delay_ms))

    def report_download(self, quality: int, time_ms: float, buffer_ms: float, abandoned_to: int | None) -> None:
        self.calls.append(("download", quality, time_ms, buffer_ms, abandoned_to))

    def check_abandon(self, progress: SabreProgress, now: Snapshot) -> int | None:
        self.calls.append(("check", progress.downloaded_bits, progress.time_ms, progress.time_to_first_bit_ms,
                           now.buffer_ms))
        return 0


class _Recording(SabreAbr):
    def __init__(self) -> None:
        super().__init__(SabreParams())
        self.rule = _Recorder()

    def build_rule(self, ladder: SabreLadder, buffer_size_ms: float) -> _Recorder:  # type: ignore[override]
        self.rule.calls.append(("built", ladder.segment_ms, ladder.bitrates_kbps[0], buffer_size_ms))
        return self.rule


def test_sabre_adapter_turns_observations_into_sabres_calls(ladder: Ladder) -> None:
    algorithm = _Recording()
    first = download(0, size_bytes=500_000, transfer_s=1.0, ttfb_s=0.2, start_s=0.0)  # 4 Mbit/s
    decision = algorithm.decide(observe(ladder, (first,), time_s=3.2, buffer_s=2.0))  # 2 s after it ended
    assert (decision.quality, decision.delay_s) == (1, 1.5)
    built, reported, waited, chose = algorithm.rule.calls
    assert built == ("built", 4000.0, 300.0, 25000.0)  # Sabre units; -b from the observed cap
    assert reported == ("download", 0, pytest.approx(1200.0), pytest.approx(4000.0), None)  # buffer when it ended
    assert waited == ("delay", pytest.approx(2000.0))
    assert chose == ("choose", pytest.approx(2000.0), pytest.approx(4000.0), pytest.approx(200.0))

    progress = Progress(time_s=4.0, buffer_s=1.0, segment_index=1, quality=1, bytes_received=1000, size_bytes=9000,
                        elapsed_s=0.8, ladder=ladder, ttfb_s=0.3)
    answer = algorithm.should_abandon(progress)
    assert answer is not None and answer.quality == 0
    assert algorithm.rule.calls[-1] == ("check", 8000.0, pytest.approx(800.0), pytest.approx(300.0),
                                        pytest.approx(1000.0))
    # The abandoned download is reported with the target the rule chose, and is no throughput sample.
    gone = download(1, size_bytes=1000, transfer_s=0.5, ttfb_s=0.3, start_s=3.2, quality=1, abandoned=True)
    algorithm.decide(observe(ladder, (first, gone), time_s=4.0, buffer_s=1.2))
    assert algorithm.rule.calls[-2] == ("download", 1, pytest.approx(800.0), pytest.approx(1200.0), 0)
    assert algorithm.rule.calls[-1][2] == pytest.approx(4000.0)  # the estimate did not move


def test_sabre_adapter_uses_the_latency_estimate_when_progress_has_no_ttfb(ladder: Ladder) -> None:
    algorithm = _Recording()
    first = download(0, size_bytes=500_000, transfer_s=1.0, ttfb_s=0.25, start_s=0.0)
    algorithm.decide(observe(ladder, (first,), time_s=1.25, buffer_s=4.0))
    progress = Progress(time_s=2.0, buffer_s=3.0, segment_index=1, quality=1, bytes_received=1000, size_bytes=9000,
                        elapsed_s=0.75, ladder=ladder)
    algorithm.should_abandon(progress)
    assert algorithm.rule.calls[-1][3] == pytest.approx(250.0)


# -- throughput rule ----------------------------------------------------------------------------------------------


def test_sabre_throughput_picks_what_ninety_percent_of_the_estimate_sustains(ladder: Ladder) -> None:
    rule = ThroughputRule(SabreLadder.of(ladder), SabreParams())
    quality, delay_ms, _ = rule.choose(snapshot(30000.0, 4000.0))
    assert (quality, delay_ms) == (4, 0.0)  # 3.6 Mbit/s sustains 2.85, not 4.3


def test_sabre_insufficient_buffer_rule_tightens_decision_by_decision(ladder: Ladder) -> None:
    # The buffer pays for 0.9, then 0.81, ... (down to 0.5) x buffer x throughput bits: 7.56 then 6.80 Mbit.
    rule = ThroughputRule(SabreLadder.of(ladder), SabreParams())
    assert rule.choose(snapshot(2100.0, 4000.0))[0] == 3  # 7.4 Mbit segment fits 7.56
    assert rule.choose(snapshot(2100.0, 4000.0))[0] == 2  # ...not 6.80
    unruled = ThroughputRule(SabreLadder.of(ladder), SabreParams(insufficient_buffer_rule=False))
    assert unruled.choose(snapshot(2100.0, 4000.0))[0] == 4


@pytest.mark.parametrize(("received_bits", "time_ms", "expected"), [
    (80_000, 400.0, None),  # crawling, but within the 0.5 s grace time
    (120_000, 600.0, 0),  # 240 kbit/s: 47 s to go; q0's whole segment is smaller than what is left
    (10_000_000, 600.0, None),  # 20 Mbit/s: done well within 1.8 segments
])
def test_sabre_throughput_abandons_a_crawling_download_after_the_grace_time(
        ladder: Ladder, received_bits: float, time_ms: float, expected: int | None) -> None:
    rule = ThroughputRule(SabreLadder.of(ladder), SabreParams())
    progress = SabreProgress(quality=4, size_bits=11_400_000.0, downloaded_bits=received_bits, time_ms=time_ms,
                             time_to_first_bit_ms=100.0)
    assert rule.check_abandon(progress, snapshot(3000.0, 4000.0)) == expected


def test_sabre_throughput_grace_time_survives_float_steps(ladder: Ladder) -> None:
    rule = ThroughputRule(SabreLadder.of(ladder), SabreParams())
    elapsed_s = 0.02 + 0.03 + sum([0.05] * 9)  # Sabre's 10th check, summed in seconds: a hair under 0.5
    assert elapsed_s < 0.5
    progress = SabreProgress(quality=4, size_bits=11_400_000.0, downloaded_bits=120_000.0, time_ms=elapsed_s * 1000,
                             time_to_first_bit_ms=20.0)
    assert rule.check_abandon(progress, snapshot(3000.0, 4000.0)) == 0


# -- BOLA: BOLA-U, BOLA-O, and V near the end -------------------------------------------------------------------


BOLA_O_WAIT_MS = 20000.0 - 21000.0 / (math.log(4300 / 300) + 5) * (5 + math.log(1850 / 300))  # 1311.5 ms


@pytest.mark.parametrize(("oscillation", "expected"), [("u", (4, 0.0)), ("o", (3, pytest.approx(BOLA_O_WAIT_MS)))])
def test_bola_u_goes_one_rung_past_the_sustained_quality_where_bola_o_waits(
        ladder: Ladder, oscillation: str, expected: tuple[int, float]) -> None:
    # At 20 s BOLA wants the top rung; 2 Mbit/s sustains q3 (1.85). BOLA-O waits until the buffer is down to
    # where BOLA itself would pick q3: Vp (gp + u_3) with Vp = (25 - 4 s) / (u_top + gp).
    rule = BolaRule(SabreLadder.of(ladder), SabreParams(oscillation=oscillation), 25000.0)
    quality, delay_ms, _ = rule.choose(snapshot(20000.0, 2000.0))
    assert (quality, delay_ms) == expected


def test_bola_holds_the_last_quality_instead_of_switching_past_the_throughput(ladder: Ladder) -> None:
    rule = BolaRule(SabreLadder.of(ladder), SabreParams(), 25000.0)
    rule.last_quality = 2
    assert rule.choose(snapshot(20000.0, 1000.0))[0] == 2  # 1 Mbit/s sustains q1 < last


def test_bola_shrinks_v_to_the_segments_left(ladder: Ladder) -> None:
    mid = BolaRule(SabreLadder.of(ladder), SabreParams(), 25000.0)
    end = BolaRule(SabreLadder.of(ladder), SabreParams(), 25000.0)
    basic = BolaRule(SabreLadder.of(ladder), SabreParams(basic=True), 25000.0)
    assert mid.choose(snapshot(6000.0, 1e6, segment_index=50))[0] == 0
    assert end.choose(snapshot(6000.0, 1e6, segment_index=98))[0] == 3  # V for 3 segments: 6 s is a lot
    assert basic.choose(snapshot(6000.0, 1e6, segment_index=98))[0] == 0


def test_bola_abandons_when_a_lower_whole_segment_scores_better(ladder: Ladder) -> None:
    rule = BolaRule(SabreLadder.of(ladder), SabreParams(), 25000.0)
    rule.choose(snapshot(20000.0, 1e6))
    barely = SabreProgress(quality=5, size_bits=17_200_000.0, downloaded_bits=100_000.0, time_ms=3000.0,
                           time_to_first_bit_ms=0.0)
    assert rule.check_abandon(barely, snapshot(1000.0, 1e6)) == 0
    assert rule.last_quality == 0
    nearly_done = SabreProgress(quality=5, size_bits=17_200_000.0, downloaded_bits=17_000_000.0, time_ms=3000.0,
                                time_to_first_bit_ms=0.0)
    assert rule.check_abandon(nearly_done, snapshot(1000.0, 1e6)) is None


# -- BOLA-E --------------------------------------------------------------------------------------------------------


def test_bola_e_starts_at_the_sustained_quality_with_a_placeholder_to_match(ladder: Ladder) -> None:
    rule = BolaERule(SabreLadder.of(ladder), SabreParams(), 25000.0)
    quality, delay_ms, _ = rule.choose(snapshot(4000.0, 2000.0))
    assert (quality, delay_ms) == (3, 0.0)
    assert rule.placeholder_ms == pytest.approx(rule.min_level(3) - 4000.0)
    assert rule.min_level(3) > 4000.0


def test_bola_e_spends_the_placeholder_before_waiting(ladder: Ladder) -> None:
    rule = BolaERule(SabreLadder.of(ladder), SabreParams(oscillation="o"), 25000.0)  # O: stays at q1
    rule.choose(snapshot(4000.0, 500.0))  # startup at q1
    rule.report_download(1, 1000.0, 8000.0, None)
    rule.placeholder_ms = 5000.0
    level_ms = rule.max_level(1) - 1000.0  # with the placeholder, 4 s above where q1 is worth fetching
    quality, delay_ms, _ = rule.choose(snapshot(level_ms, 500.0))
    assert quality == 1 and delay_ms == 0.0 and rule.placeholder_ms == pytest.approx(1000.0)
    quality, delay_ms, _ = rule.choose(snapshot(level_ms + 3000.0, 500.0))
    assert quality == 1 and delay_ms == pytest.approx(2000.0) and rule.placeholder_ms == 0.0


def test_bola_e_placeholder_grows_by_waits_and_shrinks_after_an_abandonment(ladder: Ladder) -> None:
    rule = BolaERule(SabreLadder.of(ladder), SabreParams(), 25000.0)
    rule.choose(snapshot(4000.0, 2000.0))
    before = rule.placeholder_ms
    rule.report_delay(1500.0)
    assert rule.placeholder_ms == pytest.approx(before + 1500.0)
    rule.report_download(4, 2500.0, 6000.0, 2)
    assert rule.placeholder_ms == pytest.approx(rule.min_level(2) - 6000.0)
    assert rule.last_quality == 4  # Sabre remembers the abandoned quality as the last one
    rule.report_download(4, 2500.0, 6000.0, 0)
    assert rule.placeholder_ms == pytest.approx(10000.0 - 6000.0)  # to q0: down to the 10 s minimum buffer


def test_bola_e_breaks_the_tie_at_a_threshold_as_sabre_does() -> None:
    # After abandoning q6 for q5 on bbb.json, Sabre deflates the placeholder so buffer + placeholder sits exactly
    # on q5's threshold, where q4 and q5 score the same; Sabre's ms/kbit/s rounding picks q4 (3Glogs
    # report.2010-09-14_2303CEST, segment 42). Computing in seconds and bit/s would pick q5.
    for level_ms in (11000.0, 14078.047, 15500.25):
        rule = BolaERule(SabreLadder.of(BBB), SabreParams(), 25000.0)
        rule.choose(snapshot(level_ms, 1875.1, latency_ms=100.0))
        rule.placeholder_ms = 20000.0  # more than the threshold needs (Sabre had 8048.619 at 14078.047 ms)
        rule.report_download(6, 565.116, level_ms, 5)
        assert level_ms + rule.placeholder_ms == rule.min_level(5)
        assert rule.choose(snapshot(level_ms, 1875.1, latency_ms=100.0))[0] == 4


def test_bola_e_abandons_for_a_lower_quality_once_a_latency_is_paid(ladder: Ladder) -> None:
    rule = BolaERule(SabreLadder.of(ladder), SabreParams(), 25000.0)
    rule.choose(snapshot(4000.0, 5000.0))
    rule.placeholder_ms = 0.0
    slow = SabreProgress(quality=5, size_bits=17_200_000.0, downloaded_bits=200_000.0, time_ms=1100.0,
                         time_to_first_bit_ms=100.0)
    target = rule.check_abandon(slow, snapshot(2000.0, 5000.0))
    assert target is not None and target < 5
    almost = SabreProgress(quality=5, size_bits=17_200_000.0, downloaded_bits=17_100_000.0, time_ms=1100.0,
                           time_to_first_bit_ms=100.0)
    assert rule.check_abandon(almost, snapshot(2000.0, 5000.0)) is None  # less left than one latency brings


# -- DYNAMIC and DYNAMIC-DASH --------------------------------------------------------------------------------------


def test_dynamic_dash_switches_to_bola_e_above_10s_and_back_below_5s(ladder: Ladder) -> None:
    rule = DynamicDashRule(SabreLadder.of(ladder), SabreParams(), 25000.0)
    chosen = [rule.choose(snapshot(level_ms, 2000.0))[2].partition(":")[0]
              for level_ms in (9000.0, 11000.0, 7000.0, 4000.0, 9000.0)]
    assert chosen == ["throughput", "bola-e", "bola-e", "throughput", "throughput"]


def test_dynamic_dash_lets_only_the_active_rule_abandon(ladder: Ladder) -> None:
    rule = DynamicDashRule(SabreLadder.of(ladder), SabreParams(), 25000.0)
    crawling = SabreProgress(quality=4, size_bits=11_400_000.0, downloaded_bits=120_000.0, time_ms=300.0,
                             time_to_first_bit_ms=100.0)
    assert rule.check_abandon(crawling, snapshot(3000.0, 4000.0)) is None  # the throughput rule's grace time
    rule.choose(snapshot(11000.0, 4000.0))  # BOLA-E takes over (startup)
    assert rule.check_abandon(crawling, snapshot(3000.0, 4000.0)) is not None


@pytest.mark.parametrize(("throughput_kbps", "rule"), [(300.0, "bola"), (1e6, "throughput")])
def test_sabre_dynamic_takes_bola_above_10s_only_when_it_picks_at_least_the_throughput_rule(
        ladder: Ladder, throughput_kbps: float, rule: str) -> None:
    dynamic = DynamicRule(SabreLadder.of(ladder), SabreParams(), 25000.0)
    assert dynamic.choose(snapshot(9000.0, throughput_kbps))[2].startswith("throughput")
    assert dynamic.choose(snapshot(12000.0, throughput_kbps))[2].startswith(rule)


# -- parameters ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "params", "match"), [
    ("bola-e", {"oscillation": "x"}, "oscillation"),
    ("sabre-throughput", {"estimator": "median"}, "estimator"),
    ("sabre-bola", {"half_lives_s": (3.0,)}, "half_lives_s"),
    ("dynamic-dash", {"buffer_size_s": 0}, "buffer_size_s"),
    ("sabre-dynamic", {"window_sizes": (0,)}, "window sizes"),
    ("bola-o", {"oscillation": "u"}, "sabre-bola"),
    ("bola-e", {"gamma": 5}, "has no parameter 'gamma'"),
])
def test_sabre_algorithms_reject_bad_parameters(name: str, params: dict[str, Any], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        abr.make(name, **params)


def test_sabre_buffer_size_overrides_the_observed_cap(ladder: Ladder) -> None:
    fixed, observed = abr.make("bola-e", buffer_size_s=60.0), abr.make("bola-e")
    first = download(0, size_bytes=500_000, transfer_s=1.0, start_s=0.0)
    for algorithm in (fixed, observed):
        algorithm.decide(observe(ladder, (first,), time_s=1.0, buffer_s=4.0))
    assert fixed._rule.gp != observed._rule.gp  # type: ignore[attr-defined]
