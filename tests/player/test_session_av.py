"""The session with an audio pipeline beside the video: one buffer and one timeline per media type,
playback on the minimum of the buffers, the audio rule and hook, seeks, events."""

from __future__ import annotations

import numpy as np
import pytest

from abr.types import Decision, Ladder, Observation
from player.events import EventList
from player.session import Fetch, Finished, Hold, PlaybackSession, SessionConfig, Timeline, Wait
from player.video import AudioTrack, Video
from tests.player.conftest import FixedContent, Scripted

AUDIO_LADDER = Ladder(bitrates_bps=(64_000, 128_000, 256_000), segment_duration_s=2.0)


def _video(ladder: Ladder, count: int, audio_durations_s: tuple[float, ...]) -> Video:
    """`count` video segments of the ladder's duration; audio cut into `audio_durations_s`."""
    sizes = np.array([[int(b * ladder.segment_duration_s / 8) for b in ladder.bitrates_bps]] * count)
    audio_sizes = np.array([[int(b * d / 8) for b in AUDIO_LADDER.bitrates_bps] for d in audio_durations_s])
    audio = AudioTrack(ladder=AUDIO_LADDER, sizes_bytes=audio_sizes, durations_s=audio_durations_s)
    return Video(name="av", ladder=ladder, sizes_bytes=sizes, segment_count=count, audio=audio)


def _fetch(session: PlaybackSession, media: str = "video") -> Fetch:
    action = session.next_action(media)  # type: ignore[arg-type]
    assert isinstance(action, Fetch) and action.media == media, action
    return action


def test_timeline_finds_segments_and_refuses_nonsense() -> None:
    uniform = Timeline.uniform(4.0, 5)
    assert (uniform.start_s(3), uniform.duration_s(3), uniform.end_s) == (12.0, 4.0, 20.0)
    assert [uniform.index_at(t) for t in (-1.0, 0.0, 3.99, 4.0, 99.0)] == [0, 0, 0, 1, 4]
    listed = Timeline.from_durations([1.984, 2.005, 2.005, 1.984])
    assert listed.start_s(2) == pytest.approx(3.989) and listed.end_s == pytest.approx(7.978)
    assert [listed.index_at(t) for t in (0.0, 1.99, 3.989, 7.9)] == [0, 1, 2, 3]
    assert listed.count_before(4.0) == 3 and uniform.count_before(8.0) == 2 and uniform.count_before(8.1) == 3
    with pytest.raises(ValueError, match="segment 1: .*duration"):
        Timeline([0.0, 1.0], [1.0, 0.0])
    with pytest.raises(ValueError, match="must not decrease"):
        Timeline([0.0, 2.0, 1.0], [1.0, 1.0, 1.0])
    with pytest.raises(ValueError, match="one start per duration"):
        Timeline([], [])


def test_audio_and_video_fill_their_own_buffers_and_playback_waits_for_both(ladder: Ladder) -> None:
    session = PlaybackSession(Scripted(), _video(ladder, 3, (2.0,) * 6))
    assert session.media_types == ("video", "audio")
    _fetch(session, "video")
    _fetch(session, "audio")
    session.on_download(1.0, size_bytes=150_000, media="video")
    assert session.buffer_levels_s == {"video": 4.0, "audio": 0.0}
    assert not session.started and session.buffer_s == 0.0  # video alone does not start playback
    record = session.on_download(1.5, size_bytes=16_000, media="audio")
    assert session.started and session.startup_s == 1.5 and session.buffer_s == 2.0
    assert record.media == "audio" and record.buffer_after_s == 2.0 and record.bitrate_bps == 64_000
    assert [r.segment_index for r in session.records] == [0] and len(session.audio_records) == 1


