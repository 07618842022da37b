"""Live playback in the session: the schedule, the join, availability, rate control, seek to live."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest

from abr.types import Decision, Ladder
from netsim.synthetic import constant
from netsim.trace import Trace
from player.bundled import ENVIVIO_DIR
from player.live import LiveConfig, LiveSchedule, LiveSession, catchup_rate
from player.research.live_sim import LiveDriver, LiveSimConfig, live_video, run_live_session
from player.session import Fetch, SessionConfig, Wait
from player.timeline import Timeline
from player.video import Video, load_video
from tests.player.conftest import FixedContent, Scripted

LADDER = Ladder(bitrates_bps=(200_000, 600_000, 1_000_000), segment_duration_s=2.0)


@pytest.fixture(scope="module")
def envivio() -> Video:
    return load_video(str(ENVIVIO_DIR))


def session(schedule: LiveSchedule, live: LiveConfig | None = None, count: int = 100) -> LiveSession:
    abr = Scripted(*[Decision(quality=0, reason="scripted")] * count)
    return LiveSession(abr, FixedContent(LADDER, count), SessionConfig(), live=live or LiveConfig(),
                       schedule=schedule)


# -- the schedule -----------------------------------------------------------------------------------------------


def test_schedule_whole_segments_are_available_once_complete() -> None:
    schedule = LiveSchedule(availability_start_s=-10.0, segment_duration_s=2.0)
    assert schedule.first_available_s(0) == -8.0
    assert schedule.first_available_s(5) == 2.0
    assert schedule.edge_s(3.0) == 12.0  # 13 s produced: 6 whole segments
    assert schedule.chunks_per_segment == 1


def test_schedule_chunks_are_available_as_they_are_made() -> None:
    schedule = LiveSchedule(availability_start_s=0.0, segment_duration_s=2.0, chunk_duration_s=0.5)
    assert schedule.chunks_per_segment == 4
    assert [schedule.chunk_available_s(3, c) for c in range(4)] == [6.5, 7.0, 7.5, 8.0]
    assert schedule.complete_s(3) == 8.0
    assert schedule.edge_s(7.2) == 7.0


def test_schedule_from_an_observed_availability() -> None:
    whole = LiveSchedule.from_availability(segment=5, available_at_s=2.0, segment_duration_s=2.0)
    assert whole == LiveSchedule(availability_start_s=-10.0, segment_duration_s=2.0)
    chunked = LiveSchedule.from_availability(segment=3, chunk=1, available_at_s=7.0, segment_duration_s=2.0,
                                             chunk_duration_s=0.5)
    assert chunked.availability_start_s == 0.0 and chunked.chunk_available_s(3, 1) == 7.0
    with pytest.raises(ValueError, match="chunk 4"):
        LiveSchedule.from_availability(segment=3, chunk=4, available_at_s=7.0, segment_duration_s=2.0,
                                       chunk_duration_s=0.5)


def test_a_driver_moves_the_schedule_by_what_it_sees_published() -> None:
    live = session(LiveSchedule(availability_start_s=-10.0, segment_duration_s=2.0), LiveConfig(target_latency_s=4.0))
    live.next_action()  # joins at 6 s: segment 3
    live.on_download(0.2, size_bytes=1)
    live.on_available(segment=4, available_at_s=1.0)  # a refresh: segment 4 (complete at 0 s before) came 1 s later
    assert live.schedule.availability_start_s == -9.0
    wait = live.next_action()
    assert isinstance(wait, Wait) and wait.duration_s == pytest.approx(0.8)
    with pytest.raises(ValueError, match="segment duration"):
        live.update_schedule(LiveSchedule(availability_start_s=0.0, segment_duration_s=4.0))


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"segment_duration_s": 2.0, "chunk_duration_s": 0.3}, "divide"),
    ({"segment_duration_s": 0.0}, "segment duration"),
    ({"segment_duration_s": 2.0, "chunk_duration_s": -1.0}, "divide"),
])
def test_schedule_rejects_bad_durations(kwargs: dict[str, float], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        LiveSchedule(availability_start_s=0.0, **kwargs)


@pytest.mark.parametrize("kwargs", [{"target_latency_s": 0.0}, {"min_rate": 1.1}, {"max_rate": 0.9},
                                    {"max_drift_s": 0.0}, {"catchup": "fast"}])
def test_live_config_rejects_bad_values(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        LiveConfig(**kwargs)  # type: ignore[arg-type]


# -- the session ------------------------------------------------------------------------------------------------


def test_session_joins_at_the_live_edge_minus_the_target_latency() -> None:
    live = session(LiveSchedule(availability_start_s=-60.0, segment_duration_s=2.0, chunk_duration_s=0.5),
                   LiveConfig(target_latency_s=1.5))
    action = live.next_action()
    assert isinstance(action, Fetch)
    assert action.segment_index == 29  # edge 60 s, join at 58.5 s: the segment 58..60 s
    assert live.playhead_s == 58.5
    assert live.latency_s == pytest.approx(1.5)
    assert live.joined_at_s == 0.0


def test_a_join_starts_at_the_boundary_nearest_the_target_not_up_to_a_segment_over() -> None:
    # Whole 2 s segments, target 4 s: the join point is the channel's time less the target (dash.js:
    # the DVR window's end less the live delay), at the nearest segment boundary. From the published
    # edge less the target it would be up to a segment over the target (1.9 s here).
    live = session(LiveSchedule(availability_start_s=-5.9, segment_duration_s=2.0), LiveConfig(target_latency_s=4.0))
    action = live.next_action()
    assert isinstance(action, Fetch) and action.segment_index == 1  # 1.9 s -> the boundary at 2 s
    assert live.playhead_s == pytest.approx(2.0) and live.latency_s == pytest.approx(3.9)
    # 4.9 s old: 0.9 s -> the boundary at 0 s (latency 4.9), a whole segment to play, not 0.1 s of one.
    live = session(LiveSchedule(availability_start_s=-4.9, segment_duration_s=2.0), LiveConfig(target_latency_s=4.0))
    assert isinstance(live.next_action(), Fetch) and live.playhead_s == 0.0


def test_a_join_never_starts_with_only_its_segments_last_chunk_to_play() -> None:
    # 2 s segments of 0.5 s chunks, target 2 s, the channel 7.6 s old: the nearest chunk boundary is
    # 5.5 s, the last chunk of the segment 4..6 s; the next segment's first chunk (its keyframe's,
    # the largest) would have to cross in 0.5 s. The join starts that segment instead (latency 1.6 s,
    # its first three chunks made).
    schedule = LiveSchedule(availability_start_s=-7.6, segment_duration_s=2.0, chunk_duration_s=0.5)
    live = session(schedule, LiveConfig(target_latency_s=2.0))
    action = live.next_action()
    assert isinstance(action, Fetch) and action.segment_index == 3
    assert live.playhead_s == pytest.approx(6.0) and live.latency_s == pytest.approx(1.6)
    # Two chunks left (7.1 s old: 5.0 s): the join stays at the boundary nearest the target.
    live = session(replace(schedule, availability_start_s=-7.1), LiveConfig(target_latency_s=2.0))
    assert isinstance(live.next_action(), Fetch) and live.playhead_s == pytest.approx(5.0)
    # The next segment's start with no chunk of it made yet (target 0.5 s, 4.0 s old): stays.
    live = session(LiveSchedule(availability_start_s=-4.0, segment_duration_s=2.0, chunk_duration_s=0.5),
                   LiveConfig(target_latency_s=0.5))
    assert isinstance(live.next_action(), Fetch) and live.playhead_s == pytest.approx(3.5)


def test_session_waits_for_a_segment_that_is_not_available_yet() -> None:
    schedule = LiveSchedule(availability_start_s=-10.0, segment_duration_s=2.0)
    live = session(schedule, LiveConfig(target_latency_s=4.0))
    first = live.next_action()
    assert isinstance(first, Fetch) and first.segment_index == 3  # edge 10 s, join at 6 s
    live.on_download(0.2, size_bytes=10_000)
    # Segments 4 (complete at 0 s) is there; segment 5 only at 2 s.
    assert isinstance(live.next_action(), Fetch)
    live.on_download(0.4, size_bytes=10_000)
    wait = live.next_action()
    assert isinstance(wait, Wait) and wait.duration_s == pytest.approx(1.6)
    assert "not available" in wait.reason


def test_chunks_are_playable_as_they_arrive() -> None:
    schedule = LiveSchedule(availability_start_s=-4.0, segment_duration_s=2.0, chunk_duration_s=0.5)
    live = session(schedule, LiveConfig(target_latency_s=0.5))
    fetch = live.next_action()
    assert isinstance(fetch, Fetch) and fetch.segment_index == 1  # join at 3.5 s, in the segment 2..4 s
    assert live.buffer_s == -1.5
    live.on_chunk(0.1, size_bytes=100, media_duration_s=1.5)  # the three chunks made so far
    assert not live.started
    live.on_chunk(0.6, size_bytes=100, media_duration_s=0.5)
    assert live.started and live.buffer_s == pytest.approx(0.5)
    with pytest.raises(ValueError, match="more than the segment"):
        live.on_chunk(0.7, size_bytes=100, media_duration_s=0.5)
    record = live.on_download(0.8, size_bytes=400, active_s=0.3)
    assert record.segment_index == 1
    assert live.observation().downloads[-1].active_s == 0.3
    # No media left to add (the chunks carried it all); 0.2 s played, a little faster than 1x since
    # latency (1.1 s at the start of playback) is over the 0.5 s target.
    assert live.playback_rate > 1.0
    assert 0.29 < live.buffer_s < 0.3


def test_live_session_rejects_content_that_does_not_match_the_schedule() -> None:
    with pytest.raises(ValueError, match="do not match"):
        session(LiveSchedule(availability_start_s=0.0, segment_duration_s=4.0))


def test_live_session_rejects_audio_not_cut_at_the_video_segments(envivio: Video) -> None:
    audio = FixedContent(Ladder(bitrates_bps=(64_000,), segment_duration_s=1.0), 10)
    audio.timeline = Timeline.uniform(1.0, 10)  # type: ignore[attr-defined]

    class WithAudio(FixedContent):
        pass

    WithAudio.audio = audio  # type: ignore[attr-defined]

    with pytest.raises(ValueError, match="live audio must be cut at the video's segments"):
        LiveSession(Scripted(), WithAudio(LADDER, 5), live=LiveConfig(),
                    schedule=LiveSchedule(availability_start_s=0.0, segment_duration_s=2.0))


def test_buffer_drains_at_the_playback_rate() -> None:
    live = session(LiveSchedule(availability_start_s=-20.0, segment_duration_s=2.0), LiveConfig(target_latency_s=6.0))
    live.next_action()  # joins at 14 s: segment 7
    live.on_download(0.1, size_bytes=1)  # plays from 0.1 s with 2 s buffered, 6.1 s behind
    live.advance(0.2)
    rate = live.playback_rate
    assert 1.0 < rate <= 1.05  # a little behind the target: a little faster
    before_playhead, before_buffer = live.playhead_s, live.buffer_s
    live.advance(1.2)
    assert live.playhead_s - before_playhead == pytest.approx(rate)
    assert before_buffer - live.buffer_s == pytest.approx(rate)


def test_buffer_running_dry_at_a_fast_rate_is_a_stall_for_the_rest() -> None:
    live = session(LiveSchedule(availability_start_s=-20.0, segment_duration_s=2.0), LiveConfig(target_latency_s=6.0))
    live.next_action()
    live.on_download(0.1, size_bytes=1)
    live.advance(0.2)
    rate = live.playback_rate
    live.advance(10.0)
    assert live.stalled and live.stall_count == 1
    assert live.total_rebuffer_s == pytest.approx(9.8 - 1.9 / rate)  # 1.9 s of media lasted 1.9 / rate s
    assert live.playback_rate == 1.0  # no catch-up while stalled


# -- catch-up -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("latency_s", "expected"), [(3.0, 1.0), (3.01, 1.0), (13.0, 1.05), (-7.0, 0.95)])
def test_catchup_rate_is_dash_js_sigmoid_within_the_bounds(latency_s: float, expected: float) -> None:
    config = LiveConfig(target_latency_s=3.0)
    assert catchup_rate(config, latency_s=latency_s, buffer_s=2.0) == pytest.approx(expected, abs=1e-6)


def test_catchup_rate_hand_computed() -> None:
    # drift 0.2 s: 1 - 0.05 + 0.1 / (1 + e^-1) = 0.95 + 0.0731059 = 1.0231059
    rate = catchup_rate(LiveConfig(target_latency_s=3.0), latency_s=3.2, buffer_s=2.0)
    assert rate == pytest.approx(0.95 + 0.1 / (1 + math.exp(-1.0)))


def test_lolp_catchup_slows_down_on_a_low_buffer_whatever_the_latency() -> None:
    config = LiveConfig(target_latency_s=3.0, catchup="lolp", playback_buffer_min_s=0.5)
    assert catchup_rate(config, latency_s=10.0, buffer_s=0.1) < 1.0
    assert catchup_rate(config, latency_s=10.0, buffer_s=1.0) > 1.0


# -- simulated sessions -------------------------------------------------------------------------------------------


def test_latency_holds_the_target_on_a_steady_link(envivio: Video) -> None:
    config = LiveSimConfig(live=LiveConfig(target_latency_s=1.5), chunk_duration_s=0.5, duration_s=300.0)
    result = run_live_session("l2a", envivio, constant(5e6, duration_s=600.0), config)
    assert result.stats.stalls == 0
    assert abs(result.stats.latency_p50_s - 1.5) < 0.1
    assert result.stats.latency_p95_s < 2.0
    assert result.stats.seeks_to_live == 0
    assert 140 <= result.qualities.size <= 151  # 5 minutes of 2 s segments


def test_whole_segment_mode_holds_a_longer_target(envivio: Video) -> None:
    config = LiveSimConfig(live=LiveConfig(target_latency_s=4.0), chunk_duration_s=None, duration_s=120.0)
    result = run_live_session("dynamic", envivio, constant(5e6, duration_s=600.0), config)
    assert result.stats.stalls == 0
    assert abs(result.stats.latency_p50_s - 4.0) < 0.1


def test_session_seeks_back_to_the_live_edge_when_far_behind(envivio: Video) -> None:
    # 30 s of good link, 15 s of nothing, then good again: latency grows by the outage, past target + max drift.
    trace = Trace(name="outage", durations_s=np.array([30.0, 15.0, 300.0]),
                  bandwidth_bps=np.array([5e6, 0.0, 5e6]))
    live = LiveConfig(target_latency_s=1.5, max_drift_s=5.0)
    config = LiveSimConfig(live=live, chunk_duration_s=0.5, duration_s=120.0)
    result = run_live_session("l2a", envivio, trace, config, record_events=True)
    assert result.stats.seeks_to_live >= 1
    assert result.stats.latency_max_s > 1.5 + 5.0
    seeks = [e for e in result.events if e.kind == "seek" and "max drift" in str(e.data.get("reason"))]
    assert seeks and seeks[0].time_s > 30.0
    assert result.latency_s[-1] < 2.5  # back near the target


def test_without_seek_to_live_the_latency_stays_high_longer(envivio: Video) -> None:
    trace = Trace(name="outage", durations_s=np.array([30.0, 15.0, 300.0]), bandwidth_bps=np.array([5e6, 0.0, 5e6]))
    config = LiveSimConfig(live=LiveConfig(target_latency_s=1.5, max_drift_s=math.inf), chunk_duration_s=0.5,
                           duration_s=60.0)
    result = run_live_session("l2a", envivio, trace, config)
    assert result.stats.seeks_to_live == 0
    assert result.latency_s[-1] > 5.0  # 1.05x catches up 0.05 s per s: 15 s behind takes minutes


def test_chunked_downloads_measure_the_link_not_the_encoder(envivio: Video) -> None:
    from abr.estimators import sample_bps
    video = live_video(envivio, LiveSimConfig())
    live = LiveSession(Scripted(*[Decision(quality=2, reason="q2")] * 200), video, SessionConfig(),
                       live=LiveConfig(target_latency_s=1.5), schedule=LiveSimConfig().schedule())
    trace = constant(8e6, duration_s=600.0)
    driver = LiveDriver(live, video, trace, rtt_s=0.05)
    for _ in range(20):  # a few segments by hand
        action = live.next_action()
        if isinstance(action, Wait):
            live.advance(live.time_s + action.duration_s)
        else:
            driver._fetch(action)
    download = live.observation().downloads[-1]
    assert download.active_s is not None and download.active_s < download.duration_s / 3
    assert download.throughput_bps < 0.6 * 8e6  # bytes over request time: mostly idle gaps
    assert sample_bps(download) == pytest.approx(8e6, rel=0.02)  # bytes over the active time: the link
