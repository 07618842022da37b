"""MPD parsing: what our packager, FFmpeg's dash muxer and a DASH-IF style hand-written MPD describe
(segment URLs and timings), the template and timeline rules, and clear errors for bad input."""

from __future__ import annotations

import json
import struct
import uuid
from fractions import Fraction
from pathlib import Path
from urllib.parse import urlsplit
from urllib.request import url2pathname

import pytest

from player.client.mpd import MAX_MPD_BYTES, Manifest, MpdError, Representation, parse_mpd, parse_sidx
from server.formats.dash import CLEARKEY_SCHEME, LAURL_PLACEHOLDER
from tests.conftest import PackagedTitles
from tests.player.client.conftest import write_ffmpeg_dash

DATA = Path(__file__).parent / "data"
SIGNED_PREFIX = "http://edge.example:8080/s/tok3n.sig-Zq/demo"  # the edge's signed path prefix
W3C_COMMON_SYSTEM_ID = uuid.UUID("1077efec-c0b2-4d02-ace3-3c1e52e2fb4b")


def mpd(body: str, *, attrs: str = 'mediaPresentationDuration="PT8S" minBufferTime="PT2S"', ns: str = "") -> str:
    """A minimal static MPD around `body` (Period contents)."""
    return (
        f'<?xml version="1.0" encoding="UTF-8"?><MPD xmlns="urn:mpeg:dash:schema:mpd:2011" {ns} '
        f'type="static" {attrs}><Period>{body}</Period></MPD>'
    )


def one_rep(segment_info: str, *, rep: str = 'id="r1" bandwidth="128000"', aset: str = 'mimeType="video/mp4"') -> str:
    return mpd(f"<AdaptationSet {aset}><Representation {rep}>{segment_info}</Representation></AdaptationSet>")


SIMPLE = '<SegmentTemplate media="a" duration="8"/>'  # one 8 s segment


def with_timeline(timeline: str, media: str = "$Number$") -> str:
    return one_rep(f'<SegmentTemplate media="{media}"><SegmentTimeline>{timeline}</SegmentTimeline></SegmentTemplate>')


def only_rep(text: str, url: str = "http://h/t/manifest.mpd", **kwargs: int) -> Representation:
    manifest = parse_mpd(text, url, **kwargs)
    return manifest.periods[0].adaptation_sets[0].representations[0]


def timings(rep: Representation) -> list[tuple[int, float, float]]:
    return [(s.number, round(s.start_s, 9), round(s.duration_s, 9)) for s in rep.segments]


def path_of(url: str) -> Path:
    return Path(url2pathname(urlsplit(url).path))


# --------------------------------------------------------------------------- our packager
@pytest.fixture(scope="module")
def demo() -> Manifest:
    return parse_mpd((DATA / "abrkit_demo.mpd").read_bytes(), f"{SIGNED_PREFIX}/manifest.mpd")


def test_abrkit_demo_lists_15_numbered_segments_per_rendition_under_the_signed_prefix(demo: Manifest) -> None:
    assert (demo.type, demo.duration_s, demo.min_buffer_s, demo.max_segment_duration_s) == ("static", 60.0, 4.0, None)
    assert demo.video is not None
    reps = demo.video.representations
    assert [(r.id, r.bandwidth_bps, r.width, r.height, r.frame_rate) for r in reps] == [
        ("v216p", 315226, 384, 216, Fraction(24)),
        ("v360p", 851618, 640, 360, Fraction(24)),
    ]
    for rep in reps:
        assert rep.mime_type == "video/mp4" and rep.codecs.startswith("avc1.")
        assert rep.init is not None and rep.init.urls == (f"{SIGNED_PREFIX}/video/{rep.id}/init.mp4",)
        assert rep.segment_count == 15 and rep.segment_duration_s == 4.0
        assert [s.urls for s in rep.segments] == [(f"{SIGNED_PREFIX}/video/{rep.id}/{n}.m4s",) for n in range(1, 16)]
        assert timings(rep) == [(n, 4.0 * (n - 1), 4.0) for n in range(1, 16)]
        assert all(s.byte_range is None for s in rep.segments)


def test_abrkit_demo_audio_timeline_starts_before_zero_by_the_encoder_delay(demo: Manifest) -> None:
    assert demo.audio is not None and demo.audio.lang == "und"
    (rep,) = demo.audio.representations
    assert (rep.id, rep.audio_sampling_rate_hz, rep.codecs) == ("a128k", 48000, "mp4a.40.2")
    assert rep.presentation_time_offset_s == pytest.approx(1024 / 48000)
    first, second = rep.segments[:2]
    assert first.start_s == pytest.approx(-1024 / 48000) and first.duration_s == pytest.approx(193536 / 48000)
    assert second.start_s == pytest.approx(first.end_s) and second.duration_s == pytest.approx(191488 / 48000)
    assert rep.segments[-1].end_s == pytest.approx(60.0)
    assert rep.segment_count == 15 and rep.segment_duration_s == pytest.approx(4.0, abs=0.02)
    assert rep.segments[-1].url == f"{SIGNED_PREFIX}/audio/a128k/15.m4s"


