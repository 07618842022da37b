"""Packaging: ladder rules, bad input, the title layout, segments, MPD, encryption and the demo clip."""

from __future__ import annotations

import io
import json
import os
import stat
import uuid
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING

import av
import numpy as np
import pytest
from defusedxml import ElementTree as SafeET

from player.cli import main as cli_main
from server.config import default_cache_dir
from server.formats.boxes import Mp4FormatError, find_box, find_boxes, iter_boxes
from server.formats.dash import LAURL_PLACEHOLDER, W3C_COMMON_SYSTEM_ID
from server.formats.segments import load_segments_json
from server.packager import (
    DEFAULT_LADDER,
    PackageConfig,
    Rung,
    ensure_demo_title,
    fit_ladder,
    package,
    package_source,
    parse_ladder,
)
from server.packaging import quality
from server.packaging.demo import DemoClip, DemoClipConfig, write_demo_source
from server.packaging.mp4split import append_to_moov, build_pssh, parse_init, parse_pssh, split_fragmented_mp4
from server.packaging.source import AudioChunk, DemoSource, FileSource, VideoChunk

if TYPE_CHECKING:
    from tests.conftest import PackagedTitles

NS = {"mpd": "urn:mpeg:dash:schema:mpd:2011", "cenc": "urn:mpeg:cenc:2013", "dashif": "https://dashif.org/CPS"}


# --------------------------------------------------------------------------- helpers
def rendition_bytes(title_dir: Path, media: str, rep_id: str, count: int) -> bytes:
    directory = title_dir / media / rep_id
    parts = [directory / "init.mp4"] + [directory / f"{n}.m4s" for n in range(1, count + 1)]
    return b"".join(p.read_bytes() for p in parts)


def decode_video(data: bytes, key_hex: str | None = None) -> list[av.VideoFrame]:
    options = {"decryption_key": key_hex} if key_hex else {}
    with av.open(io.BytesIO(data), "r", format="mp4", options=options) as container:
        return list(container.decode(video=0))


def luma_planes(frames: list[av.VideoFrame]) -> list[np.ndarray]:
    return [f.to_ndarray(format="gray") for f in frames]


def keys_of(title_dir: Path) -> dict:
    return json.loads((title_dir / "keys.json").read_text())


def key_for(title_dir: Path, track: str) -> str:
    return next(k["key"] for k in keys_of(title_dir)["keys"] if track in k["tracks"])


def kid_for(title_dir: Path, track: str) -> str:
    return next(k["kid"] for k in keys_of(title_dir)["keys"] if track in k["tracks"])


# --------------------------------------------------------------------------- ladder and config
@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("216p:300k", ((216, 300_000),)),
        ("216p:300k,360p:800k", ((216, 300_000), (360, 800_000))),
        ("360p:0.8M, 720p:3M", ((360, 800_000), (720, 3_000_000))),
        ("240p:450000,480p:1500K", ((240, 450_000), (480, 1_500_000))),
    ],
)
def test_parse_ladder_accepts_heights_and_bitrates(text: str, expected: tuple) -> None:
    assert tuple((r.height, r.bitrate_bps) for r in parse_ladder(text)) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "bad ladder entry"),
        ("216:300k", "bad ladder entry"),
        ("216p-300k", "bad ladder entry"),
        ("216p:300k,,360p:800k", "bad ladder entry"),
        ("216p:fast", "bad ladder entry"),
        ("216p:800k,360p:800k", "bitrates must increase"),
        ("216p:900k,360p:800k", "bitrates must increase"),
        ("360p:300k,216p:800k", "heights must increase"),
        ("217p:300k", "even"),
        ("216p:10k", "bitrate"),
    ],
)
def test_parse_ladder_rejects_bad_ladders(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_ladder(text)


def test_explicit_rung_taller_than_source_is_rejected_by_name() -> None:
    with pytest.raises(ValueError, match="v720p.*taller than the 540-line source"):
        fit_ladder(parse_ladder("360p:800k,720p:3M"), 540)


def test_default_ladder_is_trimmed_to_the_source_height() -> None:
    assert [r.height for r in fit_ladder(None, 720)] == [216, 360, 540, 720]
    assert fit_ladder(None, 1080) == DEFAULT_LADDER
    with pytest.raises(ValueError, match="only 144 lines"):
        fit_ladder(None, 144)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"segment_s": 0.5},
        {"segment_s": 60.0},
        {"preset": "warp"},
        {"encoder_threads": 0},
        {"audio_channels": 6},
        {"audio_sample_rate_hz": 8000},
        {"quality_samples_per_segment": 0},
        {"ladder": (Rung(height=360, bitrate_bps=800_000), Rung(height=216, bitrate_bps=300_000))},
    ],
)
def test_package_config_rejects_bad_values(kwargs: dict) -> None:
    with pytest.raises(ValueError):
        PackageConfig(**kwargs)


