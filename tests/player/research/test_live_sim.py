"""Simulated live sessions: availability is never violated, rates stay in bounds, every session ends."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from abr.estimators import ChunkArrival
from abr.types import Decision, Ladder
from netsim.synthetic import constant, from_spec
from netsim.trace import Trace
from player.clocksync import ClockSyncConfig
from player.live import LiveConfig, LiveSession
from player.research import live_sim
from player.research.live_sim import (
    ControlTraffic,
    LiveDriver,
    LiveSimConfig,
    compare_live,
    format_live_table,
    live_video,
    run_live_session,
)
from player.video import Video
from tests.player.conftest import Scripted
from tests.player.research.simkit import random_traces

LIVE_ALGORITHMS = ("l2a", "lolp", "dynamic", "bola", "rate", "bba")
# A clock sync after every 2 s refresh (the shortest interval dash.js allows, held there)
EVERY_REFRESH = ClockSyncConfig(time_between_sync_attempts_s=2.0, minimum_time_between_sync_attempts_s=2.0,
                                maximum_time_between_sync_attempts_s=2.0)


def traces() -> st.SearchStrategy[Trace]:
    return random_traces(max_intervals=12, durations_s=(0.05, 20.0), rates_bps=(5e4, 5e7))


def base_video(seed: int) -> Video:
    rates = (200_000, 600_000, 1_000_000, 2_500_000)
    noise = np.random.default_rng(seed).uniform(0.6, 1.4, size=(20, len(rates)))
    sizes = np.maximum(1, np.asarray(rates) * 2.0 / 8 * noise).astype(np.int64)
    return Video(name="base", ladder=Ladder(bitrates_bps=rates, segment_duration_s=2.0), sizes_bytes=sizes,
                 segment_count=20)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(trace=traces(), algorithm=st.sampled_from(LIVE_ALGORITHMS), seed=st.integers(0, 2**16),
       segment_s=st.sampled_from((1.0, 2.0, 4.0)), chunks=st.sampled_from((None, 1, 2, 4)),
       target_s=st.floats(0.5, 8.0), max_drift_s=st.floats(1.0, 20.0), offset_s=st.floats(0.0, 30.0),
       catchup=st.sampled_from(("default", "lolp")),
       control=st.sampled_from((ControlTraffic(), ControlTraffic(manifest_bytes=3800, sync_bytes=390,
                                                                 init_bytes=1300),
                                *(ControlTraffic(manifest_bytes=2300, init_bytes=1300, media_header_bytes=364,
                                                 join_syncs=2, reload=r, target_duration_s=2.0)
                                  for r in ("part", "segment", "poll")))))
def test_live_sessions_never_fetch_before_availability(trace: Trace, algorithm: str, seed: int, segment_s: float,
                                                       chunks: int | None, target_s: float, max_drift_s: float,
                                                       offset_s: float, catchup: str, control: ControlTraffic) -> None:
    live = LiveConfig(target_latency_s=target_s, max_drift_s=max_drift_s, catchup=catchup)  # type: ignore[arg-type]
    config = LiveSimConfig(live=live, segment_duration_s=segment_s,
                           chunk_duration_s=None if chunks is None else segment_s / chunks,
                           duration_s=40.0, channel_age_s=max(10.0, target_s), control=control)
    result = run_live_session(algorithm, base_video(seed), trace, config, offset_s=offset_s, record_events=True)
    schedule = config.schedule()
    requests = {}
    for event in result.events:
        if event.kind == "decision":
            requests[event.data["segment"]] = event.time_s
    fetched = [e for e in result.events if e.kind == "download"]
    assert fetched, "a live session of 40 s fetches something"
    for event in fetched:
        segment = event.data["segment"]
        assert requests[segment] >= schedule.first_available_s(segment) - 1e-9
        assert event.time_s >= schedule.complete_s(segment) - 1e-9 or schedule.chunks_per_segment == 1
    chunk_index: dict[int, int] = {}
    for event in result.events:
        if event.kind == "chunk":
            segment = event.data["segment"]
            c = chunk_index.get(segment, 0)
            chunk_index[segment] = c + 1
            assert event.time_s >= schedule.chunk_available_s(segment, c) - 1e-9
    rates = [e.data["playback_rate"] for e in result.events if e.kind == "rate"]
    assert all(live.min_rate - 1e-12 <= r <= live.max_rate + 1e-12 for r in rates)
    assert np.all((result.playback_rate >= live.min_rate - 1e-12) & (result.playback_rate <= live.max_rate + 1e-12))


def test_live_video_loops_the_base_scaled_to_the_segment_duration() -> None:
    base = base_video(1)
    config = LiveSimConfig(segment_duration_s=1.0, duration_s=30.0, channel_age_s=10.0)
    video = live_video(base, config)
    assert video.segment_count == 40
    assert video.ladder.segment_duration_s == 1.0
    np.testing.assert_array_equal(video.sizes_bytes[21], np.rint(base.sizes_bytes[1] / 2).astype(np.int64))


def test_live_sim_config_rejects_a_channel_younger_than_the_target() -> None:
    with pytest.raises(ValueError, match="target latency"):
        LiveSimConfig(live=LiveConfig(target_latency_s=10.0), channel_age_s=5.0)


def test_compare_live_reports_every_algorithm_with_intervals() -> None:
    traces = [from_spec("profile:spike@scale=2"), from_spec("profile:cascade@scale=2")]
    config = LiveSimConfig(live=LiveConfig(target_latency_s=1.5), duration_s=60.0)
    summaries = compare_live(["l2a", "lolp"], base_video(2), traces, config)
    assert [s.abr for s in summaries] == ["l2a", "lolp"]
    assert all(s.sessions == 2 and s.latency_p50_s.n == 2 for s in summaries)
    table = format_live_table(summaries)
    assert "l2a" in table and "lat p95 s" in table
    assert summaries[0].as_dict()["latency_p50_s"]["mean"] == summaries[0].latency_p50_s.mean  # type: ignore[index]


def test_live_qoe_of_a_session_adds_up_its_terms() -> None:
    config = LiveSimConfig(live=LiveConfig(target_latency_s=1.5), duration_s=30.0)
    result = run_live_session("l2a", base_video(3), from_spec("profile:slow-jitters"), config)
    q = result.qoe
    assert q["total"] == pytest.approx(q["bitrate"] - q["switch"] - q["rebuffer"] - q["latency"] - q["speed"])
    assert result.latency_s.size == result.qualities.size == result.playback_rate.size == result.rebuffer_s.size


def _ends(control: ControlTraffic, *, rate_bps: float, chunk_s: float | None, qualities: tuple[int, ...],
          max_drift_s: float = math.inf, request_excess_s: float = 0.0) -> tuple[dict[int, float], LiveDriver]:
    """Each segment's download end (session time) of one scripted session over a constant link."""
    ladder = Ladder(bitrates_bps=(1_000_000, 2_000_000), segment_duration_s=2.0)
    sizes = np.tile(np.array([[250_000, 500_000]], dtype=np.int64), (40, 1))
    video = Video(name="uniform", ladder=ladder, sizes_bytes=sizes, segment_count=40)
    config = LiveSimConfig(live=LiveConfig(target_latency_s=2.0, max_drift_s=max_drift_s, min_rate=1.0, max_rate=1.0),
                           segment_duration_s=2.0, chunk_duration_s=chunk_s, duration_s=20.0, channel_age_s=10.0,
                           control=control)
    session = LiveSession(Scripted(*[Decision(quality=q, reason="scripted") for q in qualities]), video, config.session,
                          live=config.live, schedule=config.schedule())
    driver = LiveDriver(session, video, constant(rate_bps, duration_s=600.0), rtt_s=0.08, control=control,
                        request_excess_s=request_excess_s)
    driver.drive()
    return {r.segment_index: r.request_time_s + r.download_s for r in session.records}, driver


