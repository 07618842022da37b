"""QoE arithmetic on hand-computed sessions, and per-session metrics."""

from __future__ import annotations

import math

import pytest

from abr.qoe import QOE_MODELS, qoe_model, session_metrics

LADDER_BPS = (300_000, 750_000, 1_200_000, 1_850_000, 2_850_000, 4_300_000)
# Five 4 s segments; segment 0 is the startup (not counted), then a short stall and a long one.
BITRATES_BPS = (750_000, 300_000, 1_200_000, 1_200_000, 4_300_000)
REBUFFER_S = (0.0, 0.5, 1.5, 0.0, 0.0)


@pytest.mark.parametrize(("model", "expected"), [
    # lin: (0.3 - 4.3*0.5 - 0.45) + (1.2 - 4.3*1.5 - 0.9) + (1.2 - 0 - 0) + (4.3 - 0 - 3.1)
    ("lin", -2.3 - 6.15 + 1.2 + 1.2),
    # log: q = ln(R / 300k); (0 - 1.33 - ln 2.5) + (ln 4 - 3.99 - ln 4) + ln 4 + (ln(43/3) - (ln(43/3) - ln 4))
    ("log", (-1.33 - math.log(2.5)) - 3.99 + math.log(4) + math.log(4)),
    # hd: q = 2, 1, 3, 3, 20; (1 - 4 - 1) + (3 - 12 - 2) + 3 + (20 - 17)
    ("hd", -4 - 11 + 3 + 3),
])
def test_qoe_models_score_a_hand_computed_session(model: str, expected: float) -> None:
    assert qoe_model(model).score(BITRATES_BPS, REBUFFER_S, LADDER_BPS) == pytest.approx(expected)


def test_qoe_excludes_segment_zero_whose_wait_is_the_startup_delay() -> None:
    stalled_start = (5.0,) + REBUFFER_S[1:]
    lin = qoe_model("lin")
    assert lin.score(BITRATES_BPS, stalled_start, LADDER_BPS) == lin.score(BITRATES_BPS, REBUFFER_S, LADDER_BPS)


@pytest.mark.parametrize(("bitrate_bps", "expected"), [
    (1_525_000, 7.5),  # halfway between 1200 (3) and 1850 (12) kbit/s
    (5_750_000, 25.0),  # above 4300 kbit/s the last step's slope goes on: +5 per 1450 kbit/s
    (300_000, 1.0),
])
def test_hd_utility_interpolates_pensieve_table_for_other_ladders(bitrate_bps: int, expected: float) -> None:
    assert qoe_model("hd").score([bitrate_bps] * 2, [0.0, 0.0], LADDER_BPS) == pytest.approx(expected)


def test_unknown_qoe_model_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="unknown QoE model 'linear'"):
        qoe_model("linear")


def test_session_metrics_of_a_hand_computed_session() -> None:
    metrics = session_metrics(bitrates_bps=BITRATES_BPS, rebuffer_s=REBUFFER_S, ladder_bps=LADDER_BPS,
                              segment_duration_s=4.0, startup_s=1.2)
    assert metrics.segments == 5
    assert metrics.startup_s == 1.2
    assert metrics.rebuffer_s == pytest.approx(2.0)
    assert metrics.rebuffer_count == 2
    assert metrics.rebuffer_ratio == pytest.approx(2.0 / 22.0)  # 2 s stalled of 20 s played + 2 s stalled
    assert metrics.avg_bitrate_bps == pytest.approx(1_550_000)
    assert metrics.switches == 3  # 750->300, 300->1200, 1200->4300
    assert metrics.avg_switch_bps == pytest.approx((450_000 + 900_000 + 3_100_000) / 3)
    assert set(metrics.qoe) == set(QOE_MODELS)
    assert metrics.qoe["lin"] == pytest.approx(-6.05)
    assert metrics.as_dict()["qoe_lin"] == metrics.qoe["lin"]


def test_session_metrics_count_given_stalls_and_handle_steady_sessions() -> None:
    steady = session_metrics(bitrates_bps=[1_200_000] * 3, rebuffer_s=[0.0] * 3, ladder_bps=LADDER_BPS,
                             segment_duration_s=4.0, startup_s=0.5, rebuffer_count=0)
    assert (steady.switches, steady.avg_switch_bps, steady.rebuffer_ratio) == (0, 0.0, 0.0)
    assert steady.qoe["lin"] == pytest.approx(2.4)
    counted = session_metrics(bitrates_bps=BITRATES_BPS, rebuffer_s=REBUFFER_S, ladder_bps=LADDER_BPS,
                              segment_duration_s=4.0, startup_s=1.2, rebuffer_count=1)
    assert counted.rebuffer_count == 1  # one dry spell across two segments, as the session counted it


def test_session_metrics_need_one_stall_time_per_segment() -> None:
    with pytest.raises(ValueError, match="one rebuffer time per segment"):
        session_metrics(bitrates_bps=BITRATES_BPS, rebuffer_s=REBUFFER_S[:-1], ladder_bps=LADDER_BPS,
                        segment_duration_s=4.0, startup_s=0.0)
