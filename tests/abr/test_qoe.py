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


def test_live_qoe_weights_are_the_mmsys_2020_challenges() -> None:
    from abr.qoe import LiveQoe
    q = LiveQoe.for_ladder([200_000, 600_000, 1_000_000], 0.5)  # the challenge's "Normal" ladder, 0.5 s segments
    assert (q.bitrate_reward, q.switch_penalty, q.rebuffer_penalty) == (0.5, 1.0, 1000.0)
    assert (q.latency_threshold_s, q.latency_penalty_low, q.latency_penalty_high, q.speed_penalty) == (1.1, 10.0, 100.0,
                                                                                                         200.0)


def test_live_qoe_of_a_hand_computed_session() -> None:
    from abr.qoe import LiveQoe
    q = LiveQoe.for_ladder([200_000, 600_000, 1_000_000], 0.5)
    terms = q.terms(bitrates_bps=[200_000, 1_000_000, 600_000], rebuffer_s=[0.0, 0.5, 0.0],
                    latency_s=[1.0, 2.0, 1.1], playback_rate=[1.0, 1.05, 0.95])
    # bitrate 0.5 * (200 + 1000 + 600) = 900; switches |1000-200| + |600-1000| = 1200; stall 1000 * 0.5 = 500;
    # latency 10 * 1.0 + 100 * 2.0 + 10 * 1.1 = 221 (1.1 s is still "at most the threshold"); speed 200 * 0.1 = 20
    assert terms["bitrate"] == pytest.approx(900.0)
    assert terms["switch"] == pytest.approx(1200.0)
    assert terms["rebuffer"] == pytest.approx(500.0)
    assert terms["latency"] == pytest.approx(221.0)
    assert terms["speed"] == pytest.approx(20.0)
    assert terms["total"] == pytest.approx(900 - 1200 - 500 - 221 - 20)
    assert q.score(bitrates_bps=[200_000], rebuffer_s=[0.0], latency_s=[0.0], playback_rate=[1.0]) == pytest.approx(100.0)


def test_live_qoe_rejects_mismatched_inputs_and_bad_weights() -> None:
    from abr.qoe import LiveQoe
    q = LiveQoe.for_ladder([200_000, 1_000_000], 2.0)
    with pytest.raises(ValueError, match="per segment"):
        q.terms(bitrates_bps=[1e6, 1e6], rebuffer_s=[0.0], latency_s=[1.0, 1.0], playback_rate=[1.0, 1.0])
    with pytest.raises(ValueError, match="weights"):
        LiveQoe(bitrate_reward=-1.0, rebuffer_penalty=1.0, latency_penalty_low=1.0, latency_penalty_high=1.0,
                speed_penalty=1.0)
    with pytest.raises(ValueError):
        LiveQoe.for_ladder([], 2.0)