def test_the_twins_arrival_log_keeps_the_latest_downloads(monkeypatch: pytest.MonkeyPatch) -> None:
    # Not a whole session's (an hour of 2 s segments: 1,800): bench/live_segments.py reads the latest.
    monkeypatch.setattr(live_sim, "ARRIVALS_KEPT", 3)
    ends, driver = _ends(ControlTraffic(), rate_bps=4e6, chunk_s=0.5, qualities=(0,) * 40)
    assert len(ends) > 3 and [k for k, _, _ in driver.arrival_log] == sorted(ends)[-3:]
    assert all(len(arrivals) == 4 for _, _, arrivals in driver.arrival_log)  # 2 s segments, 0.5 s chunks


def test_the_players_refreshes_share_a_busy_link_with_the_media() -> None:
    # 1 Mbit/s of media over a 0.8 Mbit/s link: busy from the join on but for each segment request's
    # round trip, so a refresh answer that lands before a download ends pushes that end back by its
    # bytes (a work-conserving link), less what crossed while the link waited for a request.
    refresh = ControlTraffic(manifest_bytes=25_000, sync_bytes=5_000, clock_sync=EVERY_REFRESH)
    media_only, _ = _ends(ControlTraffic(), rate_bps=0.8e6, chunk_s=0.5, qualities=(0,) * 40)
    shared, driver = _ends(refresh, rate_bps=0.8e6, chunk_s=0.5, qualities=(0,) * 40)
    assert media_only.keys() == shared.keys() and len(shared) >= 8
    answers = driver.planned
    assert answers[0] == (pytest.approx(2.0 + 0.08), 25_000)  # a refresh period after the join, a round trip
    assert [size for _, size in answers[:6]] == [25_000, 5_000] * 3  # the MPD, then the clock sync
    for segment, end in shared.items():
        landed = [size for first, size in answers if first < end]
        delay_s = end - media_only[segment]
        assert -1e-9 <= sum(landed) * 8 / 0.8e6 - delay_s <= 0.08 * len(landed) / 2
        assert delay_s > 0.9 * sum(landed) * 8 / 0.8e6


