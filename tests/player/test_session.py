"""The sans-I/O playback state machine, driven by hand on a made-up clock."""

from __future__ import annotations

import pytest

from abr.types import Decision, Ladder
from player.session import Fetch, Finished, PlaybackSession, SessionConfig, Wait
from tests.player.conftest import FixedContent, Scripted


def _fetch(session: PlaybackSession) -> Fetch:
    action = session.next_action()
    assert isinstance(action, Fetch), action
    return action


def test_startup_is_not_rebuffering_and_playback_starts_with_first_segment(ladder: Ladder) -> None:
    session = PlaybackSession(Scripted(), FixedContent(ladder, 3))
    _fetch(session)
    record = session.on_download(2.5, size_bytes=1000)
    assert session.startup_s == 2.5
    assert record.rebuffer_s == 0
    assert session.started and session.buffer_s == 4.0


def test_stall_time_is_charged_to_the_segment_that_ends_it(ladder: Ladder) -> None:
    session = PlaybackSession(Scripted(), FixedContent(ladder, 3))
    _fetch(session)
    session.on_download(1.0, size_bytes=1000)  # buffer 4 s
    _fetch(session)
    record = session.on_download(7.0, size_bytes=1000)  # 6 s download: 2 s dry
    assert record.rebuffer_s == pytest.approx(2.0)
    assert session.stall_count == 1
    assert session.buffer_s == pytest.approx(4.0)
    assert not session.stalled


def test_buffer_over_cap_waits_in_quanta(ladder: Ladder) -> None:
    config = SessionConfig(buffer_cap_s=6.0, sleep_quantum_s=0.5)
    session = PlaybackSession(Scripted(), FixedContent(ladder, 5), config)
    _fetch(session)
    session.on_download(0.1, size_bytes=1)
    _fetch(session)
    session.on_download(0.2, size_bytes=1)  # buffer 4 - 0.1 + 4 = 7.9 s
    action = session.next_action()
    assert isinstance(action, Wait)
    assert action.duration_s == pytest.approx(2.0)  # ceil((7.9 - 6) / 0.5) * 0.5
    session.advance(session.time_s + action.duration_s)
    assert isinstance(session.next_action(), Fetch)


def test_abr_delay_waits_then_fetches_the_decided_quality(ladder: Ladder) -> None:
    abr = Scripted(Decision(quality=2, reason="first"), Decision(quality=4, delay_s=1.5, reason="later"))
    session = PlaybackSession(abr, FixedContent(ladder, 3))
    _fetch(session)
    session.on_download(1.0, size_bytes=1)
    wait = session.next_action()
    assert isinstance(wait, Wait) and wait.duration_s == 1.5
    session.advance(2.5)
    fetch = _fetch(session)
    assert fetch.quality == 4 and len(abr.seen) == 2  # not asked again after the delay


def test_observation_carries_history_and_upcoming_sizes(ladder: Ladder) -> None:
    abr = Scripted(Decision(quality=1, reason="a"), Decision(quality=3, reason="b"))
    session = PlaybackSession(abr, FixedContent(ladder, 10), SessionConfig(lookahead_segments=3))
    _fetch(session)
    session.on_download(2.0, size_bytes=500_000, ttfb_s=0.1)
    _fetch(session)
    obs = abr.seen[1]
    assert obs.segment_index == 1 and obs.last_quality == 1
    assert obs.downloads[-1].throughput_bps == pytest.approx(2_000_000)
    assert len(obs.next_sizes_bytes) == 3


def test_out_of_range_decision_is_a_clear_error(ladder: Ladder) -> None:
    session = PlaybackSession(Scripted(Decision(quality=9, reason="bad")), FixedContent(ladder, 2))
    with pytest.raises(ValueError, match="chose quality 9 outside 0..5"):
        session.next_action()


def test_end_of_video_is_not_a_stall(ladder: Ladder) -> None:
    session = PlaybackSession(Scripted(), FixedContent(ladder, 1))
    _fetch(session)
    session.on_download(1.0, size_bytes=1)
    assert isinstance(session.next_action(), Finished)
    session.advance(100.0)
    assert session.stall_count == 0 and session.total_rebuffer_s == 0


def test_seek_flushes_buffer_and_restarts_at_the_segment(ladder: Ladder) -> None:
    session = PlaybackSession(Scripted(), FixedContent(ladder, 10))
    for now in (1.0, 2.0):
        _fetch(session)
        session.on_download(now, size_bytes=1)
    session.seek(2.5, 21.0)
    assert session.buffer_s == 0 and session.next_segment == 5 and session.playhead_s == 20.0
    assert _fetch(session).segment_index == 5


def test_pause_stops_the_buffer_draining(ladder: Ladder) -> None:
    session = PlaybackSession(Scripted(), FixedContent(ladder, 3))
    _fetch(session)
    session.on_download(1.0, size_bytes=1)
    session.set_paused(1.0, True)
    session.advance(50.0)
    assert session.buffer_s == 4.0 and session.stall_count == 0


def test_reporting_without_a_fetch_in_flight_is_an_error(ladder: Ladder) -> None:
    session = PlaybackSession(Scripted(), FixedContent(ladder, 3))
    with pytest.raises(RuntimeError, match="no fetch in flight"):
        session.on_download(1.0, size_bytes=1)


def test_the_next_period_continues_the_clock_buffer_stalls_and_history(ladder: Ladder) -> None:
    abr = Scripted(Decision(quality=5, reason="top"), Decision(quality=5, reason="top"))
    first = PlaybackSession(abr, FixedContent(ladder, 2))
    _fetch(first)
    first.on_download(1.0, size_bytes=1000)
    _fetch(first)
    first.on_download(7.0, size_bytes=2000)  # 2 s dry: one stall
    assert isinstance(first.next_action(), Finished)
    ad_ladder = Ladder(bitrates_bps=(250_000, 1_000_000), segment_duration_s=2.0)  # the next Period's own ladder
    second = PlaybackSession(abr, FixedContent(ad_ladder, 3))
    second.continue_from(first)
    assert (second.time_s, second.buffer_s, second.playhead_s) == (first.time_s, first.buffer_s, first.playhead_s)
    assert second.started and second.startup_s == 1.0 and second.stall_count == 1
    assert second.total_rebuffer_s == pytest.approx(2.0)
    fetch = second.next_action()
    assert isinstance(fetch, Fetch) and fetch.segment_index == 0
    seen = abr.seen[-1]
    assert seen.ladder == ad_ladder and seen.last_quality == 1  # 4.3 Mbit/s is nearest to 1 Mbit/s here
    assert [d.quality for d in seen.downloads] == [1, 1] and seen.downloads[-1].size_bytes == 2000
    second.on_download(8.0, size_bytes=500)
    assert second.buffer_s == pytest.approx(first.buffer_s - 1.0 + 2.0) and not second.stalled


def test_continue_from_needs_a_finished_previous_and_a_fresh_session(ladder: Ladder) -> None:
    first = PlaybackSession(Scripted(), FixedContent(ladder, 2))
    second = PlaybackSession(Scripted(), FixedContent(ladder, 2))
    with pytest.raises(RuntimeError, match="still has segments"):
        second.continue_from(first)
    _fetch(second)
    with pytest.raises(RuntimeError, match="before the session's first action"):
        second.continue_from(first)