def test_abrkit_demo_content_protection_gives_kids_license_url_and_pssh(demo: Manifest) -> None:
    assert demo.video is not None and demo.audio is not None
    video_kid, audio_kid = "56e6afbc3885b96adee6d4657f82ebaa", "3d1298503ec12c82cf20dfaedbbd2dda"
    assert demo.video.default_kids() == (video_kid,) and demo.audio.default_kids() == (audio_kid,)
    assert demo.default_kids() == (video_kid, audio_kid)
    assert demo.clearkey_laurl() == LAURL_PLACEHOLDER  # the edge rewrites it; the parser keeps it verbatim
    schemes = [p.scheme_id_uri for p in demo.video.content_protection]
    assert schemes == ["urn:mpeg:dash:mp4protection:2011", CLEARKEY_SCHEME, f"urn:uuid:{W3C_COMMON_SYSTEM_ID}"]
    cenc, clearkey, common = demo.video.content_protection
    assert cenc.value == "cenc" and cenc.default_kid == video_kid and cenc.pssh == ()
    assert clearkey.is_clearkey and clearkey.laurl == LAURL_PLACEHOLDER
    (pssh,) = common.pssh
    assert pssh == clearkey.pssh[0]
    size, box, version = struct.unpack_from(">I4sB", pssh)
    assert (size, box, version) == (len(pssh), b"pssh", 1)
    assert uuid.UUID(bytes=pssh[12:28]) == W3C_COMMON_SYSTEM_ID
    (count,) = struct.unpack_from(">I", pssh, 28)
    assert [pssh[32 + 16 * i : 48 + 16 * i].hex() for i in range(count)] == [video_kid, audio_kid]
    assert demo.video.representations[0].content_protection == demo.video.content_protection


@pytest.mark.parametrize("which", ["clear", "encrypted"])
def test_parses_what_our_packager_writes_today(packaged: PackagedTitles, which: str) -> None:
    title_dir = getattr(packaged, which).title_dir
    manifest = parse_mpd((title_dir / "manifest.mpd").read_bytes(), (title_dir / "manifest.mpd").as_uri())
    sidecar = json.loads((title_dir / "segments.json").read_text())
    for kind, aset in (("video", manifest.video), ("audio", manifest.audio)):
        assert aset is not None
        assert [r.id for r in aset.representations] == [r["id"] for r in sidecar[kind]]
        for rep, info in zip(aset.representations, sidecar[kind]):
            assert rep.segment_count == sidecar["segment_count"]
            assert [s.duration_s for s in rep.segments] == pytest.approx(info["segment_durations_s"], abs=1e-6)
            assert [path_of(s.url).stat().st_size for s in rep.segments] == info["segment_sizes_bytes"]
            assert rep.init is not None and path_of(rep.init.url).is_file()
    if which == "encrypted":
        keys = json.loads((title_dir / "keys.json").read_text())
        assert set(manifest.default_kids()) == {key["kid"] for key in keys["keys"]}
        assert manifest.clearkey_laurl() == LAURL_PLACEHOLDER
    else:
        assert manifest.default_kids() == () and manifest.clearkey_laurl() is None


# --------------------------------------------------------------------------- FFmpeg's dash muxer
def test_ffmpeg_timeline_fixture_gives_padded_numbers_and_its_timeline() -> None:
    manifest = parse_mpd((DATA / "ffmpeg_timeline.mpd").read_bytes(), "https://cdn.example/v/ff/manifest.mpd")
    assert (manifest.duration_s, manifest.min_buffer_s, manifest.max_segment_duration_s) == (5.0, 4.0, 2.0)
    assert manifest.video is not None and manifest.audio is not None
    low, high = manifest.video.representations
    assert (low.id, low.bandwidth_bps, low.width, low.frame_rate, low.mime_type) == ("0", 200000, 320, 24, "video/mp4")
    assert low.init is not None and low.init.url == "https://cdn.example/v/ff/init-stream0.m4s"
    assert [s.url for s in high.segments] == [f"https://cdn.example/v/ff/chunk-stream1-0000{n}.m4s" for n in (1, 2, 3)]
    assert timings(low) == [(1, 0.0, 2.0), (2, 2.0, 2.0), (3, 4.0, 1.0)]
    (audio,) = manifest.audio.representations
    assert timings(audio) == [
        (1, 0.0, 1.984), (2, 1.984, round(96256 / 48000, 9)), (3, round(191488 / 48000, 9), round(48128 / 48000, 9))
    ]


def test_ffmpeg_single_file_fixture_gives_byte_ranges_of_one_file() -> None:
    manifest = parse_mpd((DATA / "ffmpeg_single_file.mpd").read_bytes(), "https://cdn.example/v/ff/manifest.mpd")
    assert manifest.video is not None
    low = manifest.video.representations[0]
    assert low.base_urls == ("https://cdn.example/v/ff/manifest-stream0.mp4",)
    assert low.init is not None and low.init.byte_range == (0, 889)
    assert [(s.url, s.byte_range) for s in low.segments] == [
        ("https://cdn.example/v/ff/manifest-stream0.mp4", (890, 16604)),
        ("https://cdn.example/v/ff/manifest-stream0.mp4", (16605, 32189)),
        ("https://cdn.example/v/ff/manifest-stream0.mp4", (32190, 39965)),
    ]
    assert timings(low) == [(1, 0.0, 2.0), (2, 2.0, 2.0), (3, 4.0, 1.0)]  # the last one ends with the Period


@pytest.fixture(scope="module")
def ffmpeg_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("ffmpeg")
    write_ffmpeg_dash(base / "timeline", use_template="1", use_timeline="1")
    write_ffmpeg_dash(base / "single", use_template="0", single_file="1", global_sidx="1")
    return base