# --------------------------------------------------------------------------- bad input
def test_missing_input_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="input file not found"):
        package(tmp_path / "nope.mp4", tmp_path / "out", PackageConfig())


def test_non_media_input_is_a_clear_error(tmp_path: Path) -> None:
    text = tmp_path / "notes.mp4"
    text.write_text("this is not a video\n" * 50)
    with pytest.raises(ValueError, match="not a media file"):
        package(text, tmp_path / "out", PackageConfig())


def test_audio_only_input_is_rejected_for_having_no_video(tmp_path: Path) -> None:
    path = tmp_path / "tone.m4a"
    clip = DemoClip(DemoClipConfig(duration_s=1.0, width=64, height=64))
    with av.open(str(path), "w", format="mp4") as out:
        stream = out.add_stream("aac", rate=48_000)
        stream.layout = "stereo"
        for start in range(0, 48_000, 1024):
            out.mux(stream.encode(clip.audio_frame(start, 1024)))
        out.mux(stream.encode(None))
    with pytest.raises(ValueError, match="has no video stream"):
        package(path, tmp_path / "out", PackageConfig())


def test_corrupt_input_is_a_clear_error(tmp_path: Path, packaged: PackagedTitles) -> None:
    data = bytearray(packaged.source.read_bytes()[:200_000])
    rng = np.random.default_rng(7)
    data[:4096] = rng.integers(0, 256, 4096, dtype=np.uint8).tobytes()
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="broken.mp4"):
        package(broken, tmp_path / "out", PackageConfig())


def test_cli_prints_one_line_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str], packaged: PackagedTitles) -> None:
    cases = [
        ["package", str(tmp_path / "missing.mp4"), str(tmp_path / "out")],
        ["package", str(packaged.source), str(tmp_path / "out"), "--ladder", "360p:800k,216p:300k"],
        ["package", str(packaged.source), str(tmp_path / "out"), "--ladder", "1080p:6M"],
        ["package", str(packaged.source), str(tmp_path / "out"), "--title", "../evil"],
        ["package", "--demo", str(tmp_path / "out"), str(tmp_path / "extra")],
        ["package", str(packaged.source)],
    ]
    for argv in cases:
        code = cli_main(argv)
        err = capsys.readouterr().err.strip()
        assert code == 2, argv
        assert err and "\n" not in err and "Traceback" not in err, err
    assert not (tmp_path / "out").exists()


def test_output_dir_that_is_not_empty_is_refused_without_force(tmp_path: Path, packaged: PackagedTitles) -> None:
    out = tmp_path / "title"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="--force"):
        package(packaged.source, out, PackageConfig(ladder=parse_ladder("216p:300k")))
    assert (out / "keep.txt").read_text() == "mine"


def test_failed_run_leaves_no_title_and_no_partial_files(tmp_path: Path) -> None:
    class Failing(DemoSource):
        def media(self) -> Iterator[VideoChunk | AudioChunk]:
            for n, chunk in enumerate(super().media()):
                if n == 40:
                    raise ValueError("source went away")
                yield chunk

    source = Failing(DemoClipConfig(duration_s=4.0, width=384, height=216))
    with pytest.raises(ValueError, match="source went away"):
        package_source(source, tmp_path / "demo", PackageConfig(preset="ultrafast"), title="demo")
    assert list(tmp_path.iterdir()) == []


