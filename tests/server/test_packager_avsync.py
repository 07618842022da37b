"""A/V sync of a packaged title, read the way players read it (server/packaging/avsync.py).

An HLS player presents each track at its fMP4 media time: hls.js and Safari from the timestamps
alone, FFmpeg (and Chromium's MSE) after each init segment's edit list; a DASH player also subtracts
each AdaptationSet's presentationTimeOffset. For each, the clip's t=0 must be seen and heard at
the same time: the HLS playlist has no offset to carry a per-track correction.
"""

from __future__ import annotations

import struct
from pathlib import Path

import m3u8
import pytest
from defusedxml import ElementTree

from server.formats.boxes import Mp4FormatError
from server.formats.hls import MASTER_PLAYLIST_NAME, MEDIA_PLAYLIST_NAME
from server.formats.names import MANIFEST_NAME
from server.packager import package_source
from server.packaging.avsync import audio_origin_s, video_origin_s
from server.packaging.demo import DemoClip, DemoClipConfig
from server.packaging.mp4split import shift_decode_times, split_fragmented_mp4
from server.packaging.settings import PackageConfig
from server.packaging.source import DemoSource
from tests.conftest import PackagedTitles
from tests.server.live.conftest import make_channel

AUDIO_FRAME_S = 1024 / 48_000  # one AAC frame: the brief's bar (early sound is noticed from ~45 ms)
SOUND_EARLY_LIMIT_S = 0.005  # sound ahead of picture is what people notice first: a few ms at most


def _first_segment(playlist_path: Path) -> bytes:
    """init (EXT-X-MAP) + first media segment of a media playlist, as an HLS player joins them."""
    playlist = m3u8.load(str(playlist_path))
    base = playlist_path.parent
    return (base / playlist.segment_map[0].uri).read_bytes() + (base / playlist.segments[0].uri).read_bytes()


def _dash_offsets_s(title_dir: Path) -> dict[str, float]:
    """presentationTimeOffset (s) per AdaptationSet contentType of the MPD."""
    ns = {"m": "urn:mpeg:dash:schema:mpd:2011"}
    offsets = {}
    for aset in ElementTree.parse(title_dir / MANIFEST_NAME).getroot().iterfind(".//m:AdaptationSet", ns):
        template = aset.find("m:SegmentTemplate", ns)
        assert template is not None
        pto = int(template.get("presentationTimeOffset", "0"))
        offsets[str(aset.get("contentType"))] = pto / int(template.get("timescale", "1"))
    return offsets


@pytest.mark.parametrize("ignore_editlist", [False, True], ids=["with-edit-lists", "timestamps-only"])
def test_hls_and_dash_present_sound_with_picture(packaged: PackagedTitles, ignore_editlist: bool) -> None:
    title_dir = packaged.clear.title_dir
    master = m3u8.load(str(title_dir / MASTER_PLAYLIST_NAME))
    video = _first_segment(title_dir / master.playlists[0].uri)
    audio = _first_segment(title_dir / next(m.uri for m in master.media if m.type == "AUDIO"))
    video_s = video_origin_s(video, ignore_editlist=ignore_editlist)
    audio_s = audio_origin_s(audio, DemoClip(packaged.clip), ignore_editlist=ignore_editlist)
    # HLS: the media timestamps (and edit lists) are all a player has.
    assert abs(audio_s - video_s) < AUDIO_FRAME_S, (
        f"HLS: the clip's t=0 is heard at {audio_s * 1000:.1f} ms media time, seen at {video_s * 1000:.1f} ms"
    )
    assert audio_s - video_s > -SOUND_EARLY_LIMIT_S
    # DASH: each track less its AdaptationSet's offset; the first frame lands on the Period start.
    offsets = _dash_offsets_s(title_dir)
    dash_video_s, dash_audio_s = video_s - offsets["video"], audio_s - offsets["audio"]
    assert abs(dash_audio_s - dash_video_s) < AUDIO_FRAME_S
    assert dash_audio_s - dash_video_s > -SOUND_EARLY_LIMIT_S
    assert abs(dash_video_s) < 0.005