def test_ffmpeg_timeline_urls_name_exactly_the_files_it_wrote(ffmpeg_dir: Path) -> None:
    directory = ffmpeg_dir / "timeline"
    manifest = parse_mpd((directory / "manifest.mpd").read_bytes(), (directory / "manifest.mpd").as_uri())
    named = set()
    for aset in manifest.adaptation_sets():
        for rep in aset.representations:
            assert rep.init is not None and rep.segment_count >= 3
            named |= {path_of(rep.init.url)} | {path_of(s.url) for s in rep.segments}
            assert rep.segments[-1].end_s == pytest.approx(5.0, abs=0.05)
    assert named == {p for p in directory.iterdir() if p.suffix == ".m4s"}


def test_ffmpeg_single_file_ranges_tile_each_file_and_match_its_sidx(ffmpeg_dir: Path) -> None:
    directory = ffmpeg_dir / "single"
    manifest = parse_mpd((directory / "manifest.mpd").read_bytes(), (directory / "manifest.mpd").as_uri())
    assert manifest.video is not None
    for rep in manifest.video.representations:
        data = path_of(rep.base_urls[0]).read_bytes()
        assert rep.init is not None and rep.init.byte_range is not None
        ranges = [rep.init.byte_range] + [s.byte_range for s in rep.segments]
        assert ranges[0][0] == 0 and ranges[-1][1] == len(data) - 1
        assert all(a[1] + 1 == b[0] for a, b in zip(ranges, ranges[1:]))
        # The same file as SegmentBase: the global sidx sits at the end of the init range.
        sidx_at = data.index(b"sidx") - 4
        index_range = f"{sidx_at}-{rep.init.byte_range[1]}"
        as_base = only_rep(one_rep(f'<BaseURL>{rep.base_urls[0].rsplit("/", 1)[1]}</BaseURL><SegmentBase indexRange="{index_range}"/>'))
        assert as_base.segments == () and as_base.init is not None and as_base.init.byte_range == (0, sidx_at - 1)
        assert as_base.index_range is not None
        indexed = as_base.with_sidx(data[as_base.index_range[0] : as_base.index_range[1] + 1])
        assert [s.byte_range for s in indexed.segments] == [s.byte_range for s in rep.segments]
        assert [s.start_s for s in indexed.segments] == pytest.approx([0.0, 2.0, 4.0])
        assert indexed.segment_duration_s == pytest.approx(2.0)


# --------------------------------------------------------------------------- hand-written DASH-IF style
def test_dashif_ondemand_segment_base_and_failover_urls() -> None:
    manifest = parse_mpd((DATA / "dashif_ondemand.mpd").read_bytes(), "https://origin.example.com/vod/title-42.mpd")
    assert manifest.duration_s == 60.5 and manifest.min_buffer_s == 1.5
    period = manifest.periods[0]
    assert period.base_urls == (
        "https://cdn-a.example.com/vod/title-42/", "https://cdn-b.example.com/mirror/vod/title-42/"
    )
    assert manifest.video is not None
    low, high = manifest.video.representations
    assert (low.id, high.id) == ("video-480", "video-1080")  # ascending bandwidth, not document order
    assert (low.codecs, high.codecs, high.frame_rate) == ("avc1.64001f", "avc1.640028", Fraction(30000, 1001))
    assert high.base_urls == (
        "https://cdn-a.example.com/vod/title-42/video_1080p.mp4",
        "https://cdn-b.example.com/mirror/vod/title-42/video_1080p.mp4",
    )
    assert high.init is not None and (high.init.urls, high.init.byte_range) == (high.base_urls, (0, 1122))
    assert (high.index_range, high.segments, high.segment_duration_s) == ((1123, 1450), (), None)
    assert low.init is not None and low.init.byte_range == (0, 1099)  # no Initialization: what precedes the index
    assert manifest.default_kids() == ("9eb4050de44b4802932e27d75083e266",)
    assert manifest.clearkey_laurl() == "https://license.example.com/clearkey"


def test_dashif_ondemand_segment_lists_and_a_side_loaded_subtitle_file() -> None:
    manifest = parse_mpd((DATA / "dashif_ondemand.mpd").read_bytes(), "https://origin.example.com/vod/title-42.mpd")
    assert manifest.audio is not None and manifest.audio.lang == "en"
    small, big = manifest.audio.representations
    assert big.audio_sampling_rate_hz == 48000 and big.segment_duration_s == 10.0
    assert timings(big) == [(n, 10.0 * (n - 1), 10.0) for n in range(1, 7)] + [(7, 60.0, 0.5)]
    assert big.segments[0].byte_range == (700, 160999) and big.segments[-1].byte_range == (962500, 970499)
    assert big.segments[3].urls == big.base_urls
    assert timings(small) == [(0, 0.0, 20.0), (1, 20.0, 20.0), (2, 40.0, 20.0), (3, 60.0, 0.5)]
    assert small.segments[2].urls == (
        "https://cdn-a.example.com/vod/title-42/audio_en_64k/2.m4s",
        "https://cdn-b.example.com/mirror/vod/title-42/audio_en_64k/2.m4s",
    )
    assert small.init is not None and small.init.url == "https://cdn-a.example.com/vod/title-42/audio_en_64k/init.mp4"
    subtitles = manifest.periods[0].first_of("text")
    assert subtitles is not None and subtitles.lang == "fr"
    (track,) = subtitles.representations
    assert [(s.urls, s.start_s, s.duration_s) for s in track.segments] == [
        (("https://subs.example.com/title-42/fr.vtt",), 0.0, 60.5)  # an absolute BaseURL: one choice left
    ]