# --------------------------------------------------------------------------- layout and sidecar
def test_title_layout_matches_the_contract(packaged: PackagedTitles) -> None:
    for result, encrypted in ((packaged.clear, False), (packaged.encrypted, True)):
        root = result.title_dir
        names = {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()}
        count = result.segments.segment_count
        expected = {"manifest.mpd", "master.m3u8", "segments.json"} | ({"keys.json"} if encrypted else set())
        for media, ids in (("video", ["v216p", "v360p", "v540p"]), ("audio", ["a128k"])):
            for rep in ids:
                expected |= {f"{media}/{rep}/init.mp4", f"{media}/{rep}/playlist.m3u8"}
                expected |= {f"{media}/{rep}/{n}.m4s" for n in range(1, count + 1)}
        assert names == expected


def test_keys_file_is_private_and_holds_separate_audio_and_video_keys(packaged: PackagedTitles) -> None:
    path = packaged.encrypted.title_dir / "keys.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    doc = keys_of(packaged.encrypted.title_dir)
    assert doc["title"] == "clipenc"
    kids = [k["kid"] for k in doc["keys"]]
    keys = [k["key"] for k in doc["keys"]]
    assert len(set(kids)) == 2 and len(set(keys)) == 2
    for entry in doc["keys"]:
        assert len(bytes.fromhex(entry["kid"])) == 16 and len(bytes.fromhex(entry["key"])) == 16
    assert {"video", "v216p", "v540p"} <= set(doc["keys"][0]["tracks"])
    assert {"audio", "a128k"} <= set(doc["keys"][1]["tracks"])
    assert not (packaged.clear.title_dir / "keys.json").exists()


def test_segments_json_matches_files_and_loads(packaged: PackagedTitles) -> None:
    root = packaged.clear.title_dir
    segments = load_segments_json(root / "segments.json")
    assert segments == packaged.clear.segments
    assert segments.title == "clip" and not segments.encrypted
    assert segments.segment_count == 3 and segments.segment_duration_s == 4.0
    assert [v.id for v in segments.video] == ["v216p", "v360p", "v540p"]
    assert [(v.width, v.height) for v in segments.video] == [(384, 216), (640, 360), (960, 540)]
    for media, renditions in (("video", segments.video), ("audio", segments.audio)):
        for rendition in renditions:
            sizes = [(root / media / rendition.id / f"{n}.m4s").stat().st_size for n in range(1, 4)]
            assert list(rendition.segment_sizes_bytes) == sizes
            assert sum(rendition.segment_durations_s) == pytest.approx(10.0, abs=0.05)
    assert segments.video[0].segment_durations_s == (4.0, 4.0, 2.0)
    assert segments.audio[0].codecs == "mp4a.40.2" and segments.audio[0].sample_rate_hz == 48_000


def test_measured_bitrate_is_within_20_percent_of_target(packaged: PackagedTitles) -> None:
    for rendition in packaged.clear.segments.video:
        assert rendition.measured_bitrate_bps == pytest.approx(rendition.bitrate_bps, rel=0.2), rendition.id
    audio = packaged.clear.segments.audio[0]
    assert audio.measured_bitrate_bps == pytest.approx(128_000, rel=0.2)


def test_quality_rises_with_each_rung(packaged: PackagedTitles) -> None:
    scores = [np.mean(v.segment_quality) for v in packaged.clear.segments.video]
    assert all(low < high for low, high in zip(scores, scores[1:])), scores
    assert 15.0 < scores[0] and scores[-1] < 60.0
    assert packaged.clear.segments.video[0].quality_metric == "psnr_db"


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: d.pop("segment_count"), "missing 'segment_count'"),
        (lambda d: d.update(segment_count="3"), "'segment_count' has the wrong type"),
        (lambda d: d.update(encrypted=1), "'encrypted' has the wrong type"),
        (lambda d: d["video"][1]["segment_sizes_bytes"].pop(), r"video\[1\]: 'segment_sizes_bytes' has 2 entries"),
        (lambda d: d["video"][0]["segment_sizes_bytes"].__setitem__(0, -5), r"segment_sizes_bytes\[0\]"),
        (lambda d: d["audio"][0]["segment_durations_s"].__setitem__(2, 0), r"audio\[0\]: segment_durations_s\[2\]"),
        (lambda d: d["video"].reverse(), "ascending bitrate_bps"),
        (lambda d: d.update(video=[]), "no renditions"),
        (lambda d: d["audio"][0].update(id="v216p"), "duplicate rendition ids"),
    ],
)
def test_load_segments_json_names_the_file_and_the_problem(
    tmp_path: Path, packaged: PackagedTitles, mutate, message: str
) -> None:
    doc = json.loads((packaged.clear.title_dir / "segments.json").read_text())
    mutate(doc)
    path = tmp_path / "segments.json"
    path.write_text(json.dumps(doc))
    with pytest.raises(ValueError, match=message) as info:
        load_segments_json(path)
    assert str(path) in str(info.value)