def test_a_refresh_crossing_a_streaming_segment_shares_the_link_fairly() -> None:
    # 1 Mbit/s segments over a 0.8 Mbit/s link (2.5 s each, one after another): the first refresh's
    # 4 kB answer crosses from 2.08 s, in the middle of segment 4. With half the link while the segment
    # streams it ends 2 x 40 ms after its first byte (alone: 40 ms) and the next refresh goes out a
    # period after that, as the emulated player's does; the segment ends the answer's 40 ms later
    # than with media alone, as before.
    refresh = ControlTraffic(manifest_bytes=4_000, refresh_period_s=2.0)
    media_only, _ = _ends(ControlTraffic(), rate_bps=0.8e6, chunk_s=None, qualities=(0,) * 40)
    shared, driver = _ends(refresh, rate_bps=0.8e6, chunk_s=None, qualities=(0,) * 40)
    alone_s = 4_000 * 8 / 0.8e6
    first = driver.planned[0][0]
    assert first == pytest.approx(2.08) and media_only[4] - 2.5 < first < first + 2 * alone_s < media_only[4]
    assert driver.refreshed_s[0] == pytest.approx(first + 2 * alone_s)
    assert driver.planned[1][0] == pytest.approx(first + 2 * alone_s + 2.0 + 0.08)  # a period on, a round trip
    assert shared[4] == pytest.approx(media_only[4] + alone_s)


def test_the_clock_is_synced_again_on_the_players_schedule() -> None:
    # dash.js's defaults: the first re-sync on the first refresh 30 s after the join's, then 60 s
    # after that one, then 120 s (a simulated clock never drifts); one UTCTiming answer each
    control = ControlTraffic(manifest_bytes=4_000, sync_bytes=400)
    ladder = Ladder(bitrates_bps=(1_000_000,), segment_duration_s=2.0)
    video = Video(name="uniform", ladder=ladder, sizes_bytes=np.full((200, 1), 250_000, dtype=np.int64),
                  segment_count=200)
    config = LiveSimConfig(live=LiveConfig(target_latency_s=4.0), segment_duration_s=2.0, chunk_duration_s=None,
                           duration_s=300.0, channel_age_s=10.0, control=control)
    result = run_live_session("dynamic", video, constant(8e6, duration_s=600.0), config)
    exchange_s = 0.08 + 400 * 8 / 8e6  # the sync's round trip and bytes
    refresh_s = 2.0 + 0.08 + 4_000 * 8 / 8e6  # a refresh: the period, the MPD's round trip and bytes (an idle link)
    r = result.resyncs_s
    assert len(r) == 3
    assert 30.0 <= r[0] < 30.0 + refresh_s
    assert 60.0 <= r[1] - (r[0] + exchange_s) < 60.0 + refresh_s + 0.1
    assert 120.0 <= r[2] - (r[1] + exchange_s) < 120.0 + refresh_s + 0.1
    never = run_live_session("dynamic", video, constant(8e6, duration_s=600.0),
                             LiveSimConfig(live=config.live, segment_duration_s=2.0, chunk_duration_s=None,
                                           duration_s=300.0, channel_age_s=10.0,
                                           control=ControlTraffic(manifest_bytes=4_000)))
    assert never.resyncs_s == ()  # no UTCTiming answer modelled: no re-sync