def test_multiperiod_template_fixture() -> None:
    manifest = parse_mpd((DATA / "multiperiod_template.mpd").read_bytes(), "https://o.example/s/t0k/x/manifest.mpd")
    preroll, main = manifest.periods
    assert (preroll.id, preroll.start_s, preroll.duration_s) == ("preroll", 0.0, 5.0)
    assert (main.id, main.start_s, main.duration_s) == ("main", 5.0, 20.0)  # start from the previous duration
    assert manifest.video is preroll.video and manifest.audio is None  # accessors look at the first Period
    assert preroll.video is not None
    low, high = preroll.video.representations
    assert (low.codecs, high.codecs) == ("avc1.4d401e", "avc1.4d401f")
    assert [s.url for s in low.segments] == [f"https://o.example/s/t0k/x/ads/ad-low/seg_0000{n}.m4s" for n in (0, 1, 2)]
    assert timings(high) == [(10, 0.0, 2.0), (11, 2.0, 2.0), (12, 4.0, 1.0)]  # startNumber overridden
    assert main.video is not None and main.audio is not None
    rep = main.video.representations[1]
    assert (rep.id, rep.frame_rate, rep.presentation_time_offset_s) == ("main-720", 25, 10.0)
    assert rep.init is not None and rep.init.url == "https://o.example/s/t0k/x/main/3000000/init.mp4"
    assert timings(rep) == [(1, 5.0, 4.0), (2, 9.0, 4.0), (3, 13.0, 4.0), (4, 17.0, 2.0), (5, 19.0, 2.0),
                            (6, 21.0, 2.0), (7, 23.0, 2.0)]
    assert rep.segments[3].url == "https://o.example/s/t0k/x/main/3000000/1980000.m4s?price=$5"
    assert timings(main.audio.representations[0]) == [(n, 5.0 + 4.0 * (n - 1), 4.0) for n in (1, 2, 3, 4)]


# --------------------------------------------------------------------------- SegmentTemplate rules
@pytest.mark.parametrize(
    ("media", "url"),
    [
        ("$RepresentationID$/$Number$.m4s", "v1/42.m4s"),
        ("seg-$Number%05d$.m4s", "seg-00042.m4s"),
        ("seg-$Number%02d$.m4s", "seg-42.m4s"),
        ("seg-$Number%03d$.m4s", "seg-042.m4s"),
        ("t$Time$.m4s", "t90000.m4s"),
        ("$Bandwidth$/$Time%012d$", "128000/000000090000"),
        ("a$$b$$$Number$", "a$b$42"),
        ("plain.mp4", "plain.mp4"),
    ],
)
def test_template_identifiers_and_width_formats(media: str, url: str) -> None:
    rep = only_rep(
        one_rep(
            f'<SegmentTemplate media="{media}" startNumber="42" timescale="1000">'
            '<SegmentTimeline><S t="90000" d="2000"/></SegmentTimeline></SegmentTemplate>',
            rep='id="v1" bandwidth="128000"',
        )
    )
    assert rep.segments[0].url == f"http://h/t/{url}"


@pytest.mark.parametrize(
    ("template", "message"),
    [
        ('media="$Number.m4s"', "unpaired '$'"),
        ('media="$Numbr$.m4s"', "unknown identifier $Numbr$"),
        ('media="$SubNumber$.m4s"', "unknown identifier $SubNumber$"),
        ('media="$RepresentationID%05d$.m4s"', "bad format tag"),
        ('media="$Number%0100d$.m4s"', "bad format tag"),
        ('media="$Number%5d$.m4s"', "unknown identifier"),
        ('media="$Number$" initialization="init-$Number$.mp4"', "@initialization may not use $Number$"),
        ('initialization="init.mp4"', "@media is missing"),
    ],
)
def test_bad_templates_are_named(template: str, message: str) -> None:
    with pytest.raises(MpdError, match="SegmentTemplate") as error:
        parse_mpd(one_rep(f'<SegmentTemplate duration="2" {template}/>'), "http://h/m.mpd")
    assert message in str(error.value)


def test_duration_template_counts_ceil_of_period_over_duration_and_cuts_the_last() -> None:
    template = '<SegmentTemplate media="$Number$-$Time$" timescale="10" duration="30" presentationTimeOffset="7"/>'
    rep = only_rep(one_rep(template))
    assert timings(rep) == [(1, 0.0, 3.0), (2, 3.0, 3.0), (3, 6.0, 2.0)]  # 8 s / 3 s -> 3 segments
    assert [s.url.rsplit("/", 1)[1] for s in rep.segments] == ["1-7", "2-37", "3-67"]
    assert rep.segment_duration_s == 3.0 and rep.presentation_time_offset_s == 0.7


def test_duration_template_end_number_caps_the_count() -> None:
    rep = only_rep(one_rep('<SegmentTemplate media="$Number$" duration="1" startNumber="5" endNumber="7"/>'))
    assert [s.number for s in rep.segments] == [5, 6, 7]


def test_template_without_duration_or_timeline_is_one_segment_spanning_the_period() -> None:
    rep = only_rep(one_rep('<SegmentTemplate media="all.mp4"/>'))
    assert timings(rep) == [(1, 0.0, 8.0)]


@pytest.mark.parametrize(
    ("timeline", "expected"),
    [
        ('<S t="0" d="2" r="2"/>', [(1, 0, 2), (2, 2, 2), (3, 4, 2)]),
        ('<S d="2"/><S d="3" r="1"/>', [(1, 0, 2), (2, 2, 3), (3, 5, 3)]),
        ('<S t="0" d="2" r="-1"/><S t="5" d="3"/>', [(1, 0, 2), (2, 2, 2), (3, 4, 1), (4, 5, 3)]),  # up to S@t
        ('<S t="0" d="3" r="-1"/>', [(1, 0, 3), (2, 3, 3), (3, 6, 2)]),  # to the Period end (8 s) exactly
        ('<S t="0" d="3" r="2"/>', [(1, 0, 3), (2, 3, 3), (3, 6, 3)]),  # as written, even past the Period end
        ('<S t="0" d="2"/><S t="6" d="2"/>', [(1, 0, 2), (2, 6, 2)]),  # a gap keeps the absolute @t
        ('<S t="0" d="2" r="1"/><S n="10" d="2"/>', [(1, 0, 2), (2, 2, 2), (10, 4, 2)]),  # @n renumbers
    ],
)
def test_timeline_rules(timeline: str, expected: list[tuple[int, float, float]]) -> None:
    rep = only_rep(with_timeline(timeline))
    assert timings(rep) == expected


