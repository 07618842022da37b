"""Hostile-input fuzzing of the HLS playlist reader (hypothesis): mutations of real playlists
(FFmpeg's, Shaka Packager's, ours) give a playlist and a manifest, or an HlsError, never another
exception, a hang or a memory blowup; generated valid playlists parse as m3u8 (an independent
parser) reads them."""

from __future__ import annotations

import math
import re
import tracemalloc
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlsplit

import m3u8
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from player.client.hls import HlsError, MasterPlaylist, MediaPlaylist, Track, build_manifest, parse_playlist
from player.client.hls.manifest import audio_renditions, video_variants
from server.packaging.hls import media_playlist

DATA = Path(__file__).parent / "data" / "hls"
SEEDS = {p.name: p.read_text() for p in sorted(DATA.glob("*.m3u8"))}
SEEDS["abrkit_encrypted.m3u8"] = media_playlist((4.0, 4.0, 1.5), kid=bytes(range(16)))
URL = "http://edge.example/s/tok3n/demo/video/v1/playlist.m3u8"
BUDGET = 5_000

FUZZ = settings(deadline=timedelta(seconds=5), database=None, suppress_health_check=[HealthCheck.too_slow])

NASTY = (
    "", " ", "0", "-0", "-1", "1e309", "nan", "inf", "18446744073709551616", "9" * 400, "0x", "0x" + "f" * 40,
    "2.5", "1@", "@1", "10@0", "0@0", "4294967296@18446744073709551616", '"', '""', '"unclosed', "a,b", "YES", "NO",
    "AES-128", "SAMPLE-AES", "SAMPLE-AES-CTR", "NONE", '"org.w3.clearkey"', '"identity"', '"data:text/plain;base64,AA=="',
    '"file:///etc/passwd"', '"//evil.example/x"', '"../../../../x"', '"http://[::1"', "1920x1080", "0x0", "99999x1",
)
TAGS = (
    "#EXTINF:{v},", "#EXT-X-BYTERANGE:{v}", "#EXT-X-KEY:METHOD={v},URI=\"k\"", "#EXT-X-KEY:METHOD=AES-128,URI={v}",
    "#EXT-X-KEY:METHOD=SAMPLE-AES,URI=\"data:,x\",KEYID={v}", "#EXT-X-MAP:URI={v}", "#EXT-X-MAP:URI=\"i\",BYTERANGE={v}",
    "#EXT-X-DISCONTINUITY", "#EXT-X-ENDLIST", "#EXT-X-MEDIA-SEQUENCE:{v}", "#EXT-X-TARGETDURATION:{v}",
    "#EXT-X-STREAM-INF:BANDWIDTH={v}", "#EXT-X-STREAM-INF:BANDWIDTH=1,RESOLUTION={v}",
    "#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID=\"a\",NAME=\"n\",URI={v}", "#EXT-X-PLAYLIST-TYPE:{v}", "{v}", "#{v}",
)
values = st.one_of(st.sampled_from(NASTY), st.integers(-(2**70), 2**70).map(str), st.text(max_size=30))


def check(text: str | bytes, *, budget: int = BUDGET) -> None:
    """Parses and maps; an HlsError is a fine outcome, any other exception fails the test."""
    try:
        playlist = parse_playlist(text, URL, max_segments=budget)
    except HlsError as error:
        assert str(error) and "\n" not in str(error)
        event("HlsError (parse)")
        return
    if isinstance(playlist, MasterPlaylist):
        assert playlist.variants and all(v.bandwidth_bps > 0 for v in playlist.variants)
        try:
            variants = video_variants(playlist)
            audio_renditions(playlist, variants)
        except HlsError:
            event("HlsError (master)")
            return
        event("master")
        return
    assert isinstance(playlist, MediaPlaylist) and 0 < len(playlist.segments) <= budget
    try:
        manifest = build_manifest(URL, [Track(id="v", kind="video", bandwidth_bps=1, playlist=playlist)])
    except HlsError as error:
        assert str(error) and "\n" not in str(error)
        event("HlsError (mapping)")
        return
    event("Manifest")
    previous = -math.inf
    for period in manifest.periods:
        for rep in period.adaptation_sets[0].representations:
            for segment in rep.segments:
                assert urlsplit(segment.url).scheme in ("http", "https")
                assert math.isfinite(segment.start_s) and segment.start_s >= previous
                assert math.isfinite(segment.duration_s) and segment.duration_s > 0
                if segment.byte_range is not None:
                    assert 0 <= segment.byte_range[0] <= segment.byte_range[1]
                if segment.cipher is not None:
                    assert len(segment.cipher.iv) == 16
                previous = segment.start_s
    if manifest.type == "dynamic":  # a live playlist (no EXT-X-ENDLIST): open-ended, reloaded as it plays
        assert not playlist.ended and manifest.duration_s is None and manifest.minimum_update_period_s
    else:
        assert manifest.duration_s is not None and math.isfinite(manifest.duration_s)


