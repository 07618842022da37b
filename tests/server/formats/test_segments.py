"""segments.json without a packager: what `to_json` writes, `parse_segments_json` reads back."""

from __future__ import annotations

from pathlib import Path

import pytest

from server.formats.segments import (
    AudioRenditionInfo,
    TitleSegments,
    VideoRenditionInfo,
    load_segments_json,
    parse_segments_json,
)


def title() -> TitleSegments:
    video = tuple(
        VideoRenditionInfo(id=f"v{h}p", bitrate_bps=rate, measured_bitrate_bps=rate + 1, width=h * 16 // 9, height=h,
                           frame_rate=24.0, codecs="avc1.64001f", segment_sizes_bytes=(rate // 2, rate // 2 + 7),
                           segment_durations_s=(4.0, 2.5), quality_metric="psnr_db", segment_quality=(38.5, 40.0))
        for h, rate in ((216, 300_000), (360, 800_000))
    )
    audio = (AudioRenditionInfo(id="a128k", bitrate_bps=128_000, codecs="mp4a.40.2", sample_rate_hz=48_000,
                                channels=2, segment_sizes_bytes=(64_000, 40_000), segment_durations_s=(4.0, 2.5),
                                measured_bitrate_bps=127_000),)
    return TitleSegments(title="clip", segment_duration_s=4.0, segment_count=2, encrypted=False, video=video,
                         audio=audio)


def test_what_is_written_reads_back_equal(tmp_path: Path) -> None:
    original = title()
    assert parse_segments_json(original.to_json(), "mem") == original
    (tmp_path / "segments.json").write_text(original.to_json())
    assert load_segments_json(tmp_path) == original  # a title directory or the file itself
    assert original.duration_s == 6.5


@pytest.mark.parametrize(("text", "message"), [
    (b"\xff", "not valid JSON"),
    ("[]", "must be an object"),
    ('{"title": "clip"}', "missing 'segment_duration_s'"),
])
def test_errors_name_the_source(text: str | bytes, message: str) -> None:
    with pytest.raises(ValueError, match=f"^remote/segments.json: .*{message}"):
        parse_segments_json(text, "remote/segments.json")


def test_a_missing_file_says_what_was_expected(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="is this a packaged title"):
        load_segments_json(tmp_path)