def test_load_segments_json_rejects_non_json(tmp_path: Path) -> None:
    path = tmp_path / "segments.json"
    path.write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        load_segments_json(path)


# --------------------------------------------------------------------------- segments and decoding
@pytest.mark.parametrize("rep_id", ["v216p", "v360p", "v540p"])
def test_every_video_rendition_decodes_fully_with_keyframes_at_segment_starts(
    packaged: PackagedTitles, rep_id: str
) -> None:
    data = rendition_bytes(packaged.clear.title_dir, "video", rep_id, 3)
    frames = decode_video(data)
    assert len(frames) == packaged.frame_count == 240
    keyframes = [i for i, f in enumerate(frames) if f.key_frame]
    gop = packaged.gop_frames
    assert keyframes == [0, gop, 2 * gop]  # exactly one IDR per segment, at its start
    height = int(rep_id[1:-1])
    assert (frames[0].width, frames[0].height) == (height * 16 // 9, height)


def test_segment_boundaries_align_across_renditions(packaged: PackagedTitles) -> None:
    root = packaged.clear.title_dir
    timelines = []
    for rep_id in ("v216p", "v360p", "v540p"):
        split = split_fragmented_mp4(rendition_bytes(root, "video", rep_id, 3))
        assert [f.sequence_number for f in split.fragments] == [1, 2, 3]
        assert all(f.starts_with_sync_sample for f in split.fragments)
        timelines.append([(f.earliest_presentation_time, f.duration) for f in split.fragments])
    assert timelines[0] == timelines[1] == timelines[2]


def test_audio_segments_end_within_one_aac_frame_of_video_boundaries(packaged: PackagedTitles) -> None:
    split = split_fragmented_mp4(rendition_bytes(packaged.clear.title_dir, "audio", "a128k", 3))
    assert [f.sequence_number for f in split.fragments] == [1, 2, 3]
    # Media time of the source's t=0: the first sample after the AAC priming (the MPD's offset).
    audio_set = parse_mpd(packaged.clear.title_dir).findall("mpd:Period/mpd:AdaptationSet", NS)[1]
    start = int(audio_set.find("mpd:SegmentTemplate", NS).get("presentationTimeOffset"))
    assert start == split.fragments[0].base_media_decode_time + 1024  # the first AAC frame is priming
    for k, fragment in enumerate(split.fragments):
        assert abs((fragment.base_media_decode_time - start) - k * 4 * 48_000) <= 1024
    end = split.fragments[-1].base_media_decode_time + split.fragments[-1].duration - start
    assert abs(end - 10 * 48_000) <= 1024


def test_audio_decodes_to_the_full_duration(packaged: PackagedTitles) -> None:
    data = rendition_bytes(packaged.clear.title_dir, "audio", "a128k", 3)
    with av.open(io.BytesIO(data), "r", format="mp4") as container:
        samples = sum(f.samples for f in container.decode(audio=0))
    assert abs(samples - (10 * 48_000 + 1024)) <= 1024


# --------------------------------------------------------------------------- MPD
def parse_mpd(title_dir: Path):
    return SafeET.fromstring((title_dir / "manifest.mpd").read_bytes())


def test_mpd_describes_the_presentation(packaged: PackagedTitles) -> None:
    root_dir = packaged.clear.title_dir
    mpd = parse_mpd(root_dir)
    assert mpd.tag == "{urn:mpeg:dash:schema:mpd:2011}MPD"
    assert mpd.get("type") == "static"
    assert mpd.get("profiles") == "urn:mpeg:dash:profile:isoff-live:2011"
    assert mpd.get("mediaPresentationDuration") == "PT10.000S"
    video_set, audio_set = mpd.findall("mpd:Period/mpd:AdaptationSet", NS)
    assert video_set.get("contentType") == "video" and video_set.get("mimeType") == "video/mp4"
    assert video_set.get("segmentAlignment") == "true" and video_set.get("startWithSAP") == "1"
    assert mpd.find("mpd:Period/mpd:AdaptationSet/mpd:ContentProtection", NS) is None

    template = video_set.find("mpd:SegmentTemplate", NS)
    assert template.get("media") == "video/$RepresentationID$/$Number$.m4s"
    assert template.get("initialization") == "video/$RepresentationID$/init.mp4"
    assert template.get("startNumber") == "1"
    timescale = int(template.get("timescale"))
    pto = int(template.get("presentationTimeOffset"))
    entries = template.findall("mpd:SegmentTimeline/mpd:S", NS)
    durations = [int(s.get("d")) for s in entries for _ in range(int(s.get("r", "0")) + 1)]
    assert len(durations) == 3
    assert int(entries[0].get("t")) == pto
    assert sum(durations) / timescale == pytest.approx(10.0)

    segments = load_segments_json(root_dir)
    reps = video_set.findall("mpd:Representation", NS)
    assert [r.get("id") for r in reps] == ["v216p", "v360p", "v540p"]
    for rep, info in zip(reps, segments.video):
        init = parse_init((root_dir / "video" / info.id / "init.mp4").read_bytes())
        assert rep.get("codecs") == init.codecs == info.codecs
        assert rep.get("codecs").startswith("avc1.64")  # High profile, from the avcC bytes
        assert (int(rep.get("width")), int(rep.get("height"))) == (info.width, info.height) == (init.width, init.height)
        assert Fraction(rep.get("frameRate")) == 24
        bandwidth = int(rep.get("bandwidth"))
        # @bandwidth with @minBufferTime=4 s: at least the average and each segment's bits over 4 s.
        assert bandwidth >= info.measured_bitrate_bps
        assert bandwidth >= max(info.segment_sizes_bytes) * 8 / 4.0
        assert bandwidth <= max(s * 8 / d for s, d in zip(info.segment_sizes_bytes, info.segment_durations_s)) + 1

    assert audio_set.get("contentType") == "audio" and audio_set.get("mimeType") == "audio/mp4"
    (audio_rep,) = audio_set.findall("mpd:Representation", NS)
    assert audio_rep.get("codecs") == "mp4a.40.2" and audio_rep.get("audioSamplingRate") == "48000"
    channels = audio_rep.find("mpd:AudioChannelConfiguration", NS)
    assert channels.get("value") == "2"
    audio_template = audio_set.find("mpd:SegmentTemplate", NS)
    # Both offsets name the source's t=0: the video's first frame (two frames of B-frame delay) and
    # the audio's first sample after the AAC encoder delay, which the packager moved to that time.
    audio_timescale = int(audio_template.get("timescale"))
    assert int(audio_template.get("presentationTimeOffset")) / audio_timescale == pto / timescale == 2 / 24


def test_encrypted_mpd_signals_cenc_and_clearkey_in_the_layout_browser_players_accept(
        packaged: PackagedTitles) -> None:
    root_dir = packaged.encrypted.title_dir
    mpd = parse_mpd(root_dir)
    for aset, track in zip(mpd.findall("mpd:Period/mpd:AdaptationSet", NS), ("video", "audio")):
        protections = aset.findall("mpd:ContentProtection", NS)
        # exactly these two: a W3C common-PSSH descriptor (1077efec) or a pssh in the ClearKey one makes
        # dash.js call generateRequest('keyids', <pssh box>), which Chromium refuses (tests/browser).
        assert [p.get("schemeIdUri") for p in protections] == [
            "urn:mpeg:dash:mp4protection:2011", "urn:uuid:e2719d58-a985-b3c9-781a-b030af78d30e"]
        cenc, clearkey = protections
        assert cenc.get("value") == "cenc"
        kid = uuid.UUID(cenc.get("{urn:mpeg:cenc:2013}default_KID"))
        assert kid.hex == kid_for(root_dir, track)
        assert clearkey.get("value") == "ClearKey1.0"
        assert [child.tag for child in clearkey] == ["{https://dashif.org/CPS}Laurl"]
        assert clearkey.find("dashif:Laurl", NS).text == LAURL_PLACEHOLDER
    assert mpd.find(".//cenc:pssh", NS) is None  # the pssh is in the init segments (next test)


# --------------------------------------------------------------------------- encryption
@pytest.mark.parametrize(("media", "rep_id"), [("video", "v216p"), ("video", "v540p"), ("audio", "a128k")])
def test_encrypted_init_and_fragments_carry_cenc_boxes(packaged: PackagedTitles, media: str, rep_id: str) -> None:
    root = packaged.encrypted.title_dir
    init_bytes = (root / media / rep_id / "init.mp4").read_bytes()
    init = parse_init(init_bytes)
    assert init.scheme_type == "cenc"
    assert init.default_kid is not None and init.default_kid.hex() == kid_for(root, media)
    assert init.per_sample_iv_size in (8, 16)
    (pssh,) = init.pssh
    assert pssh.system_id == W3C_COMMON_SYSTEM_ID and init.default_kid in pssh.kids
    assert {k.hex() for k in pssh.kids} == {kid_for(root, "video"), kid_for(root, "audio")}
    entry = "encv" if media == "video" else "enca"
    assert find_box(init_bytes, f"moov/trak/mdia/minf/stbl/stsd/{entry}/sinf/schi/tenc") is not None
    for n in (1, 2, 3):
        segment = (root / media / rep_id / f"{n}.m4s").read_bytes()
        moof = find_box(segment, "moof")
        for name in ("senc", "saiz", "saio"):
            assert find_boxes(segment, f"traf/{name}", moof), (n, name)


def test_decrypting_with_the_key_gives_the_clear_frames(packaged: PackagedTitles) -> None:
    clear = luma_planes(decode_video(rendition_bytes(packaged.clear.title_dir, "video", "v360p", 3)))
    root = packaged.encrypted.title_dir
    decrypted = luma_planes(decode_video(rendition_bytes(root, "video", "v360p", 3), key_for(root, "video")))
    assert len(decrypted) == len(clear) == packaged.frame_count
    assert all(np.array_equal(a, b) for a, b in zip(clear, decrypted))


def test_decoding_without_the_key_fails_or_is_corrupt(packaged: PackagedTitles) -> None:
    clear = luma_planes(decode_video(rendition_bytes(packaged.clear.title_dir, "video", "v360p", 3)))
    data = rendition_bytes(packaged.encrypted.title_dir, "video", "v360p", 3)
    try:
        frames = luma_planes(decode_video(data))
    except av.FFmpegError:
        return  # refused outright
    matching = sum(1 for a, b in zip(clear, frames) if a.shape == b.shape and quality.mse(a, b) < 1.0)
    assert matching == 0, f"{matching} of {len(frames)} frames decoded correctly without the key"


def test_decrypting_with_a_wrong_key_does_not_give_the_clear_frames(packaged: PackagedTitles) -> None:
    clear = luma_planes(decode_video(rendition_bytes(packaged.clear.title_dir, "video", "v216p", 3)))
    root = packaged.encrypted.title_dir
    wrong = key_for(root, "audio")  # a real key, of the other track
    try:
        frames = luma_planes(decode_video(rendition_bytes(root, "video", "v216p", 3), wrong))
    except av.FFmpegError:
        return
    assert not any(a.shape == b.shape and quality.mse(a, b) < 1.0 for a, b in zip(clear, frames))


def test_encrypted_audio_decodes_with_its_key_only(packaged: PackagedTitles) -> None:
    root = packaged.encrypted.title_dir
    data = rendition_bytes(root, "audio", "a128k", 3)
    with av.open(io.BytesIO(data), "r", format="mp4", options={"decryption_key": key_for(root, "audio")}) as c:
        samples = sum(f.samples for f in c.decode(audio=0))
    assert abs(samples - (10 * 48_000 + 1024)) <= 1024
    with pytest.raises(av.FFmpegError):
        with av.open(io.BytesIO(data), "r", format="mp4") as c:
            for _ in c.decode(audio=0):
                pass


# --------------------------------------------------------------------------- boxes
def test_pssh_round_trips_and_is_appended_to_moov() -> None:
    kids = [bytes(range(16)), bytes(range(16, 32))]
    box = build_pssh(W3C_COMMON_SYSTEM_ID, kids)
    info = parse_pssh(box, next(iter_boxes(box)))
    assert info.system_id == W3C_COMMON_SYSTEM_ID and list(info.kids) == kids and info.data == b""
    init = b"\x00\x00\x00\x10ftypisom\x00\x00\x02\x00" + b"\x00\x00\x00\x10moov" + b"\x00\x00\x00\x08free"
    grown = append_to_moov(init, box)
    moov = find_box(grown, "moov")
    assert moov is not None and moov.size == 16 + len(box)
    assert find_box(grown, "moov/pssh") is not None
    with pytest.raises(ValueError):
        build_pssh(W3C_COMMON_SYSTEM_ID, [b"short"])


@pytest.mark.parametrize(
    "data",
    [
        b"\x00\x00\x00\x20ftyp",  # claims 32 bytes, has 8
        b"\x00\x00\x00\x04ftyp",  # size smaller than its header
        b"\x00\x00\x00",  # truncated header
    ],
)
def test_box_reader_rejects_truncated_or_bad_sizes(data: bytes) -> None:
    with pytest.raises(Mp4FormatError):
        list(iter_boxes(data))


def test_splitter_rejects_files_without_fragments(packaged: PackagedTitles) -> None:
    with pytest.raises(Mp4FormatError):
        split_fragmented_mp4(packaged.source.read_bytes())  # a plain (non-fragmented) MP4


# --------------------------------------------------------------------------- demo clip
def test_demo_clip_is_deterministic_and_varies_over_time() -> None:
    config = DemoClipConfig(duration_s=2.0, width=320, height=180)
    a, b = DemoClip(config), DemoClip(config)
    for index in (0, 13, 47):
        for pa, pb in zip(a.frame_planes(index), b.frame_planes(index)):
            assert np.array_equal(pa, pb)
    assert not np.array_equal(a.frame_planes(0)[0], a.frame_planes(12)[0])
    other = DemoClip(DemoClipConfig(duration_s=2.0, width=320, height=180, seed=1))
    assert not np.array_equal(a.frame_planes(5)[0], other.frame_planes(5)[0])
    assert np.array_equal(a.audio_samples(1000, 4096), b.audio_samples(1000, 4096))
    tone = a.audio_samples(0, 48_000)
    assert tone.shape == (2, 48_000) and 0.05 < float(np.abs(tone).max()) <= 1.0


def test_demo_source_file_is_byte_identical_across_runs(tmp_path: Path) -> None:
    config = DemoClipConfig(duration_s=1.0, width=256, height=144)
    first = write_demo_source(tmp_path / "a.mp4", config)
    second = write_demo_source(tmp_path / "b.mp4", config)
    assert first.read_bytes() == second.read_bytes()
    with av.open(str(first)) as container:
        assert sum(1 for _ in container.decode(video=0)) == 24


def test_demo_clip_config_validates() -> None:
    for kwargs in ({"duration_s": 0}, {"width": 63}, {"height": 101}, {"frame_rate": 0}, {"sample_rate_hz": 8000}):
        with pytest.raises(ValueError):
            DemoClipConfig(**kwargs)


def test_ensure_demo_title_builds_once_and_rebuilds_on_new_parameters(tmp_path: Path) -> None:
    kwargs = {"duration_s": 2.0, "height": 216, "segment_s": 1.0, "preset": "ultrafast"}
    title = ensure_demo_title(tmp_path, encrypt=False, **kwargs)
    assert title == tmp_path / "demo"
    first = load_segments_json(title)
    assert first.title == "demo" and [v.id for v in first.video] == ["v216p"] and first.segment_count == 2
    manifest_inode = (title / "manifest.mpd").stat().st_ino
    assert ensure_demo_title(tmp_path, encrypt=False, **kwargs) == title
    assert (title / "manifest.mpd").stat().st_ino == manifest_inode  # reused, not rebuilt
    (title / "video" / "v216p" / "2.m4s").unlink()  # an incomplete title is rebuilt
    ensure_demo_title(tmp_path, encrypt=False, **kwargs)
    assert (title / "video" / "v216p" / "2.m4s").is_file()
    ensure_demo_title(tmp_path, encrypt=True, **kwargs)
    assert load_segments_json(title).encrypted and (title / "keys.json").is_file()
    leftovers = [p.name for p in tmp_path.iterdir() if p.name not in ("demo", ".demo.lock")]
    assert leftovers == []


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"ABRKIT_CACHE": "/x/cache", "XDG_CACHE_HOME": "/y"}, Path("/x/cache")),
        ({"XDG_CACHE_HOME": "/y"}, Path("/y/abrkit")),
        ({"HOME": "/home/u"}, Path("/home/u/.cache/abrkit")),
    ],
)
def test_default_cache_dir_follows_the_environment(monkeypatch: pytest.MonkeyPatch, env: dict, expected: Path) -> None:
    for name in ("ABRKIT_CACHE", "XDG_CACHE_HOME"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert default_cache_dir() == expected


def test_cli_packages_the_demo_clip(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "demo"
    code = cli_main(
        ["package", "--demo", str(out), "--duration-s", "2", "--demo-height", "216", "--segment-s", "2",
         "--preset", "ultrafast", "--encrypt", "--no-progress"]
    )
    assert code == 0
    assert "packaged 'demo'" in capsys.readouterr().out
    segments = load_segments_json(out)
    assert segments.encrypted and segments.segment_count == 1
    assert stat.S_IMODE(os.stat(out / "keys.json").st_mode) == 0o600


def test_variable_frame_rate_input_is_put_on_a_constant_grid(tmp_path: Path) -> None:
    path = tmp_path / "vfr.mp4"
    clip = DemoClip(DemoClipConfig(duration_s=1.0, width=128, height=72))
    present = [0, 1, 2, 3, 6, 7, 8, 9]  # slots 4 and 5 missing, as when a camera drops frames
    with av.open(str(path), "w", format="mp4") as out:
        stream = out.add_stream("libx264", rate=24)
        stream.width, stream.height, stream.pix_fmt = 128, 72, "yuv420p"
        for slot in present:
            frame = clip.video_frame(slot)
            frame.pts = slot
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    source = FileSource(path)
    assert source.info.frame_rate == 24 and (source.info.width, source.info.height) == (128, 72)
    chunks = [c for c in source.media() if isinstance(c, VideoChunk)]
    assert [c.index for c in chunks] == list(range(10))
    assert chunks[4].frame is chunks[3].frame and chunks[5].frame is chunks[3].frame  # gap filled by repeats
    assert chunks[6].frame is not chunks[3].frame


def test_audio_starting_late_is_placed_after_leading_silence(tmp_path: Path) -> None:
    class LateAudio(DemoSource):
        """The demo clip whose audio begins 0.5 s after its first video frame."""

        def media(self) -> Iterator[VideoChunk | AudioChunk]:
            for chunk in super().media():
                if isinstance(chunk, AudioChunk):
                    if chunk.time_s < 1.5:
                        yield AudioChunk(chunk.frame, chunk.time_s + 0.5)
                else:
                    yield chunk

    source = LateAudio(DemoClipConfig(duration_s=2.0, width=384, height=216))
    result = package_source(source, tmp_path / "late", PackageConfig(preset="ultrafast", segment_s=1.0), title="late")
    count = result.segments.segment_count
    data = rendition_bytes(result.title_dir, "audio", "a128k", count)
    with av.open(io.BytesIO(data), "r", format="mp4") as container:
        pcm = np.concatenate([f.to_ndarray() for f in container.decode(audio=0)], axis=1)
    pcm = pcm[:, 1024:]  # drop the encoder delay (the MPD's presentationTimeOffset)
    assert abs(pcm.shape[1] - 2 * 48_000) <= 1024  # cut or padded to the video's length
    lead = float(np.abs(pcm[:, : 23_000]).max())
    body = float(np.abs(pcm[:, 25_000:70_000]).max())
    assert lead < 0.01 < body  # silence, then the tone that was sent 0.5 s late
