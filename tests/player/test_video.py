"""Loading videos for the simulator: every decision the loader makes is an error or a printed note."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from abr.types import Ladder
from player.video import PENSIEVE_BITRATES_KBPS, Video, load_video


def _pensieve_folder(path: Path, rows: list[int], *, manifest_kbps: tuple[int, ...] | None = None) -> Path:
    path.mkdir()
    for q, count in enumerate(rows):
        (path / f"video_size_{q}").write_text("".join(f"{1000 * (q + 1) + i}\n" for i in range(count)))
    if manifest_kbps is not None:
        reps = "".join(f'<Representation id="v{k}" bandwidth="{k * 1000}" width="640" height="360"/>'
                       for k in manifest_kbps)
        (path / "Manifest.mpd").write_text(
            '<MPD xmlns="urn:mpeg:dash:schema:mpd:2011" type="static" minBufferTime="PT2S" mediaPresentationDuration="PT40S">'
            '<Period><AdaptationSet mimeType="video/mp4"><SegmentTemplate timescale="1" duration="4" '
            f'media="$RepresentationID$/$Number$.m4s" startNumber="1"/>{reps}</AdaptationSet></Period></MPD>')
    return path


def test_pensieve_layout_plays_48_of_49_rows_and_says_so(tmp_path: Path) -> None:
    video = load_video(_pensieve_folder(tmp_path / "v", [49] * 6))
    assert video.segment_count == 48 and video.sizes_bytes.shape == (49, 6)
    assert video.ladder.bitrates_bps == tuple(k * 1000 for k in PENSIEVE_BITRATES_KBPS)
    assert any("plays 48 of 49 segments" in n for n in video.notes)
    assert any("Pensieve's Envivio ladder" in n for n in video.notes)


def test_other_lengths_play_every_row(tmp_path: Path) -> None:
    video = load_video(_pensieve_folder(tmp_path / "v", [100] * 6))
    assert video.segment_count == 100
    assert not any("plays" in n for n in video.notes)


def test_a_short_size_file_is_an_error_naming_the_counts(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"different numbers of segments \(.*video_size_3: 40"):
        load_video(_pensieve_folder(tmp_path / "v", [49, 49, 49, 40, 49, 49]))


def test_any_number_of_rungs_takes_its_ladder_from_the_manifest(tmp_path: Path) -> None:
    kbps = (200, 500, 900, 1600, 3000, 5000, 8000)
    video = load_video(_pensieve_folder(tmp_path / "v", [20] * 7, manifest_kbps=tuple(reversed(kbps))))
    assert video.ladder.bitrates_bps == tuple(k * 1000 for k in kbps)
    assert any("from Manifest.mpd" in n for n in video.notes)


def test_rungs_without_a_known_ladder_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="7 video_size_<q> files and no Manifest.mpd .* the ladder is unknown"):
        load_video(_pensieve_folder(tmp_path / "v", [20] * 7))


@pytest.mark.parametrize("rows, message", [
    ([[1, 2], [3]], "row 1 has 1 sizes, expected one per bitrate"),
    ([[1, 2], "x"], "row 1 has str"),
    ([], "non-empty list"),
    ([[1, "big"]], "must hold numbers"),
])
def test_ragged_or_bad_sabre_rows_are_clear_errors(tmp_path: Path, rows: list, message: str) -> None:
    path = tmp_path / "movie.json"
    path.write_text(json.dumps({"segment_duration_ms": 3000, "bitrates_kbps": [100, 200], "segment_sizes_bits": rows}))
    with pytest.raises(ValueError, match=message):
        load_video(path)


def test_upcoming_rows_are_the_sizes_as_tuples() -> None:
    sizes = np.arange(1, 5 * 3 + 1).reshape(5, 3) * 1000
    video = Video(name="v", ladder=Ladder(bitrates_bps=(1, 2, 3), segment_duration_s=4.0), sizes_bytes=sizes,
                  segment_count=4)
    assert video.upcoming(1, 2) == ((4000, 5000, 6000), (7000, 8000, 9000))
    assert video.upcoming(3, 6) == ((10000, 11000, 12000), (13000, 14000, 15000))  # look-ahead row included
    assert all(type(x) is int for row in video.upcoming(0, 5) for x in row)