@pytest.mark.parametrize(
    ("timeline", "message"),
    [
        ('<S t="4" d="2"/><S t="5" d="2"/>', "@t=5 starts before the previous segment ends (6)"),
        ('<S t="0" d="2" r="-1"/><S d="2"/>', "needs the next S to have @t"),
        ('<S t="4" d="2" r="-1"/><S t="4" d="2"/>', "not after @t=4"),
        ('<S t="0" d="0"/>', "@d='0' is out of range"),
        ('<S t="0"/>', "the required attribute @d is missing"),
        ('<S t="0" d="2" r="1.5"/>', "@r='1.5' is not a whole number"),
        ("", "has no S element"),
    ],
)
def test_bad_timelines_are_named(timeline: str, message: str) -> None:
    with pytest.raises(MpdError, match="SegmentTimeline") as error:
        parse_mpd(with_timeline(timeline), "http://h/m.mpd")
    assert message in str(error.value)


def test_segment_template_is_inherited_from_period_to_representation_child_overriding() -> None:
    text = mpd(
        '<SegmentTemplate timescale="1000" media="p/$RepresentationID$/$Number$" startNumber="0">'
        '<SegmentTimeline><S d="4000" r="1"/></SegmentTimeline></SegmentTemplate>'
        '<AdaptationSet mimeType="video/mp4" codecs="avc1.4d401f" frameRate="30000/1001" width="640">'
        '<SegmentTemplate initialization="a/$RepresentationID$/init"/>'
        '<Representation id="r1" bandwidth="1000" height="360"/>'
        '<Representation id="r2" bandwidth="2000" codecs="avc1.640028">'
        '<SegmentTemplate media="r/$Number$" startNumber="7"><SegmentTimeline><S d="2000" r="3"/></SegmentTimeline>'
        "</SegmentTemplate></Representation>"
        "</AdaptationSet>"
    )
    manifest = parse_mpd(text, "http://h/t/m.mpd")
    assert manifest.video is not None
    first, second = manifest.video.representations
    assert [s.url for s in first.segments] == ["http://h/t/p/r1/0", "http://h/t/p/r1/1"]
    assert first.init is not None and first.init.url == "http://h/t/a/r1/init"
    assert (first.codecs, first.frame_rate) == ("avc1.4d401f", Fraction(30000, 1001))
    assert (first.width, first.height) == (640, 360)
    assert timings(second) == [(7, 0.0, 2.0), (8, 2.0, 2.0), (9, 4.0, 2.0), (10, 6.0, 2.0)]
    assert second.segments[0].url == "http://h/t/r/7" and second.codecs == "avc1.640028"
    assert second.init is not None and second.init.url == "http://h/t/a/r2/init"


# --------------------------------------------------------------------------- BaseURL
def test_base_urls_combine_across_levels_as_ordered_failover_choices() -> None:
    text = (
        '<MPD xmlns="urn:mpeg:dash:schema:mpd:2011" minBufferTime="PT2S" mediaPresentationDuration="PT4S">'
        "<BaseURL>http://a.example/x/</BaseURL><BaseURL>http://b.example/y/</BaseURL>"
        "<Period><BaseURL>p1/</BaseURL><BaseURL>p2/</BaseURL><AdaptationSet mimeType='audio/mp4'>"
        "<Representation id='r' bandwidth='1'><SegmentTemplate media='s$Number$.m4s' duration='4'/>"
        "</Representation></AdaptationSet></Period></MPD>"
    )
    rep = only_rep(text)
    assert rep.segments[0].urls == (
        "http://a.example/x/p1/s1.m4s",
        "http://a.example/x/p2/s1.m4s",
        "http://b.example/y/p1/s1.m4s",
        "http://b.example/y/p2/s1.m4s",
    )


@pytest.mark.parametrize(
    ("mpd_url", "base", "media", "url"),
    [
        ("http://edge/s/T0K/t/manifest.mpd", "", "v/1.m4s", "http://edge/s/T0K/t/v/1.m4s"),
        ("http://edge/s/T0K/t/manifest.mpd", "video/", "../a/1.m4s", "http://edge/s/T0K/t/a/1.m4s"),
        ("http://edge/s/T0K/t/manifest.mpd?x=1", "", "v/1.m4s", "http://edge/s/T0K/t/v/1.m4s"),  # RFC 3986 5.2.2
        ("http://edge/s/T0K/t/manifest.mpd", "", "/v/1.m4s", "http://edge/v/1.m4s"),  # root-relative leaves it
        ("http://edge/s/T0K/t/manifest.mpd", "https://cdn/z/", "v/1.m4s", "https://cdn/z/v/1.m4s"),
        ("http://edge/s/T0K/t/manifest.mpd", "", "https://other/1.m4s", "https://other/1.m4s"),
    ],
)
def test_relative_urls_resolve_per_rfc3986_keeping_a_signed_path_prefix(
    mpd_url: str, base: str, media: str, url: str
) -> None:
    base_xml = f"<BaseURL>{base}</BaseURL>" if base else ""
    rep = only_rep(one_rep(f'{base_xml}<SegmentTemplate media="{media}" duration="8"/>'), mpd_url)
    assert rep.segments[0].urls == (url,)


