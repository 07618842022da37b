"""Live audio, headless: the live player fetches the channel's audio adaptation set in its own
pipeline beside the video (as the VOD player does), both joined at the same position of the one
live schedule, and the report counts both."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import pytest

from abr.registry import make
from abr.types import Ladder
from netsim.sources import open_trace
from player.client.harness import LinkConfig, UrlTarget, play_headless
from player.client.headless import PlayerConfig
from player.client.liveplay import LivePlayConfig
from player.live import LiveConfig, LiveSchedule, LiveSession
from player.session import Fetch, Wait
from player.timeline import Timeline
from tests.player.client.conftest import Origin


@dataclass
class _Media:
    ladder: Ladder
    segment_count: int
    timeline: Timeline

    def upcoming(self, segment_index: int, count: int) -> tuple[tuple[int, ...], ...]:
        return ()


@dataclass
class _Content(_Media):
    audio: _Media | None = None


def _content(audio_segment_s: float = 2.0) -> _Content:
    audio = _Media(Ladder(bitrates_bps=(64_000, 128_000), segment_duration_s=audio_segment_s), 100,
                   Timeline.uniform(audio_segment_s, 100))
    return _Content(Ladder(bitrates_bps=(500_000, 2_000_000), segment_duration_s=2.0), 100,
                    Timeline.uniform(2.0, 100), audio)


def test_a_live_session_with_audio_joins_both_pipelines_at_one_position() -> None:
    schedule = LiveSchedule(availability_start_s=-61.0, segment_duration_s=2.0)  # live 61 s: edge at 60 s
    session = LiveSession(make("rate"), _content(), live=LiveConfig(target_latency_s=4.5), schedule=schedule)
    video = session.next_action("video")
    assert isinstance(video, Fetch) and video.segment_index == 28  # 61 s - 4.5 s = 56.5 s: boundary 56 s
    audio = session.next_action("audio")
    assert isinstance(audio, Fetch) and audio.media == "audio" and audio.segment_index == 28
    session.on_download(session.time_s + 0.2, size_bytes=100_000, media="video")
    assert not session.started  # the audio is not in yet: nothing plays without it
    session.on_download(session.time_s + 0.1, size_bytes=10_000, media="audio")
    assert session.started and session.buffer_levels_s == {"video": 2.0, "audio": 2.0}
    audio = session.next_action("audio")  # segment 29 is out (complete at -1 s) and not past the video's
    assert isinstance(audio, Fetch) and audio.segment_index == 29
    session.on_download(session.time_s + 0.1, size_bytes=10_000, media="audio")
    held = session.next_action("audio")  # segment 30 is not out yet (it is also past the video frontier)
    assert isinstance(held, Wait) and "segment 30 not available" in held.reason
    video = session.next_action("video")
    assert isinstance(video, Fetch) and video.segment_index == 29
    session.on_download(session.time_s + 0.2, size_bytes=100_000, media="video")
    wait = session.next_action("video")  # segment 30 is made at 1 s: never asked for before
    assert isinstance(wait, Wait) and session.time_s + wait.duration_s == pytest.approx(1.0)
    with pytest.raises(ValueError, match="live audio must be cut at the video's segments"):
        LiveSession(make("rate"), _content(audio_segment_s=1.0), live=LiveConfig(), schedule=schedule)


@pytest.mark.parametrize("low_latency", [False, True])
async def test_the_headless_live_player_plays_the_channels_audio(live_origin: Origin, low_latency: bool) -> None:
    url, statuses = await live_origin(low_latency=low_latency)
    report = await play_headless(UrlTarget(url=f"{url}/live/manifest.mpd"), PlayerConfig(abr="dynamic", decode="none"),
                                 link=LinkConfig(trace=open_trace("constant:5e6"), rtt_ms=40),
                                 live=LivePlayConfig(duration_s=6.0))
    assert report.error is None, report.error
    live = report.live or {}
    assert live["stalls"] == 0 and live["early_requests"] == 0 and statuses["segment 404"] == 0
    video, audio = report.records, report.audio_records
    assert len(audio) >= 2 and abs(len(audio) - len(video)) <= 1
    assert [r.segment_index for r in audio][:len(video)] == [r.segment_index for r in video][:len(audio)]
    assert report.media_summary()["audio"]["segments"] == len(audio)
    assert len(video) + len(audio) <= Counter(statuses)["segment 200"] <= len(video) + len(audio) + 2  # + in flight