def test_refreshes_on_an_idle_link_and_nothing_else_leave_the_media_alone() -> None:
    # 8 Mbit/s: a refresh's answers cross before the next chunk is made, or delay it by what is left of them.
    idle = ControlTraffic(manifest_bytes=4_000, sync_bytes=400, clock_sync=EVERY_REFRESH)
    fast, _ = _ends(ControlTraffic(), rate_bps=8e6, chunk_s=0.5, qualities=(0,) * 40)
    shared, _ = _ends(idle, rate_bps=8e6, chunk_s=0.5, qualities=(0,) * 40)
    delays = [shared[k] - fast[k] for k in fast]
    assert all(0 <= d <= 4_400 * 8 / 8e6 + 1e-9 for d in delays) and sum(d < 1e-9 for d in delays) >= 0.8 * len(delays)


def test_a_rungs_init_segment_comes_first_one_round_trip_before_its_first_segment() -> None:
    init = ControlTraffic(init_bytes=10_000)
    plain, _ = _ends(ControlTraffic(), rate_bps=8e6, chunk_s=None, qualities=(0, 0, 1, 1, 0) + (0,) * 30)
    with_init, _ = _ends(init, rate_bps=8e6, chunk_s=None, qualities=(0, 0, 1, 1, 0) + (0,) * 30)
    first, *rest = sorted(plain)
    delays = {k: with_init[k] - plain[k] for k in plain}
    fetch_s = 0.08 + 10_000 * 8 / 8e6  # a round trip and the init's bytes
    assert delays[first] == pytest.approx(fetch_s)  # the first rung's
    assert delays[first + 2] == pytest.approx(fetch_s)  # the second rung's, at its first segment
    assert all(abs(delays[k]) < 1e-9 for k in rest if k != first + 2)  # known rungs: none


def _chunk_events(chunk_sizes_bytes: np.ndarray | None) -> list[float]:
    """Session times the chunks of one scripted low-latency session landed (its `chunk` events)."""
    ladder = Ladder(bitrates_bps=(1_000_000, 2_000_000), segment_duration_s=2.0)
    sizes = np.tile(np.array([[250_000, 500_000]], dtype=np.int64), (4, 1))
    base = Video(name="uneven", ladder=ladder, sizes_bytes=sizes, segment_count=4)
    config = LiveSimConfig(live=LiveConfig(target_latency_s=2.0, min_rate=1.0, max_rate=1.0), segment_duration_s=2.0,
                           chunk_duration_s=0.5, duration_s=10.0, channel_age_s=10.0)
    result = run_live_session("l2a", base, constant(1.2e6, duration_s=600.0), config,
                              abr=Scripted(*[Decision(quality=0, reason="scripted")] * 12), record_events=True,
                              chunk_sizes_bytes=chunk_sizes_bytes)
    return [e.time_s for e in result.events if e.kind == "chunk"]


def test_real_chunk_sizes_time_each_chunk_by_its_own_bytes() -> None:
    # A segment's chunks as a channel sends them: a keyframe chunk twice an even share, then less.
    # Over a busy 1.2 Mbit/s link each chunk lands when the bytes before it and its own have crossed:
    # the first 62.5 kB later than an even split (0.42 s), the third 20.8 kB later (0.14 s).
    uneven = np.tile(np.array([[[125_000, 41_667, 41_667, 41_666], [250_000, 83_334, 83_333, 83_333]]],
                              dtype=np.int64), (4, 1, 1))
    even, real = _chunk_events(None), _chunk_events(uneven)
    assert len(even) == len(real) > 6
    assert real[0] - even[0] == pytest.approx(62_500 * 8 / 1.2e6, abs=0.01)
    assert real[2] - even[2] == pytest.approx(20_834 * 8 / 1.2e6, abs=0.01)
    assert _chunk_events(np.tile(np.array([[[62_500] * 4, [125_000] * 4]], dtype=np.int64), (4, 1, 1))) == even