def test_a_dry_audio_buffer_stalls_playback_and_video_alone_does_not_resume_it(ladder: Ladder) -> None:
    session = PlaybackSession(Scripted(), _video(ladder, 3, (2.0,) * 6))
    _fetch(session, "video")
    _fetch(session, "audio")
    session.on_download(0.5, size_bytes=1, media="video")
    session.on_download(0.5, size_bytes=1, media="audio")  # playing: video 4 s, audio 2 s
    _fetch(session, "video")
    _fetch(session, "audio")  # segment 1 (2..4 s), within the video's frontier
    session.on_download(1.0, size_bytes=1, media="video")  # video 7.5 s buffered
    session.advance(3.0)  # audio ran dry at 2.5 s
    assert session.stalled and session.stall_count == 1 and session.playhead_s == 2.0
    assert session.buffer_level_s("video") == pytest.approx(6.0)
    _fetch(session, "video")
    session.on_download(3.5, size_bytes=1, media="video")
    assert session.stalled, "a video segment cannot end a stall the audio causes (no phantom resume)"
    session.on_download(4.0, size_bytes=1, media="audio")
    assert not session.stalled and session.buffer_s == pytest.approx(2.0)
    _fetch(session, "audio")
    session.on_download(4.5, size_bytes=1, media="audio")
    # Every stall second counts for QoE, though no video request was open during most of it: the one
    # before the last video segment arrived is in its record, the one after (audio only) is added to it.
    assert session.total_rebuffer_s == pytest.approx(1.5)
    assert [r.rebuffer_s for r in session.records] == pytest.approx([0.0, 0.0, 1.0])
    assert session.rebuffer_per_segment_s() == pytest.approx([0.0, 0.0, 1.5])


def test_audio_keeps_within_a_segment_of_the_video_frontier(ladder: Ladder) -> None:
    session = PlaybackSession(Scripted(), _video(ladder, 4, (2.0,) * 8))
    _fetch(session, "video")  # video requested up to 4 s
    for index in range(3):  # 0-2, 2-4 and 4-6 s: the last starts at the frontier
        assert _fetch(session, "audio").segment_index == index
        session.on_download(0.1 * (index + 1), size_bytes=1, media="audio")
    held = session.next_action("audio")
    assert isinstance(held, Hold) and "ahead of the video" in held.reason
    session.on_download(1.0, size_bytes=1, media="video")
    assert isinstance(session.next_action("audio"), Hold)  # video in up to 4 s, none requested further
    _fetch(session, "video")
    assert _fetch(session, "audio").segment_index == 3


def test_video_only_sessions_are_as_before(ladder: Ladder) -> None:
    sink = EventList()
    session = PlaybackSession(Scripted(), FixedContent(ladder, 2), sink=sink)
    assert session.media_types == ("video",)
    _fetch(session)
    session.on_download(1.0, size_bytes=1)
    assert all("media" not in e.data for e in sink.events)
    with pytest.raises(ValueError, match="no 'audio'"):
        session.next_action("audio")


def test_events_of_a_session_with_audio_name_their_media_type(ladder: Ladder) -> None:
    sink = EventList()
    session = PlaybackSession(Scripted(), _video(ladder, 2, (4.0, 4.0)), sink=sink)
    _fetch(session, "video")
    _fetch(session, "audio")
    session.on_download(1.0, size_bytes=1, media="audio")
    downloads = [e for e in sink.events if e.kind == "download"]
    decisions = [e for e in sink.events if e.kind == "decision"]
    assert [e.data["media"] for e in decisions] == ["video", "audio"] and downloads[0].data["media"] == "audio"


@pytest.mark.parametrize(("rate_bps", "expected"), [(2_000_000, 2), (1_550_000, 1), (1_400_000, 0), (300_000, 0)])
def test_audio_rule_takes_the_highest_rendition_that_fits_beside_the_video(ladder: Ladder, rate_bps: int,
                                                                           expected: int) -> None:
    video_q = 2  # 1.2 Mbit/s
    session = PlaybackSession(Scripted(*[Decision(quality=video_q, reason="fixed")] * 3), _video(ladder, 3, (4.0,) * 3))
    assert _fetch(session, "audio").quality == 0  # no estimate yet: the lowest
    _fetch(session, "video")
    session.on_download(150_000 * 8 / rate_bps, size_bytes=150_000, media="video")
    session.on_download(session.time_s, size_bytes=1, media="audio")
    _fetch(session, "video")
    audio = _fetch(session, "audio")
    # budget = 0.9 x estimate - 1.2 Mbit/s video: 600k at 2.0M (256k fits), 195k at 1.55M (128k), 60k at
    # 1.4M (none fits: the lowest).
    assert audio.quality == expected, audio.decision.reason


