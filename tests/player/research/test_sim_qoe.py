"""Quality-aware QoE: the packager's per-segment quality flows into the video model, the QoE, MPC's
objective and the offline optimum; the stall penalty follows the ladder unless a profile fixes it."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

import abr
from abr.qoe import QOE_CONFIGS, QoeConfig
from abr.types import Download, Ladder, Observation
from netsim import synthetic
from player.research.optimal import OptimalConfig, offline_optimal
from player.research.sim import PROFILES, run_batch, run_session, simulate
from player.video import Video, load_sabre_video, load_video
from tests.conftest import CLEAR_TITLE, PackagedTitles


def quality_video(segments: int = 12) -> Video:
    """Four rungs whose top one looks slightly worse than the third (SSIM dB; an encode at too high a
    resolution for its bitrate)."""
    ladder = Ladder(bitrates_bps=(400_000, 1_000_000, 2_500_000, 6_000_000), segment_duration_s=2.0)
    sizes = (np.asarray(ladder.bitrates_bps) * 2.0 / 8.0)[None, :].repeat(segments + 1, axis=0).astype(np.int64)
    quality = np.tile([8.0, 12.0, 15.0, 14.8], (segments, 1)) + np.linspace(0, 1, segments)[:, None]
    return Video(name="q", ladder=ladder, sizes_bytes=sizes, segment_count=segments, quality=quality,
                 quality_metric="ssim_db")


def test_a_packaged_title_brings_its_per_segment_quality(packaged: PackagedTitles) -> None:
    video = load_video(packaged.content_root / CLEAR_TITLE)
    assert video.quality_metric == "psnr_db" and video.quality is not None
    assert video.quality.shape == (video.segment_count, len(video.ladder))
    assert np.all(video.quality[:, -1] >= video.quality[:, 0])  # the top rung looks at least as good
    assert video.upcoming_quality(0, 2) == tuple(tuple(row) for row in video.quality[:2].tolist())
    result = run_session("bba", video, synthetic.constant(5e6, duration_s=200), PROFILES["default"])
    assert "quality" in result.metrics.qoe  # reported beside lin/log/hd wherever the video has quality
    played = video.quality[np.arange(video.segment_count), result.qualities]
    expected = played[1:].sum() - np.abs(np.diff(played)).sum() - video.top_quality * result.rebuffer_s[1:].sum()
    assert result.metrics.qoe["quality"] == pytest.approx(expected)


def test_sessions_see_upcoming_quality(packaged: PackagedTitles) -> None:
    from tests.player.conftest import Scripted

    video = load_video(packaged.content_root / CLEAR_TITLE)
    algorithm = Scripted()
    run_session("x", video, synthetic.constant(5e6, duration_s=200), PROFILES["default"], abr=algorithm)
    first = algorithm.seen[0]
    assert first.next_quality == video.upcoming_quality(0, 6) and len(first.next_quality) == len(first.next_sizes_bytes)


def test_quality_aware_mpc_skips_a_rung_that_costs_bits_without_quality() -> None:
    video = quality_video()
    trace = synthetic.constant(20e6, duration_s=500)
    lin = run_session("mpc", video, trace, PROFILES["default"])
    quality = run_session("mpc", video, trace, PROFILES["default"].with_qoe(QOE_CONFIGS["quality"]))
    assert set(lin.qualities[3:].tolist()) == {3}  # QoE_lin: the most bits
    assert set(quality.qualities[3:].tolist()) == {2}  # quality: the best-looking rung, not the biggest
    assert quality.metrics.qoe["quality"] > lin.metrics.qoe["quality"]


def test_quality_mpc_batch_matches_the_state_machine() -> None:
    video = quality_video(20)
    traces = [synthetic.markov([0.5e6, 2e6, 5e6, 9e6], duration_s=120, seed=s) for s in range(5)]
    profile = PROFILES["default"].with_qoe(QOE_CONFIGS["quality"])
    batch = run_batch("mpc-robust", video, traces, profile)
    for trace, b in zip(traces, batch):
        s = run_session("mpc-robust", video, trace, profile)
        np.testing.assert_array_equal(b.qualities, s.qualities)
        assert b.metrics.qoe["quality"] == pytest.approx(s.metrics.qoe["quality"])


def test_the_optimum_maximises_the_quality_qoe_and_beats_every_algorithm() -> None:
    video = quality_video(10)
    profile = PROFILES["default"].with_qoe(QOE_CONFIGS["quality"])
    for seed in range(3):
        trace = synthetic.markov([0.5e6, 2e6, 5e6], duration_s=100, seed=seed)
        best = offline_optimal(video, trace, profile, qoe="quality", config=OptimalConfig(grid_s=0.05)).qoe
        for name in ("bba", "mpc", "rate"):
            assert best >= run_session(name, video, trace, profile).metrics.qoe["quality"] - 1e-6


def test_startup_penalty_charges_the_first_download() -> None:
    video = quality_video(6)
    trace = synthetic.constant(2e6, duration_s=200)
    profile = PROFILES["default"].with_qoe(QOE_CONFIGS["lin"].with_weights({"startup": 3.0}))
    result = run_session("bba", video, trace, profile)
    assert result.metrics.qoe["custom"] == pytest.approx(result.metrics.qoe["lin"] - 3.0 * result.metrics.startup_s)


def test_stall_penalty_is_the_top_rung_unless_the_profile_fixes_it(shared_dir: Path) -> None:
    video = load_sabre_video(shared_dir / "video/sabre/bbb4k.json")
    top_mbps = video.ladder.bitrates_bps[-1] / 1e6
    models = {m.name: m for m in PROFILES["default"].qoe_models(video)}
    assert models["lin"].rebuffer_penalty == pytest.approx(top_mbps)
    assert models["log"].rebuffer_penalty == pytest.approx(np.log(video.ladder.bitrates_bps[-1] / video.ladder.bitrates_bps[0]))
    pensieve = {m.name: m for m in PROFILES["pensieve"].qoe_models(video)}
    assert (pensieve["lin"].rebuffer_penalty, pensieve["log"].rebuffer_penalty, pensieve["hd"].rebuffer_penalty) == \
        (4.3, 2.66, 8.0)
    # MPC plans with the same penalty the session is scored with (here the 4K ladder's top Mbit/s).
    mpc = PROFILES["default"].make_abr("mpc-robust", video)
    assert mpc.params.rebuffer_penalty is None and mpc.params.utility == "lin"  # type: ignore[attr-defined]
    assert PROFILES["pensieve"].make_abr("mpc-robust", video).params.rebuffer_penalty == 4.3  # type: ignore[attr-defined]


def test_mpc_on_a_4k_ladder_stops_trading_stalls_for_bitrate(shared_dir: Path) -> None:
    """Issue 12: with 4.3 per stalled second on Sabre's 4K video (top rung 35 Mbit/s), MPC stalled for
    minutes and still scored best; with the ladder's own penalty it stalls far less."""
    from netsim.formats import load_traces

    video = load_sabre_video(shared_dir / "video/sabre/bbb4k.json").truncated(60)
    traces = load_traces([shared_dir / "traces/sabre/4Glogs"])[:6]
    old = simulate("mpc-robust", video, traces, PROFILES["default"].with_qoe(replace(QOE_CONFIGS["lin"], rebuffer=4.3)))
    new = simulate("mpc-robust", video, traces, PROFILES["default"])
    assert np.mean([r.metrics.rebuffer_s for r in new]) < 0.5 * np.mean([r.metrics.rebuffer_s for r in old])


def test_mpc_quality_needs_scores_and_says_so() -> None:
    ladder = Ladder(bitrates_bps=(1_000_000, 2_000_000), segment_duration_s=2.0)
    obs = Observation(time_s=4.0, buffer_s=4.0, segment_index=2, segment_count=10, ladder=ladder, last_quality=0,
                      downloads=(Download(segment_index=1, quality=0, size_bytes=250_000, duration_s=1.0),))
    with pytest.raises(ValueError, match="needs the segments' quality scores"):
        abr.make("mpc:utility=quality").decide(obs)


def test_qoe_config_checks_its_fields() -> None:
    with pytest.raises(ValueError, match="QoE weight rebuffer must be finite and >= 0"):
        QoeConfig(rebuffer=-1.0)
    with pytest.raises(ValueError, match="QoE utility must be one of"):
        QoeConfig(utility="vmaf")
    with pytest.raises(ValueError, match="needs ssim_db scores; the video has psnr_db"):
        QOE_CONFIGS["ssim"].model((1e6, 2e6), quality_metric="psnr_db", top_quality=40.0)