@pytest.mark.parametrize(("chunks", "message"), [
    (np.ones((4, 2, 3), dtype=np.int64), "chunks per segment"),
    (np.ones((3, 2, 4), dtype=np.int64), "chunks per segment"),
    (np.tile(np.array([[[62_500] * 4, [125_000, 125_000, 125_000, 124_999]]], dtype=np.int64), (4, 1, 1)), "sum"),
])
def test_chunk_sizes_that_are_not_the_videos_are_refused(chunks: np.ndarray, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        _chunk_events(chunks)


def test_each_media_answers_headers_cross_before_its_first_chunk() -> None:
    # Whole segments on an idle 2 Mbit/s link: every download ends 364 B later (1.456 ms), the headers'
    # own time; the first body byte comes with the first packet (1,448 B), the headers at its start.
    plain, _ = _ends(ControlTraffic(), rate_bps=2e6, chunk_s=None, qualities=(0,) * 40)
    headed, driver = _ends(ControlTraffic(media_header_bytes=364), rate_bps=2e6, chunk_s=None, qualities=(0,) * 40)
    assert plain.keys() == headed.keys() and len(plain) > 5
    assert [headed[k] - plain[k] for k in plain] == pytest.approx([364 * 8 / 2e6] * len(plain), abs=1e-6)
    assert all(r.ttfb_s == pytest.approx(0.08 + 1448 * 8 / 2e6) for r in driver.session.records)
    # At low latency a request waits at the origin for its first chunk: the headers crossed meanwhile.
    low_plain, _ = _ends(ControlTraffic(), rate_bps=2e6, chunk_s=0.5, qualities=(0,) * 40)
    low_headed, _ = _ends(ControlTraffic(media_header_bytes=364), rate_bps=2e6, chunk_s=0.5, qualities=(0,) * 40)
    assert max(abs(low_headed[k] - low_plain[k]) for k in low_plain) < 364 * 8 / 2e6 + 1e-9


def test_the_twins_ttfb_is_its_first_body_packets_arrival() -> None:
    # The emulated player's TTFB is its first body piece's arrival (player.client.liveplay), which the
    # shaper hands over a packet at a time: the twin's too, not its first byte's leaving the server. On
    # 300 kbit/s a packet's crossing is 38.6 ms; the answer's 364 B of headers lead the body in its
    # first packet, whole segments or chunks (the DASH twin asks for a segment once its first chunk is
    # made, so that chunk follows the headers at once).
    byte_s = 8 / 300e3
    for chunk_s in (None, 0.5):
        _, driver = _ends(ControlTraffic(media_header_bytes=364), rate_bps=300e3, chunk_s=chunk_s, qualities=(0,) * 40)
        assert len(driver.session.records) > 3
        for (_, requested, arrivals), record in zip(driver.arrival_log, driver.session.records, strict=True):
            assert arrivals[0].first_byte_s == pytest.approx(requested + 0.08 + 364 * byte_s)
            assert record.ttfb_s == pytest.approx(0.08 + 1448 * byte_s)
    # A chunk made after its answer's headers had crossed alone: its own first packet is whole.
    late = ChunkArrival(first_byte_s=1.0, last_byte_s=2.0, size_bytes=20_000)
    assert driver._first_body_byte_s(late, headed_s=0.5) == pytest.approx(1.0 + 1448 * byte_s)
    small = ChunkArrival(first_byte_s=1.0, last_byte_s=1.0 + 500 * byte_s, size_bytes=500)
    assert driver._first_body_byte_s(small, headed_s=0.5) == pytest.approx(small.last_byte_s)


def test_a_request_excess_lengthens_every_round_trip_and_nothing_else() -> None:
    # The diagnostic (LiveSimConfig.request_excess_s): whole segments on an idle 2 Mbit/s link each
    # come 30 ms later, their first byte 30 ms later; an MPD refresh's answer too.
    control = ControlTraffic(media_header_bytes=364)
    plain, _ = _ends(control, rate_bps=2e6, chunk_s=None, qualities=(0,) * 40)
    late, driver = _ends(control, rate_bps=2e6, chunk_s=None, qualities=(0,) * 40, request_excess_s=0.03)
    assert plain.keys() == late.keys() and len(plain) > 5
    assert [late[k] - plain[k] for k in plain] == pytest.approx([0.03] * len(plain), abs=1e-6)
    assert all(r.ttfb_s == pytest.approx(0.08 + 0.03 + 1448 * 8 / 2e6) for r in driver.session.records)
    refresh = ControlTraffic(manifest_bytes=3818, refresh_period_s=2.0)
    _, plain_driver = _ends(refresh, rate_bps=2e6, chunk_s=None, qualities=(0,) * 40)
    _, late_driver = _ends(refresh, rate_bps=2e6, chunk_s=None, qualities=(0,) * 40, request_excess_s=0.03)
    assert late_driver.planned[0][0] - plain_driver.planned[0][0] == pytest.approx(0.03)
    with pytest.raises(ValueError, match="request excess"):
        LiveSimConfig(request_excess_s=-0.01)


def test_a_session_that_starts_as_its_player_joins_after_its_clock_sync() -> None:
    # 1 + 2 UTCTiming requests one after another (388 B each with headers) over 1 Mbit/s, 80 ms RTT:
    # the session joins 3 x (80 ms + 3.1 ms) after it started; its first MPD refresh one period later.
    sync = ControlTraffic(manifest_bytes=3818, sync_bytes=388, join_syncs=3, refresh_period_s=2.0)
    ends, driver = _ends(sync, rate_bps=1e6, chunk_s=0.5, qualities=(0,) * 40)
    joined = 3 * (0.08 + 388 * 8 / 1e6)
    assert driver.session.joined_at_s == pytest.approx(joined)
    assert driver.session.records[0].request_time_s == pytest.approx(joined)
    assert [size for _, size in driver.planned[:4]] == [388, 388, 388, 3818]
    assert driver.planned[3][0] == pytest.approx(joined + 2.0 + 0.08)  # the refresh's answer's first byte
    at_zero, plain = _ends(ControlTraffic(manifest_bytes=3818, sync_bytes=388, refresh_period_s=2.0),
                           rate_bps=1e6, chunk_s=0.5, qualities=(0,) * 40)
    assert plain.session.joined_at_s == 0.0 and plain.planned[0][0] == pytest.approx(2.08)


def test_an_hls_twin_reloads_its_playlist_as_the_hls_player_does() -> None:
    # The HLS player (player/client/hlslive.py) sends no clock sync and no MPD: playing LL-HLS parts it
    # asks at once for the playlist that hints the next part, which the server holds until that part
    # is published (every 0.5 s here, at session times k x 0.5), so each answer leaves the server then
    # and its bytes cross from then on (the emulated link puts the round trip on the request:
    # live_playlists.HELD_ANSWER_RTTS); whole segments, one blocking reload per segment.
    part, driver = _ends(ControlTraffic(manifest_bytes=2_000, sync_bytes=400, reload="part"), rate_bps=8e6,
                         chunk_s=0.5, qualities=(0,) * 40)
    firsts = [first for first, _ in driver.planned]
    assert {size for _, size in driver.planned} == {2_000}  # playlists only, no UTCTiming answer
    assert firsts[0] == pytest.approx(0.08)  # the first reload: the part it waits for was out at the join
    assert firsts[1:] == pytest.approx([0.5 + 0.5 * k for k in range(len(firsts) - 1)])
    assert len(firsts) >= 2 * max(part)  # one per part up to the last download
    _, whole = _ends(ControlTraffic(manifest_bytes=2_000, reload="segment"), rate_bps=8e6, chunk_s=None,
                     qualities=(0,) * 40)
    firsts = [first for first, _ in whole.planned]
    assert firsts[1:] == pytest.approx([2.0 + 2.0 * k for k in range(len(firsts) - 1)])
    # Without blocking reloads: a target duration after a reload that listed a new segment, half of
    # one after one that did not (RFC 8216 6.3.4), each after the last answer landed.
    _, poll = _ends(ControlTraffic(manifest_bytes=2_000, reload="poll", target_duration_s=1.0), rate_bps=8e6,
                    chunk_s=None, qualities=(0,) * 40)
    exchange_s = 0.08 + 2_000 * 8 / 8e6
    gaps = {round(b[0] - a[0] - exchange_s, 6) for a, b in zip(poll.planned, poll.planned[1:], strict=False)}
    assert gaps == {1.0, 0.5}


def test_an_hls_segment_is_requested_once_a_playlist_lists_it() -> None:
    # Whole segments, complete at even session times: the DASH twin's request waits at the origin, the
    # HLS player's goes out once the blocking reload's answer (sent as the segment completes, 2 kB on
    # the link from then) has landed: the playlist's bytes later. Polling every
    # target duration (4 s, twice the segment) lists a segment up to a poll later still.
    mpd, _ = _ends(ControlTraffic(), rate_bps=8e6, chunk_s=None, qualities=(0,) * 40)
    blocking, driver = _ends(ControlTraffic(manifest_bytes=2_000, reload="segment"), rate_bps=8e6, chunk_s=None,
                             qualities=(0,) * 40)
    later = [blocking[k] - mpd[k] for k in sorted(mpd)[1:]]
    assert later == pytest.approx([2_000 * 8 / 8e6] * len(later), abs=1e-6)
    # From the player's request to its first packet's arrival.
    assert all(r.ttfb_s == pytest.approx(0.08 + 1448 * 8 / 8e6) for r in driver.session.records)
    poll, _ = _ends(ControlTraffic(manifest_bytes=2_000, reload="poll", target_duration_s=4.0), rate_bps=8e6,
                    chunk_s=None, qualities=(0,) * 40)
    waits = [poll[k] - blocking[k] for k in sorted(blocking)[1:]]
    assert all(-1e-9 <= w <= 4.0 + 0.09 for w in waits) and max(waits) > 1.0


def test_ll_hls_parts_are_requests_of_their_own() -> None:
    # 1 Mbit/s of media over a 1.2 Mbit/s link: a part takes 0.42 s of the 0.5 s between parts. The
    # HLS player asks for part c once part c - 1 and the playlist hinting c have landed, so each part
    # costs a round trip and its headers the DASH player's one chunked answer does not: the downloads
    # fall behind, by up to half a second. On an 8 Mbit/s link the requests are at the origin before
    # their parts exist, and only the headers and playlists' bytes remain, less half a round trip: the
    # HLS twin's held parts cross from their publication (live_playlists.HELD_ANSWER_RTTS), the DASH
    # twin's chunks half a round trip after they are made.
    def ends(reload: str, rate_bps: float) -> dict[int, float]:
        return _ends(ControlTraffic(manifest_bytes=2_000, media_header_bytes=364, reload=reload), rate_bps=rate_bps,
                     chunk_s=0.5, qualities=(0,) * 40)[0]

    dash, hls = ends("mpd", 1.2e6), ends("part", 1.2e6)
    later = [hls[k] - dash[k] for k in sorted(dash)]
    assert min(later) > 0.03 and max(later) > 0.4
    dash, hls = ends("mpd", 8e6), ends("part", 8e6)
    assert all(abs(hls[k] - dash[k] + 0.04) < 0.01 for k in sorted(dash)[1:])


def test_control_traffic_refuses_an_unknown_reload() -> None:
    with pytest.raises(ValueError, match="reload must be one of"):
        ControlTraffic(reload="dash")
    with pytest.raises(ValueError, match="target duration"):
        ControlTraffic(reload="poll", target_duration_s=0.0)


def test_a_rung_switched_to_has_its_playlist_reloaded_first() -> None:
    # 6 s behind the edge the segments are complete (and listed) when requested: the HLS twin's
    # downloads end with the playlists' bytes only, but for a rung switched to (segment 4 to the
    # second rung, segment 6 back), whose stale playlist the player reloads first: a round trip and
    # the playlist's 2 kB more (HlsLivePlayer._listed).
    def ends(control: ControlTraffic) -> dict[int, float]:
        ladder = Ladder(bitrates_bps=(1_000_000, 2_000_000), segment_duration_s=2.0)
        video = Video(name="uniform", ladder=ladder, segment_count=40,
                      sizes_bytes=np.tile(np.array([[250_000, 500_000]], dtype=np.int64), (40, 1)))
        config = LiveSimConfig(live=LiveConfig(target_latency_s=6.0, min_rate=1.0, max_rate=1.0), segment_duration_s=2.0,
                               chunk_duration_s=None, duration_s=20.0, channel_age_s=10.0, control=control)
        abr = Scripted(*[Decision(quality=q, reason="scripted") for q in (0, 0, 1, 1, 0) + (0,) * 35])
        session = LiveSession(abr, video, config.session, live=config.live, schedule=config.schedule())
        LiveDriver(session, video, constant(8e6, duration_s=600.0), rtt_s=0.08, control=control).drive()
        return {r.segment_index: r.request_time_s + r.download_s for r in session.records}

    hls, media = ends(ControlTraffic(manifest_bytes=2_000, reload="segment")), ends(ControlTraffic())
    delays = {k: hls[k] - media[k] for k in media}
    first = min(delays)
    assert delays[first + 1] < 0.0025  # listed already, same rung
    assert delays[first + 2] == pytest.approx(0.08 + 2_000 * 8 / 8e6, abs=0.0025)  # the switch
    assert delays[first + 4] == pytest.approx(0.08 + 2_000 * 8 / 8e6, abs=0.0025)  # and back


def _tiny_parts(control: ControlTraffic) -> LiveDriver:
    """An LL-HLS session of 4 kB segments (1 kB parts every 0.5 s) on a 0.8 Mbit/s link: each part is
    asked for before it is published, and answered then with the blocking reload held for it."""
    ladder = Ladder(bitrates_bps=(16_000, 32_000), segment_duration_s=2.0)
    video = Video(name="tiny", ladder=ladder, segment_count=40,
                  sizes_bytes=np.tile(np.array([[4_000, 8_000]], dtype=np.int64), (40, 1)))
    config = LiveSimConfig(live=LiveConfig(target_latency_s=2.0, min_rate=1.0, max_rate=1.0), segment_duration_s=2.0,
                           chunk_duration_s=0.5, duration_s=20.0, channel_age_s=10.0, control=control)
    session = LiveSession(Scripted(*[Decision(quality=0, reason="scripted")] * 40), video, config.session,
                          live=config.live, schedule=config.schedule())
    driver = LiveDriver(session, video, constant(8e5, duration_s=600.0), rtt_s=0.08, control=control)
    driver.drive()
    return driver


def test_a_playlist_answer_crossing_with_a_part_delays_it_by_its_share() -> None:
    # Parts 1-3 of each segment after the join's are asked for before they are published; the 4 kB reload held
    # for each is answered with it and they cross together: fair shares, so the 1 kB part ends after
    # twice its bytes (20 ms), not after both answers' 5 kB (50 ms: the playlist's whole bytes added to
    # the part's). Alone (no playlist on the link) it takes 10 ms.
    def held(driver: LiveDriver) -> list[float]:
        return [a.last_byte_s - a.first_byte_s for _, _, arrivals in list(driver.arrival_log)[1:]
                for a in arrivals[1:]]

    shared = held(_tiny_parts(ControlTraffic(manifest_bytes=4_000, reload="part")))
    assert len(shared) > 20 and shared == pytest.approx([0.02] * len(shared))
    alone = held(_tiny_parts(ControlTraffic(manifest_bytes=1, reload="part")))
    assert alone == pytest.approx([0.01] * len(alone), abs=1e-4)


def test_an_hls_playlist_answer_crossing_with_a_part_lands_later_than_alone() -> None:
    # The blocking reload held for parts 1-3 is answered as the part is published and shares the link
    # with it: it lands as both have crossed (5 kB from its first byte: 50 ms), not after its own 40 ms,
    # and the player's next reload goes out then. The one for part 0 crosses alone (that part is
    # asked for once this playlist has hinted it).
    driver = _tiny_parts(ControlTraffic(manifest_bytes=4_000, reload="part"))
    firsts = [first for first, _ in driver.planned]
    reloads = driver._reloads
    assert reloads is not None
    end = driver.session.time_s
    crossed = [round(b - a, 6) for a, b in zip(firsts[1:], reloads.listed_s[2:], strict=False) if a < end - 1.0]
    assert set(crossed) == {0.04, 0.05} and crossed.count(0.05) > 2 * crossed.count(0.04) > 10
