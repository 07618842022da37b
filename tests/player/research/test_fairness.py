"""Fairness figures by hand: Jain's index, FESTIVE's instability, the group summary."""

from __future__ import annotations

import pytest

from player.research.fairness import festive_instability, jain_index, link_fairness, mode_gap


@pytest.mark.parametrize(("values", "expected"), [
    ([1.0, 1.0, 1.0, 1.0], 1.0),
    ([1.0, 0.0, 0.0, 0.0], 0.25),  # one player gets everything: 1/n
    ([3.0, 1.0], 16 / 20),  # (3 + 1)^2 / (2 (9 + 1))
    ([2e6, 1e6, 1e6], 16 / 18),  # (4)^2 / (3 (4 + 1 + 1)), scale-free
    ([5.0], 1.0),
    ([0.0, 0.0], 1.0),
])
def test_jain_index_matches_hand_computed_values(values: list[float], expected: float) -> None:
    assert jain_index(values) == pytest.approx(expected)


@pytest.mark.parametrize("values", [[], [1.0, -1.0], [float("nan")]])
def test_jain_index_rejects_empty_negative_or_nan(values: list[float]) -> None:
    with pytest.raises(ValueError, match="Jain"):
        jain_index(values)


def test_festive_instability_is_zero_without_switches_and_weighs_recent_ones_more() -> None:
    assert festive_instability([1e6] * 10, 4.0) == 0.0
    assert festive_instability([1e6], 4.0) == 0.0
    # 20 s window / 10 s segments: k = 2. b = 1, 2, 2: t=1: |2-1| w(0)=2 / b[0] = 2; t=2: (0*2 + 1*1) / (1 + 2).
    assert festive_instability([1.0, 2.0, 2.0], 10.0) == pytest.approx((2.0 + 1 / 3) / 2)
    # The same switch seen one segment later weighs less: w(1) = k - 1 < w(0) = k.
    late = festive_instability([1.0, 1.0, 2.0], 10.0)  # t=1: 0; t=2: |2-1| * 2 / (1 + 1)
    assert late == pytest.approx((0 + 1.0) / 2)


def test_festive_instability_rejects_a_bad_segment_duration() -> None:
    with pytest.raises(ValueError, match="segment duration"):
        festive_instability([1.0, 2.0], 0.0)


def test_link_fairness_summarises_a_group() -> None:
    f = link_fairness(avg_bitrates_bps=[3e6, 1e6], qoes=[10.0, 4.0], switches=[2, 4], instabilities=[0.1, 0.3],
                      received_bytes=750.0, capacity_bytes=1000.0)
    assert (f.players, f.jain_bitrate, f.qoe_mean, f.qoe_spread) == (2, pytest.approx(0.8), 7.0, 6.0)
    assert (f.switches_mean, f.instability_mean, f.utilisation) == (3.0, pytest.approx(0.2), 0.75)
    with pytest.raises(ValueError, match="same number"):
        link_fairness(avg_bitrates_bps=[1.0], qoes=[], switches=[], instabilities=[], received_bytes=1, capacity_bytes=1)
    with pytest.raises(ValueError, match="capacity > 0"):
        link_fairness(avg_bitrates_bps=[1.0], qoes=[1.0], switches=[0], instabilities=[0.0], received_bytes=1,
                      capacity_bytes=0)


def test_a_gap_inside_what_the_simulators_own_timing_moves_give_is_chaos() -> None:
    # Each link's mean is -1 unmoved and -6 or +4 with the timing moved: a perfect model whose
    # emulation lands on one of those answers per link is over 10% off a mean near zero.
    gap = mode_gap([-1.0] * 8, [4, 4, 4, -6, 4, -6, 4, -6], [[-6.0, 4.0]] * 8)
    assert gap.gap_pct == pytest.approx(125.0)
    assert gap.chaos_pct[0] < gap.gap_pct < gap.chaos_pct[1] and gap.gap_ci_pct[0] < 0 < gap.gap_ci_pct[1]
    assert gap.verdict == "chaos"
    assert gap.gap_to_jitter_mean_pct == pytest.approx(125.0)  # the moves' mean is the unmoved -1 here
    assert gap.jitter_spread_pct == pytest.approx(1000.0)  # -6 .. +4 over |-1|
    assert gap == mode_gap([-1.0] * 8, [4, 4, 4, -6, 4, -6, 4, -6], [[-6.0, 4.0]] * 8)  # seeded


def test_a_steady_gap_beyond_the_timing_moves_is_a_model_error() -> None:
    gap = mode_gap([10.0] * 8, [8.0] * 8, [[9.9, 10.1]] * 8)
    assert gap.gap_pct == pytest.approx(-20.0) and gap.gap_ci_pct == pytest.approx((-20.0, -20.0))
    assert -1.01 < gap.chaos_pct[0] < gap.chaos_pct[1] < 1.01 and gap.verdict == "model error"
    assert mode_gap([10.0] * 8, [9.5] * 8, [[9.9, 10.1]] * 8).verdict == "within 10%"


def test_a_gap_the_links_spread_too_widely_to_pin_down_is_not_significant() -> None:
    gap = mode_gap([10.0] * 8, [22, 1, 22, 1, 22, 1, 22, 1], [[10.01, 9.99]] * 8)
    assert gap.gap_pct == pytest.approx(15.0) and gap.gap_ci_pct[0] < 0 < gap.gap_ci_pct[1]
    assert gap.verdict == "not significant"


def test_a_gap_of_one_sign_the_size_of_chaos_is_flagged_as_possibly_biased() -> None:
    # The moves give -6 or +4 around -1; the emulation is 0.5 worse on every link: chaos by its size,
    # but no chaos draw is needed to explain a difference that every link shows.
    gap = mode_gap([-1.0] * 8, [-1.5] * 8, [[-6.0, 4.0]] * 8)
    assert gap.gap_pct == pytest.approx(-50.0) and gap.gap_ci_pct == pytest.approx((-50.0, -50.0))
    assert gap.verdict == "chaos or bias"


def test_mode_gap_rejects_unpaired_links() -> None:
    with pytest.raises(ValueError, match="one simulated, emulated and jittered entry per link"):
        mode_gap([1.0, 2.0], [1.0], [[1.0], [2.0]])
    with pytest.raises(ValueError, match="at least one answer with the timing moved"):
        mode_gap([1.0], [1.0], [[]])