def test_too_many_base_url_choices_is_an_error() -> None:
    many = "".join(f"<BaseURL>http://c{i}.example/</BaseURL>" for i in range(17))
    with pytest.raises(MpdError, match="17 BaseURL elements"):
        parse_mpd(one_rep(f'{many}<SegmentTemplate media="a" duration="8"/>'), "http://h/m.mpd")


# --------------------------------------------------------------------------- attributes
@pytest.mark.parametrize(
    ("value", "rate"),
    [("24", Fraction(24)), ("30000/1001", Fraction(30000, 1001)), ("25/1", Fraction(25)), ("29.97", Fraction("29.97"))],
)
def test_frame_rates(value: str, rate: Fraction) -> None:
    rep = only_rep(one_rep(SIMPLE, rep=f'id="r" bandwidth="1" frameRate="{value}"'))
    assert rep.frame_rate == rate


@pytest.mark.parametrize("value", ["0", "1/0", "abc", "-24", "24/", "100000", "1e3"])
def test_bad_frame_rates_are_named(value: str) -> None:
    with pytest.raises(MpdError, match=f"@frameRate='{value}'"):
        parse_mpd(one_rep(SIMPLE, rep=f'id="r" bandwidth="1" frameRate="{value}"'), "http://h/m.mpd")


@pytest.mark.parametrize(
    ("aset", "rep", "content_type"),
    [
        ('contentType="audio" mimeType="video/mp4"', "", "audio"),
        ('mimeType="video/mp4"', "", "video"),
        ("", 'mimeType="audio/mp4"', "audio"),
        ('mimeType="application/mp4" codecs="stpp.ttml.im1t"', "", "text"),
        ('mimeType="application/ttml+xml"', "", "text"),
        ("", 'codecs="ec-3"', "audio"),
        ("", 'codecs="hvc1.2.4.L153.B0"', "video"),
        ('mimeType="image/jpeg"', "", "image"),
        ("", "", "other"),
    ],
)
def test_content_type_is_inferred(aset: str, rep: str, content_type: str) -> None:
    manifest = parse_mpd(one_rep(SIMPLE, aset=aset, rep=f'id="r" bandwidth="1" {rep}'), "http://h/m.mpd")
    assert manifest.periods[0].adaptation_sets[0].content_type == content_type


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (one_rep(SIMPLE, rep='id="r"'), "@bandwidth is missing"),
        (one_rep(SIMPLE, rep='id="r" bandwidth="0"'), "@bandwidth='0' is out of range"),
        (one_rep(SIMPLE, rep='bandwidth="5"'), "@id is missing"),
        (one_rep(SIMPLE, rep='id="r" bandwidth="5" width="100000"'), "@width='100000'"),
        (one_rep('<SegmentTemplate media="a" duration="8" timescale="0"/>'), "@timescale='0' is out of range"),
        (one_rep('<SegmentTemplate media="a" duration="0"/>'), "@duration='0' is out of range"),
        (one_rep('<SegmentTemplate media="a" duration="-4"/>'), "@duration='-4' is not an unsigned integer"),
        (one_rep('<SegmentTemplate media="a" duration="8"/><SegmentBase/>'), "on the same element"),
        (one_rep(SIMPLE + SIMPLE), "more than one"),
        (one_rep("<SegmentBase indexRange='9-1'/>"), "no BaseURL names its media"),
        (one_rep("<BaseURL>f.mp4</BaseURL><SegmentBase indexRange='9-1'/>"), "@indexRange='9-1' is not a byte range"),
        (one_rep("<BaseURL>f.mp4</BaseURL><SegmentList duration='2'/>"), "has no SegmentURL"),
        (one_rep("<SegmentList><SegmentURL media='a'/><SegmentURL media='b'/></SegmentList>"), "need @duration"),
        (
            one_rep(
                "<SegmentList><SegmentTimeline><S d='1'/></SegmentTimeline>"
                "<SegmentURL media='a'/><SegmentURL media='b'/></SegmentList>"
            ),
            "2 SegmentURLs but the SegmentTimeline has 1",
        ),
        (one_rep("<SegmentList duration='1'><SegmentURL mediaRange='x'/></SegmentList>"), "@mediaRange='x'"),
        (mpd("", attrs='minBufferTime="PT2S" mediaPresentationDuration="-PT5S"'), "@mediaPresentationDuration='-PT5S'"),
        (mpd("", attrs='minBufferTime="PT2S" mediaPresentationDuration="PT0S"'), "must be greater than zero"),
        (mpd("", attrs='minBufferTime="PT2S" mediaPresentationDuration="P99999999999Y"'), "longer than"),
        (mpd("", attrs='minBufferTime="PT2S" mediaPresentationDuration="5s"'), "is not a non-negative xs:duration"),
        (mpd("", attrs='mediaPresentationDuration="PT8S"'), "@minBufferTime is missing"),
        (mpd("").replace('type="static"', 'type="live"'), "MPD@type='live'"),
        (mpd("<AdaptationSet/>"), "AdaptationSet[0]: has no Representation"),
        (
            mpd('<AdaptationSet><Representation id="a" bandwidth="1"><BaseURL>x</BaseURL></Representation>'
                '<Representation id="a" bandwidth="2"><BaseURL>y</BaseURL></Representation></AdaptationSet>'),
            "@id='a' is used twice",
        ),
        (
            one_rep(SIMPLE).replace("<Representation", "<ContentProtection/><Representation", 1),
            "ContentProtection[0]: the required attribute @schemeIdUri is missing",
        ),
        (
            one_rep(SIMPLE, aset='xmlns:cenc="urn:mpeg:cenc:2013"').replace(
                "<Representation", '<ContentProtection schemeIdUri="x" cenc:default_KID="nope"/><Representation', 1),
            "@cenc:default_KID='nope' is not a UUID",
        ),
        (
            one_rep(SIMPLE, aset='xmlns:cenc="urn:mpeg:cenc:2013"').replace(
                "<Representation",
                '<ContentProtection schemeIdUri="x"><cenc:pssh>!!</cenc:pssh></ContentProtection><Representation',
                1,
            ),
            "cenc:pssh: is not base64",
        ),
    ],
)
def test_bad_values_give_an_mpd_error_naming_them(text: str, message: str) -> None:
    with pytest.raises(MpdError) as error:
        parse_mpd(text, "http://h/m.mpd")
    assert message in str(error.value)