@st.composite
def mutated(draw: st.DrawFn) -> str:
    """A seed playlist with 1 to 4 line-level mutations."""
    lines = SEEDS[draw(st.sampled_from(sorted(SEEDS)))].splitlines()
    for _ in range(draw(st.integers(1, 4))):
        at = draw(st.integers(0, len(lines)))
        action = draw(st.sampled_from(["insert", "insert", "replace", "delete", "duplicate", "attribute"]))
        if action == "insert":
            lines.insert(at, draw(st.sampled_from(TAGS)).format(v=draw(values)))
        elif action == "replace" and lines:
            lines[min(at, len(lines) - 1)] = draw(st.sampled_from(TAGS)).format(v=draw(values))
        elif action == "delete" and len(lines) > 1:
            del lines[min(at, len(lines) - 1)]
        elif action == "duplicate" and lines:
            lines.insert(at, lines[min(at, len(lines) - 1)])
        elif action == "attribute" and lines:
            index = min(at, len(lines) - 1)
            # replace one attribute value (or the tag value) of a line with a nasty one
            lines[index] = re.sub(r"(=|:)([^,]*)", lambda m: m.group(1) + draw(values), lines[index], count=1)
    return "\n".join(lines) + draw(st.sampled_from(["\n", "", "\r\n"]))


@settings(FUZZ, max_examples=400)
@given(mutated())
def test_mutated_playlists_give_a_manifest_or_hls_error(text: str) -> None:
    check(text)


@settings(FUZZ, max_examples=100)
@given(st.sampled_from(sorted(SEEDS)), st.floats(0.0, 1.0))
def test_truncation_at_any_point_gives_a_manifest_or_hls_error(seed: str, where: float) -> None:
    data = SEEDS[seed].encode()
    check(data[: int(where * len(data))])


@settings(FUZZ, max_examples=100)
@given(st.sampled_from(sorted(SEEDS)), st.lists(st.tuples(st.floats(0.0, 1.0), st.binary(min_size=1, max_size=8)),
                                                 min_size=1, max_size=4))
def test_byte_splices_give_a_manifest_or_hls_error(seed: str, splices: list[tuple[float, bytes]]) -> None:
    data = bytearray(SEEDS[seed].encode())
    for where, junk in splices:
        at = int(where * (len(data) - 1))
        data[at : at + len(junk)] = junk
    check(bytes(data))


@settings(FUZZ, max_examples=30)
@given(st.sampled_from(["#EXTINF:2,\na.ts\n", "#EXT-X-STREAM-INF:BANDWIDTH=1\nv.m3u8\n", "#EXTINF:1,\n",
                        '#EXT-X-KEY:METHOD=AES-128,URI="' + "k" * 60_000 + '"\n', "#" + "x" * 60_000 + "\n",
                        '#EXT-X-MAP:URI="' + '"' * 30_000 + "\n"]),
       st.integers(1, 200_000))
def test_huge_playlists_are_refused_quickly_with_bounded_memory(unit: str, repeats: int) -> None:
    text = "#EXTM3U\n" + unit * max(1, min(repeats, 4 * 1024 * 1024 // len(unit) + 2))
    tracemalloc.start()
    try:
        check(text, budget=2_000)
        _, peak_bytes = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak_bytes < 64 * 1024 * 1024


durations = st.floats(0.001, 20.0, allow_nan=False).map(lambda d: round(d, 3))


@st.composite
def valid_media_playlists(draw: st.DrawFn) -> str:
    """Valid VOD media playlists with byte ranges, discontinuities, keys and maps."""
    lines = ["#EXTM3U", "#EXT-X-VERSION:7", f"#EXT-X-TARGETDURATION:{draw(st.integers(1, 20))}",
             f"#EXT-X-MEDIA-SEQUENCE:{draw(st.integers(0, 10**6))}", '#EXT-X-MAP:URI="init.mp4"']
    offset = 0
    for index in range(draw(st.integers(1, 30))):
        if draw(st.booleans()) and index:
            lines.append("#EXT-X-DISCONTINUITY")
        if draw(st.integers(0, 5)) == 0:
            lines.append(f'#EXT-X-KEY:METHOD=AES-128,URI="keys/{index}.bin",IV=0x{draw(st.integers(0, 2**128 - 1)):032x}')
        lines.append(f"#EXTINF:{draw(durations)},{draw(st.sampled_from(['', 'title']))}")
        if draw(st.booleans()):
            length = draw(st.integers(1, 10**7))
            lines.append(f"#EXT-X-BYTERANGE:{length}@{offset}")
            offset += length
            lines.append("all.m4s")
        else:
            lines.append(f"{draw(st.sampled_from(['seg', 'dir/seg', '../up/seg', 'http://other.example/seg']))}"
                         f"{index}.m4s?q={draw(st.integers(0, 9))}")
    return "\n".join(lines + ["#EXT-X-ENDLIST"]) + "\n"


@settings(FUZZ, max_examples=200)
@given(valid_media_playlists())
def test_valid_playlists_parse_as_m3u8_reads_them(text: str) -> None:
    ours = parse_playlist(text, URL)
    theirs = m3u8.loads(text, uri=URL)
    assert isinstance(ours, MediaPlaylist)
    assert [s.uri for s in ours.segments] == [s.absolute_uri for s in theirs.segments]
    assert [s.duration_s for s in ours.segments] == [s.duration for s in theirs.segments]
    assert [s.sequence for s in ours.segments] == [theirs.media_sequence + k for k in range(len(theirs.segments))]
    for segment, reference in zip(ours.segments, theirs.segments):
        if reference.byterange:
            length, _, offset = reference.byterange.partition("@")
            assert segment.byte_range == (int(offset), int(offset) + int(length) - 1)
        else:
            assert segment.byte_range is None
        key = next((k for k in segment.keys if k.method == "AES-128"), None)
        assert (key.uri if key else None) == (reference.key.absolute_uri if reference.key else None)
    check(text)