class ChoosesAudio(Scripted):
    def __init__(self, rendition: object) -> None:
        super().__init__()
        self.rendition = rendition
        self.audio_seen: list[Observation] = []

    def decide_audio(self, obs: Observation) -> object:
        self.audio_seen.append(obs)
        return self.rendition


def test_an_abr_with_decide_audio_chooses_the_rendition_from_the_audio_pipelines_view(ladder: Ladder) -> None:
    abr = ChoosesAudio(np.int64(2))
    session = PlaybackSession(abr, _video(ladder, 2, (2.0,) * 4), SessionConfig(lookahead_segments=2))
    fetch = _fetch(session, "audio")
    assert fetch.quality == 2 and "chosen by scripted" in fetch.decision.reason
    obs = abr.audio_seen[0]
    assert obs.ladder == AUDIO_LADDER and obs.segment_count == 4 and obs.buffer_s == 0.0
    assert len(obs.next_sizes_bytes) == 2 and len(obs.next_sizes_bytes[0]) == 3
    for bad, message in ((7, "audio rendition 7 outside 0..2"), ("high", "not an audio rendition index")):
        with pytest.raises(ValueError, match=message):
            PlaybackSession(ChoosesAudio(bad), _video(ladder, 2, (2.0,) * 4)).next_action("audio")


def test_seek_restarts_each_media_type_at_its_own_segment(ladder: Ladder) -> None:
    session = PlaybackSession(Scripted(), _video(ladder, 5, (3.0,) * 7))
    for media in ("video", "audio"):
        _fetch(session, media)
        session.on_download(1.0, size_bytes=1, media=media)  # type: ignore[arg-type]
    with pytest.raises(RuntimeError, match="audio"):
        _fetch(session, "audio")
        session.seek(1.5, 9.0)
    session.on_abandon(1.5, bytes_received=0, media="audio")
    session.seek(1.5, 9.0)
    assert session.playhead_s == 8.0 and session.next_segment_of("video") == 2 and session.next_segment_of("audio") == 2
    assert session.buffer_levels_s == {"video": 0.0, "audio": -2.0}  # audio segment 2 starts at 6 s
    _fetch(session, "video")
    session.on_download(2.0, size_bytes=1, media="video")
    assert session.stalled
    _fetch(session, "audio")
    session.on_download(2.5, size_bytes=1, media="audio")
    assert not session.stalled and session.buffer_levels_s == {"video": 4.0, "audio": 1.0}


def test_audio_that_ends_first_lets_the_video_play_out_without_a_stall(ladder: Ladder) -> None:
    session = PlaybackSession(Scripted(), _video(ladder, 2, (1.984, 2.005, 2.005, 1.984)))
    fetched = 0
    while not session.finished:
        progressed = False
        for media in session.media_types:
            action = session.next_action(media)
            if isinstance(action, Fetch):
                fetched += 1
                session.on_download(session.time_s + 0.01, size_bytes=1, media=media)
                progressed = True
            elif isinstance(action, Wait):
                session.advance(session.time_s + action.duration_s)
        assert progressed or session.finished
    assert fetched == 6 and isinstance(session.next_action("audio"), Finished)
    session.advance(session.time_s + 20.0)  # past the audio's end (7.978 s) to the video's (8 s)
    assert session.stall_count == 0 and session.playhead_s == pytest.approx(8.0 - 0.0, abs=0.1)