def test_shifting_a_segment_moves_only_its_decode_time(packaged: PackagedTitles) -> None:
    directory = packaged.encrypted.title_dir / "audio" / "a128k"  # encrypted: senc/saio must stay valid
    init = (directory / "init.mp4").read_bytes()
    segment = (directory / "2.m4s").read_bytes()
    shifted = shift_decode_times(segment, 2976)
    assert len(shifted) == len(segment)
    (before,) = split_fragmented_mp4(init + segment).fragments
    (after,) = split_fragmented_mp4(init + shifted).fragments
    assert after.base_media_decode_time == before.base_media_decode_time + 2976
    assert after.earliest_presentation_time == before.earliest_presentation_time + 2976
    assert (after.duration, after.sample_count, after.has_senc) == (before.duration, before.sample_count, True)
    # Only the tfdt value's bytes differ.
    assert sum(a != b for a, b in zip(segment, shifted)) <= 4


def test_shifting_refuses_what_it_cannot_retime(packaged: PackagedTitles) -> None:
    segment = (packaged.clear.title_dir / "audio" / "a128k" / "1.m4s").read_bytes()
    with pytest.raises(Mp4FormatError, match="does not fit"):
        shift_decode_times(segment, -(10**9))  # before media time 0
    sidx = struct.pack(">I4sIIIIIHHIII", 44, b"sidx", 0, 1, 48_000, 0, 0, 0, 1, 0, 0, 0)  # a stale index
    with pytest.raises(Mp4FormatError, match="sidx"):
        shift_decode_times(sidx + segment, 10)
    with pytest.raises(Mp4FormatError, match="no tfdt"):
        shift_decode_times(b"\x00\x00\x00\x08free", 10)


@pytest.mark.parametrize("number", [1, 3], ids=["first-loop", "second-loop"])
def test_live_segments_present_sound_with_picture(packaged: PackagedTitles, number: int) -> None:
    """The live channel re-times the packaged segments (whole loops later; the audio's priming frame
    left out after the first loop, tests/server/live): sound stays with picture over live HLS."""
    channel = make_channel(packaged, start_s=1_000_000.0)
    loop_s = float(channel.loop_s)

    def track(media: str, rep_id: str) -> bytes:
        found = channel.track(media, rep_id)
        assert found is not None
        return found.init + b"".join(channel.build_segment_chunks(media, rep_id, number))

    video_s = video_origin_s(track("video", "v216p"), ignore_editlist=True)
    audio_s = audio_origin_s(track("audio", "a128k"), DemoClip(packaged.clip), ignore_editlist=True)
    loops = (number - 1) // channel.loop_segments
    assert video_s == pytest.approx(loops * loop_s + 2 / 24, abs=1e-6)
    assert abs(audio_s - video_s) < AUDIO_FRAME_S and audio_s - video_s > -SOUND_EARLY_LIMIT_S


def test_without_b_frames_the_video_moves_instead(tmp_path: Path) -> None:
    """x264's ultrafast preset has no B-frames: the first frame is presented at media time 0, before
    the first audio sample after the priming (21.3 ms), so the video moves later instead."""
    clip = DemoClipConfig(duration_s=3.0, width=384, height=216)
    result = package_source(DemoSource(clip), tmp_path / "nob", PackageConfig(preset="ultrafast", segment_s=3.0),
                            title="nob")
    title_dir = result.title_dir
    video = _first_segment(title_dir / "video" / result.segments.video[0].id / MEDIA_PLAYLIST_NAME)
    audio = _first_segment(title_dir / "audio" / result.segments.audio[0].id / MEDIA_PLAYLIST_NAME)
    video_s = video_origin_s(video, ignore_editlist=True)
    audio_s = audio_origin_s(audio, DemoClip(clip), ignore_editlist=True)
    assert video_s == pytest.approx(1024 / 48_000, abs=1e-4)  # moved by the priming, to the tick
    assert abs(audio_s - video_s) < 1e-3
    offsets = _dash_offsets_s(title_dir)
    assert offsets["video"] == pytest.approx(offsets["audio"], abs=1e-4) == pytest.approx(video_s, abs=1e-4)
