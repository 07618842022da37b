"""Re-timing and cutting packaged fragments: tfdt runs on across the loop point, chunks cut at
sample boundaries keep every sample byte and the encryption tables in step (parsed back with the
packager's own fragment reader)."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from server.formats.boxes import Mp4FormatError, find_box, iter_boxes
from server.live.rewrite import build_fragment, chunk_ranges, parse_fragment
from server.packaging.mp4split import parse_init, split_fragmented_mp4
from tests.server.live.conftest import make_channel


def fragments_of(data: bytes, init: bytes):  # type: ignore[no-untyped-def]
    return split_fragmented_mp4(init + data).fragments


@pytest.mark.parametrize("encrypted", [False, True])
def test_tfdt_runs_on_across_the_loop_point(packaged, encrypted: bool) -> None:  # type: ignore[no-untyped-def]
    channel = make_channel(packaged, start_s=0.0, low_latency=False, encrypted=encrypted)
    assert channel.loop_segments == 2  # 10 s clip in 4 s segments: the short last one is left out
    for track in channel.tracks():
        end = None
        for number in range(1, 3 * channel.loop_segments + 1):  # three loops
            (data,) = channel.segment_chunks(track.media, track.rep_id, number)
            (fragment,) = fragments_of(data, track.init)
            assert fragment.sequence_number == number
            if end is not None:
                assert fragment.base_media_decode_time == end, (track.rep_id, number)
            end = fragment.base_media_decode_time + fragment.duration
        # Three loops last three times the loop, whatever the first loop's priming samples.
        first = fragments_of(channel.segment_chunks(track.media, track.rep_id, 1)[0], track.init)[0]
        assert end - first.base_media_decode_time == 3 * track.loop_ticks + (
            sum(parse_fragment((track.directory / "1.m4s").read_bytes(), track.info.defaults)
                .durations[:track.skip_samples]))


def test_audio_priming_samples_are_left_out_after_the_first_loop(packaged) -> None:  # type: ignore[no-untyped-def]
    channel = make_channel(packaged, start_s=0.0)
    (audio,) = [t for t in channel.tracks() if t.media == "audio"]
    assert audio.skip_samples == 1  # AAC's 1024-sample priming: the loop would otherwise grow by it
    first = fragments_of(channel.segment_chunks("audio", audio.rep_id, 1)[0], audio.init)[0]
    again = fragments_of(channel.segment_chunks("audio", audio.rep_id, 3)[0], audio.init)[0]
    assert again.sample_count == first.sample_count - 1
    assert again.base_media_decode_time == first.base_media_decode_time + audio.loop_ticks + 1024


@pytest.mark.parametrize("encrypted", [False, True])
def test_chunks_hold_every_sample_once_in_order(packaged, encrypted: bool) -> None:  # type: ignore[no-untyped-def]
    channel = make_channel(packaged, start_s=0.0, low_latency=True, chunk_s=0.5, encrypted=encrypted)
    assert channel.chunks_per_segment == 8
    for track in channel.tracks():
        source = (track.directory / "2.m4s").read_bytes()
        table = parse_fragment(source, track.info.defaults)
        chunks = channel.segment_chunks(track.media, track.rep_id, 2)
        assert len(chunks) == 8 and all(chunks)
        parsed = [fragments_of(c, track.init)[0] for c in chunks]
        assert [p.sequence_number for p in parsed] == list(range(9, 17))
        assert sum(p.sample_count for p in parsed) == table.sample_count
        for a, b in zip(parsed, parsed[1:]):
            assert b.base_media_decode_time == a.base_media_decode_time + a.duration
        # Each chunk ends on its 0.5 s boundary (video: 12 frames at 24 fps).
        if track.media == "video":
            assert [p.sample_count for p in parsed] == [12] * 8
            assert parsed[0].starts_with_sync_sample and not parsed[1].starts_with_sync_sample
        # The sample bytes are the source's, in order.
        media = b"".join(c[find_box(c, "mdat").payload_offset:] for c in chunks)  # type: ignore[union-attr]
        mdat = find_box(source, "mdat")
        assert media == source[mdat.payload_offset:mdat.end]  # type: ignore[union-attr]
        if encrypted:
            for chunk, p in zip(chunks, parsed):
                assert p.has_senc
                again = parse_fragment(chunk, track.info.defaults)  # saiz/senc counts agree
                assert len(again.senc_entries) == p.sample_count


@pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="needs ffmpeg (Debian package; .ci/run installs it)")
def test_ffmpeg_decodes_a_chunked_segment_across_the_loop(packaged, tmp_path) -> None:  # type: ignore[no-untyped-def]
    channel = make_channel(packaged, start_s=0.0, low_latency=True)
    track = channel.track("video", packaged.ladder[0].id)
    assert track is not None
    path = tmp_path / "run.mp4"
    path.write_bytes(track.init + b"".join(c for n in (2, 3) for c in channel.segment_chunks("video", track.rep_id, n)))
    out = subprocess.run(["ffprobe", "-v", "error", "-count_frames", "-select_streams", "v:0", "-show_entries",
                          "stream=nb_read_frames", "-of", "csv=p=0", str(path)], capture_output=True, text=True,
                         check=True)
    assert int(out.stdout.strip()) == 2 * 4 * 24
    decode = subprocess.run(["ffmpeg", "-v", "error", "-i", str(path), "-f", "null", "-"], capture_output=True, text=True)
    assert decode.returncode == 0 and decode.stderr == ""


def test_chunk_ranges_follow_decode_time() -> None:
    assert chunk_ranges([10] * 8, 20, 4) == [(0, 2), (2, 4), (4, 6), (6, 8)]
    assert chunk_ranges([10] * 9, 20, 4) == [(0, 2), (2, 4), (4, 6), (6, 9)]  # the last takes the rest
    assert chunk_ranges([10] * 8, 20, 4, skip=1) == [(1, 2), (2, 4), (4, 6), (6, 8)]
    assert chunk_ranges([50, 50], 20, 4) == [(0, 1), (1, 1), (1, 2), (2, 2)]  # empty chunks stay empty


def test_build_fragment_refuses_bad_ranges(packaged) -> None:  # type: ignore[no-untyped-def]
    channel = make_channel(packaged, start_s=0.0)
    track = channel.tracks()[0]
    table = parse_fragment((track.directory / "1.m4s").read_bytes(), track.info.defaults)
    with pytest.raises(ValueError, match="sample range"):
        build_fragment(table, 3, 3, decode_time=0, sequence=1)
    with pytest.raises(ValueError, match="sequence"):
        build_fragment(table, 0, 1, decode_time=0, sequence=0)


def test_parse_fragment_refuses_what_it_cannot_cut(packaged) -> None:  # type: ignore[no-untyped-def]
    channel = make_channel(packaged, start_s=0.0)
    track = channel.tracks()[0]
    data = (track.directory / "1.m4s").read_bytes()
    with pytest.raises(Mp4FormatError):
        parse_fragment(data[: len(data) // 2], track.info.defaults)
    moof = next(b for b in iter_boxes(data) if b.type == "moof")
    with pytest.raises(Mp4FormatError, match="moof"):
        parse_fragment(data[moof.end:], track.info.defaults)  # mdat alone
    assert parse_init(track.init).timescale == track.info.timescale
