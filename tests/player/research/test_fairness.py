"""Fairness figures by hand: Jain's index, FESTIVE's instability, the group summary."""

from __future__ import annotations

import pytest

from player.research.fairness import festive_instability, jain_index, link_fairness


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