def test_periods_out_of_order_or_unplaceable_are_errors() -> None:
    base = '<MPD xmlns="urn:mpeg:dash:schema:mpd:2011" minBufferTime="PT2S">{}</MPD>'
    with pytest.raises(MpdError, match=r"Period\[1\]: @start=1.0 s is before"):
        parse_mpd(base.format('<Period start="PT5S"/><Period start="PT1S"/>'), "http://h/m.mpd")
    with pytest.raises(MpdError, match=r"Period\[1\]: has no @start and the previous Period has no @duration"):
        parse_mpd(base.format("<Period/><Period/>"), "http://h/m.mpd")
    with pytest.raises(MpdError, match="MPD has no Period"):
        parse_mpd(base.format(""), "http://h/m.mpd")


def test_live_duration_templates_name_segments_on_demand() -> None:
    text = one_rep('<SegmentTemplate media="$Number$" duration="2"/>').replace(
        'type="static" mediaPresentationDuration="PT8S"', 'type="dynamic" availabilityStartTime="2024-01-01T00:00:00Z"'
    )
    rep = parse_mpd(text, "http://h/m.mpd").periods[0].adaptation_sets[0].representations[0]
    assert rep.segments == () and rep.live is not None and rep.live.ref(5).url == "http://h/5"
    static = one_rep('<SegmentTemplate media="$Number$" duration="2"/>').replace(
        ' mediaPresentationDuration="PT8S"', "")
    with pytest.raises(MpdError, match="needs a known Period duration"):
        parse_mpd(static, "http://h/m.mpd")  # a static MPD without a duration stays an error


def test_dynamic_timeline_mpd_parses_with_its_live_attributes() -> None:
    text = with_timeline('<S t="100" d="2" r="2"/>', media="$Time$").replace(
        'type="static" mediaPresentationDuration="PT8S"',
        'type="dynamic" availabilityStartTime="2024-01-01T00:00:00Z" minimumUpdatePeriod="PT2S" '
        'timeShiftBufferDepth="PT30S"',
    )
    manifest = parse_mpd(text, "http://h/m.mpd")
    assert (manifest.type, manifest.duration_s, manifest.periods[0].duration_s) == ("dynamic", None, None)
    assert manifest.availability_start_time is not None and manifest.availability_start_time.year == 2024
    assert (manifest.minimum_update_period_s, manifest.time_shift_buffer_depth_s) == (2.0, 30.0)
    assert [s.url for s in manifest.periods[0].adaptation_sets[0].representations[0].segments] == [
        "http://h/100", "http://h/102", "http://h/104"
    ]


# --------------------------------------------------------------------------- hostile input
GOOD = (DATA / "abrkit_demo.mpd").read_text()


@pytest.mark.parametrize(
    "text",
    [
        '<?xml version="1.0"?><!DOCTYPE MPD [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
        '<MPD xmlns="urn:mpeg:dash:schema:mpd:2011">&x;</MPD>',
        '<?xml version="1.0"?><!DOCTYPE MPD [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">'
        '<!ENTITY c "&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;">]><MPD xmlns="urn:mpeg:dash:schema:mpd:2011" a="&c;"/>',
        '<?xml version="1.0"?><!DOCTYPE MPD SYSTEM "http://evil.example/mpd.dtd">'
        '<MPD xmlns="urn:mpeg:dash:schema:mpd:2011"/>',
        '<?xml version="1.0"?><!DOCTYPE MPD [<!ENTITY % p SYSTEM "http://evil.example/p">%p;]><MPD/>',
        GOOD.replace("<MPD ", '<!DOCTYPE MPD [<!ENTITY t "demo">]><MPD ', 1).replace("<Title>demo", "<Title>&t;"),
    ],
    ids=["xxe", "billion-laughs", "external-dtd", "parameter-entity", "harmless-entity"],
)
def test_any_dtd_is_refused(text: str) -> None:
    with pytest.raises(MpdError, match="DTD"):
        parse_mpd(text, "http://h/m.mpd")


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (GOOD.encode().replace(b"<Title>demo", b"<Title>d\xe9mo"), "not valid UTF-8"),
        (GOOD.replace("encoding='utf-8'", "encoding='iso-8859-1'").encode(), "declares encoding 'iso-8859-1'"),
        (GOOD.encode("utf-16"), "not valid UTF-8"),
        (GOOD.replace("<Title>demo", "<Title>\ud800"), "not valid in UTF-8"),
        (GOOD.replace("urn:mpeg:dash:schema:mpd:2011", "urn:mpeg:DASH:schema:MPD:2011"), "expected MPD in namespace"),
        (GOOD.replace('xmlns="urn:mpeg:dash:schema:mpd:2011" ', ""), "the root element is 'MPD'"),
        ('<html xmlns="urn:mpeg:dash:schema:mpd:2011"/>', "the root element is"),
        ("", "not well-formed"),
        ("\x00", "not well-formed"),
        (GOOD[: len(GOOD) // 2], "not well-formed"),
        (GOOD[:-2], "not well-formed"),
        (GOOD + "<MPD/>", "not well-formed"),
        (b"\xef\xbb\xbf" + b" " * (MAX_MPD_BYTES + 1), "more than the"),
    ],
    ids=["latin1-bytes", "latin1-declared", "utf16", "surrogate", "old-namespace", "no-namespace", "wrong-root",
         "empty", "nul", "truncated-half", "truncated-end", "two-roots", "oversized"],
)
def test_malformed_documents_give_clear_errors(data: str | bytes, message: str) -> None:
    with pytest.raises(MpdError) as error:
        parse_mpd(data, "http://h/m.mpd")
    assert message in str(error.value)


