"""Abandonment on a shared link: a session with audio abandons as a video-only one does, alone or
beside other players, with one rule (`player.research.sim_abandon`)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from abr.types import Ladder
from netsim.sources import open_traces
from netsim.trace import Trace
from player.bundled import TRACES_DIR
from player.research.sim import PROFILES, result_of, run_session
from player.research.sim_shared import SharedLinkDriver
from player.session import PlaybackSession
from player.video import AudioTrack, Video

DEFAULT = PROFILES["default"]


def _av_title(segments: int = 15) -> Video:
    """A title like the demo's: 4 s segments on a 0.3-6 Mbit/s ladder, 128 kbit/s audio beside it."""
    rates = np.array([300_000, 750_000, 1_200_000, 1_850_000, 2_850_000, 4_300_000, 6_000_000])
    rng = np.random.default_rng(7)
    sizes = (rates * 4.0 / 8 * rng.uniform(0.8, 1.2, (segments, rates.size))).astype(np.int64)
    audio = AudioTrack(ladder=Ladder(bitrates_bps=(128_000,), segment_duration_s=4.0),
                       sizes_bytes=np.full((segments, 1), 64_000), durations_s=(4.0,) * segments)
    return Video(name="av", ladder=Ladder(bitrates_bps=tuple(int(r) for r in rates), segment_duration_s=4.0),
                 sizes_bytes=sizes, segment_count=segments, audio=audio)


def _trace(name: str) -> Trace:
    (trace,) = open_traces([str(TRACES_DIR / name)])
    return trace


def test_a_session_with_audio_abandons_a_download_that_became_too_slow() -> None:
    # BOLA on norway_bus_1: a deep fade under a high-rung download. The headless player behind the
    # shaper abandons it (BOLA's should_abandon); the simulator with audio did not, and scored BOLA
    # above the emulation on this trace.
    video, trace = _av_title(), _trace("norway_bus_1")
    result = run_session("bola", video, trace, DEFAULT)
    assert result.abandoned > 0
    assert result.metrics.segments == video.segment_count and len(result.audio_records) == video.segment_count
    kept = run_session("bola", video, trace, dataclasses.replace(DEFAULT, abandonment=False))
    assert kept.abandoned == 0
    assert not np.array_equal(kept.qualities, result.qualities)


@pytest.mark.parametrize("abr", ["bola", "dynamic", "bba"])
@pytest.mark.parametrize("trace_name", ["norway_bus_1", "norway_ferry_10", "norway_tram_1"])
def test_one_player_on_the_shared_link_driver_is_the_session_simulator(abr: str, trace_name: str) -> None:
    # One rule for both: the N-player driver with one player decides, abandons and times every download
    # as the single-session driver does.
    video, trace = _av_title(), _trace(trace_name)
    alone = run_session(abr, video, trace, DEFAULT)
    session = PlaybackSession(DEFAULT.make_abr(abr, video), video, DEFAULT.session)
    driver = SharedLinkDriver([session], video, trace, DEFAULT)
    driver.drive()
    shared = result_of(abr, video, trace, DEFAULT, session, driver.drivers[0].records, offset_s=0.0,
                       models=DEFAULT.qoe_models(video), abandoned=driver.abandoned[0])
    assert shared.abandoned == alone.abandoned
    np.testing.assert_array_equal(shared.qualities, alone.qualities)
    np.testing.assert_allclose(shared.download_s, alone.download_s, rtol=1e-9, atol=1e-9)
    assert shared.metrics.qoe["lin"] == pytest.approx(alone.metrics.qoe["lin"], abs=1e-9)