def test_byte_order_mark_is_accepted() -> None:
    manifest = parse_mpd(b"\xef\xbb\xbf" + GOOD.encode(), "http://h/demo/manifest.mpd")
    assert manifest.video is not None and manifest.video.representations[0].segment_count == 15


def test_a_relative_mpd_url_or_a_non_text_input_is_refused() -> None:
    with pytest.raises(MpdError, match="must be absolute"):
        parse_mpd(GOOD, "demo/manifest.mpd")
    with pytest.raises(MpdError, match="must be str or bytes"):
        parse_mpd(42, "http://h/m.mpd")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "mutation",
    [
        ('r="14"', 'r="999999999"'),
        ('r="14"', 'r="2147483647"'),
        ('<S t="0" d="49152" r="14" />', '<S t="0" d="1" r="-1" />'),  # 737,280 ticks of 1 to the Period end
    ],
)
def test_huge_segment_counts_stop_at_the_budget_before_expanding(mutation: tuple[str, str]) -> None:
    with pytest.raises(MpdError, match="beyond the budget"):
        parse_mpd(GOOD.replace(*mutation), "http://h/m.mpd")


def test_duration_templates_over_a_huge_period_stop_at_the_budget() -> None:
    text = one_rep('<SegmentTemplate media="$Number$" duration="1"/>').replace("PT8S", "P20Y")
    with pytest.raises(MpdError, match="beyond the budget"):
        parse_mpd(text, "http://h/m.mpd")


def test_max_segment_urls_is_the_budget_for_the_whole_mpd() -> None:
    assert sum(r.segment_count for a in parse_mpd(GOOD, "http://h/m.mpd", max_segment_urls=45).adaptation_sets()
               for r in a.representations) == 45
    with pytest.raises(MpdError, match="beyond the budget"):
        parse_mpd(GOOD, "http://h/m.mpd", max_segment_urls=44)


# --------------------------------------------------------------------------- sidx
def sidx_box(references: list[tuple[int, int]], *, version: int = 0, first_offset: int = 0, earliest: int = 0,
             timescale: int = 1000, hierarchical: bool = False) -> bytes:
    """A sidx box (ISO/IEC 14496-12 8.16.3) indexing (size_bytes, duration_ticks) references."""
    times = struct.pack(">II" if version == 0 else ">QQ", earliest, first_offset)
    body = struct.pack(">B3xII", version, 1, timescale) + times + struct.pack(">HH", 0, len(references))
    for size, duration in references:
        body += struct.pack(">III", (1 << 31 if hierarchical else 0) | size, duration, 0x9000_0000)
    return struct.pack(">I4s", 8 + len(body), b"sidx") + body


@pytest.mark.parametrize("version", [0, 1])
def test_parse_sidx_gives_absolute_ranges_and_times(version: int) -> None:
    box = sidx_box([(1000, 2000), (1500, 2000), (700, 1000)], version=version, first_offset=10, earliest=500)
    data = struct.pack(">I4s", 12, b"free") + b"\0" * 4 + box  # a box before the sidx is skipped
    segments = parse_sidx(data, 5000, urls=("http://h/f.mp4",), start_s=-0.5)
    anchor = 5000 + len(data) + 10
    assert [s.byte_range for s in segments] == [
        (anchor, anchor + 999), (anchor + 1000, anchor + 2499), (anchor + 2500, anchor + 3199)
    ]
    assert [(s.number, s.start_s, s.duration_s) for s in segments] == [(1, 0.0, 2.0), (2, 2.0, 2.0), (3, 4.0, 1.0)]
    assert all(s.urls == ("http://h/f.mp4",) for s in segments)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (sidx_box([(10, 10)], hierarchical=True), "hierarchical"),
        (sidx_box([(10, 10), (10, 10)])[:-12], "truncated"),
        (sidx_box([(10, 10)], timescale=0), "timescale is 0"),
        (sidx_box([(0, 10)]), "size 0"),
        (struct.pack(">I4s", 8, b"free"), "no sidx box"),
        (struct.pack(">I4s", 100, b"moov"), "truncated or has a bad size"),
        (b"", "no sidx box"),
    ],
)
def test_bad_sidx_is_an_mpd_error(data: bytes, message: str) -> None:
    with pytest.raises(MpdError, match=message):
        parse_sidx(data, 0)


def test_with_sidx_needs_an_index_range(demo: Manifest) -> None:
    assert demo.video is not None
    with pytest.raises(MpdError, match="no SegmentBase@indexRange"):
        demo.video.representations[0].with_sidx(b"")
