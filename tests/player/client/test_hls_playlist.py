"""The HLS playlist reader: real playlists (FFmpeg's, Shaka Packager's, ours) parse to what they say,
the manifest mapping matches the DASH model, and each malformed input is one clear HlsError naming
the playlist, line and tag. m3u8 (an independent parser) is the oracle for segment lists."""

from __future__ import annotations

from pathlib import Path

import m3u8
import pytest

from player.client.hls import HlsError, MasterPlaylist, MediaPlaylist, Track, build_manifest, parse_playlist
from player.client.hls.aes import sequence_iv
from player.client.hls.loader import default_kid, looks_like_hls
from player.client.hls.manifest import audio_renditions, rendition_ids, video_variants
from server.formats.dash import CLEARKEY_SCHEME
from server.packaging.hls import master_playlist, media_playlist

DATA = Path(__file__).parent / "data" / "hls"
BASE = "http://cdn.example/s/tok/title/"
KID = bytes.fromhex("00112233445566778899aabbccddeeff")


def media(text: str, url: str = BASE + "video/v1/playlist.m3u8") -> MediaPlaylist:
    playlist = parse_playlist(text, url)
    assert isinstance(playlist, MediaPlaylist)
    return playlist


@pytest.mark.parametrize("name", sorted(p.name for p in DATA.glob("*.m3u8")))
def test_real_playlists_agree_with_m3u8(name: str) -> None:
    text = (DATA / name).read_text()
    ours = parse_playlist(text, BASE + name)
    theirs = m3u8.loads(text, uri=BASE + name)
    if isinstance(ours, MasterPlaylist):
        assert [v.uri for v in ours.variants] == [p.absolute_uri for p in theirs.playlists]
        assert [v.bandwidth_bps for v in ours.variants] == [p.stream_info.bandwidth for p in theirs.playlists]
        return
    assert [s.uri for s in ours.segments] == [s.absolute_uri for s in theirs.segments]
    assert [s.duration_s for s in ours.segments] == [s.duration for s in theirs.segments]
    assert [bool(s.discontinuity and k) for k, s in enumerate(theirs.segments)] == [
        k > 0 and ours.segments[k].discontinuity != ours.segments[k - 1].discontinuity
        for k in range(len(ours.segments))]
    for segment, reference in zip(ours.segments, theirs.segments):
        if reference.byterange:
            length, _, offset = reference.byterange.partition("@")
            assert segment.byte_range == (int(offset), int(offset) + int(length) - 1)


def test_ffmpeg_single_file_byte_ranges_tile_the_file() -> None:
    playlist = media((DATA / "ffmpeg_single_file.m3u8").read_text())
    init = playlist.segments[0].init
    assert init is not None and init.byte_range == (0, 1373)
    previous_end = init.byte_range[1]
    for segment in playlist.segments:
        assert segment.byte_range is not None and segment.byte_range[0] == previous_end + 1
        previous_end = segment.byte_range[1]


def test_byte_range_without_offset_follows_the_previous_segment() -> None:
    playlist = media("#EXTM3U\n#EXT-X-MAP:URI=\"a.mp4\",BYTERANGE=\"100\"\n#EXTINF:2,\n#EXT-X-BYTERANGE:500@100\n"
                     "a.mp4\n#EXTINF:2,\n#EXT-X-BYTERANGE:300\na.mp4\n#EXT-X-ENDLIST\n")
    assert playlist.segments[0].init is not None and playlist.segments[0].init.byte_range == (0, 99)
    assert [s.byte_range for s in playlist.segments] == [(100, 599), (600, 899)]


def test_shaka_multi_drm_playlist_keeps_every_keyformat_and_the_kid() -> None:
    playlist = media((DATA / "shaka_cenc_video.m3u8").read_text())
    formats = {k.keyformat for k in playlist.segments[0].keys}
    assert formats == {"com.microsoft.playready", "urn:uuid:edef8ba9-79d6-4ace-a3c8-27dcd51d21ed"}
    track = Track(id="v", kind="video", bandwidth_bps=1, playlist=playlist)
    rep = build_manifest(BASE, [track]).video.representations[0]  # type: ignore[union-attr]
    assert {cp.default_kid for cp in rep.content_protection} == {KID.hex()}
    assert {cp.value for cp in rep.content_protection} == {"cenc"}


def test_shaka_cbcs_identity_key_gives_the_kid_from_its_data_uri() -> None:
    playlist = media((DATA / "shaka_cbcs_video.m3u8").read_text())
    rep = build_manifest(BASE, [Track(id="v", kind="video", bandwidth_bps=1, playlist=playlist)]).periods[0] \
        .adaptation_sets[0].representations[0]
    assert [(cp.value, cp.default_kid) for cp in rep.content_protection] == [("cbcs", KID.hex())]


def test_aes128_segments_carry_the_key_and_iv() -> None:
    playlist = media("#EXTM3U\n#EXT-X-MEDIA-SEQUENCE:7\n#EXT-X-KEY:METHOD=AES-128,URI=\"k.bin\"\n#EXTINF:2,\na.ts\n"
                     "#EXT-X-KEY:METHOD=AES-128,URI=\"../k2.bin\",IV=0x0A\n#EXTINF:2,\nb.ts\n"
                     "#EXT-X-KEY:METHOD=NONE\n#EXTINF:2,\nc.ts\n#EXT-X-ENDLIST\n")
    keys = {BASE + "video/v1/k.bin": b"1" * 16, BASE + "video/k2.bin": b"2" * 16}
    rep = build_manifest(BASE, [Track(id="v", kind="video", bandwidth_bps=1, playlist=playlist)],
                         aes_keys=keys).periods[0].adaptation_sets[0].representations[0]
    a, b, c = rep.segments
    assert a.cipher is not None and a.cipher.iv == sequence_iv(7) and a.cipher.key == b"1" * 16
    assert b.cipher is not None and b.cipher.iv == (10).to_bytes(16, "big") and b.cipher.key == b"2" * 16
    assert c.cipher is None and rep.mime_type == "video/mp2t" and rep.init is None
    assert "key=" not in repr(a.cipher)  # the key bytes stay out of reprs


def test_our_master_maps_to_a_ladder_with_one_audio_set() -> None:
    from server.formats.segments import AudioRenditionInfo, VideoRenditionInfo

    video = [VideoRenditionInfo(id=f"v{h}p", bitrate_bps=b, measured_bitrate_bps=b, width=h * 16 // 9, height=h,
                                frame_rate=24.0, codecs="avc1.64001f", segment_sizes_bytes=(b // 2, b // 2),
                                segment_durations_s=(4.0, 4.0), quality_metric="psnr_db", segment_quality=(40, 40))
             for h, b in ((216, 300_000), (360, 800_000))]
    audio = [AudioRenditionInfo(id="a128k", bitrate_bps=128_000, codecs="mp4a.40.2", sample_rate_hz=48_000,
                                channels=2, segment_sizes_bytes=(64_000, 64_000), segment_durations_s=(4.0, 4.0))]
    master = parse_playlist(master_playlist(video, audio), BASE + "master.m3u8")
    assert isinstance(master, MasterPlaylist)
    variants = video_variants(master)
    assert [v.uri for v in variants] == [BASE + "video/v216p/playlist.m3u8", BASE + "video/v360p/playlist.m3u8"]
    assert [v.bandwidth_bps for v in variants] == [300_000 + 128_000, 800_000 + 128_000]  # peak video + audio
    assert variants[0].resolution == (384, 216) and variants[0].codecs == "avc1.64001f,mp4a.40.2"
    renditions = audio_renditions(master, variants)
    assert [r.uri for r in renditions] == [BASE + "audio/a128k/playlist.m3u8"] and renditions[0].default
    assert rendition_ids([v.uri for v in variants], "v") == ["v216p", "v360p"]
    text = media_playlist((4.0, 4.0), kid=KID)
    tracks = [Track(id=rid, kind="video", bandwidth_bps=v.bandwidth_bps, variant=v,
                    playlist=media(text, v.uri)) for rid, v in zip(("v216p", "v360p"), variants)]
    tracks.append(Track(id="a128k", kind="audio", bandwidth_bps=1, rendition=renditions[0],
                        playlist=media(media_playlist((4.0, 4.0), kid=KID), renditions[0].uri or "")))
    manifest = build_manifest(BASE + "master.m3u8", tracks)
    assert manifest.video is not None and [r.id for r in manifest.video.representations] == ["v216p", "v360p"]
    assert manifest.audio is not None and manifest.audio.representations[0].id == "a128k"
    rep = manifest.video.representations[0]
    assert rep.init is not None and rep.init.url == BASE + "video/v216p/init.mp4"
    assert [s.url for s in rep.segments] == [BASE + "video/v216p/1.m4s", BASE + "video/v216p/2.m4s"]
    assert [s.start_s for s in rep.segments] == [0.0, 4.0] and manifest.duration_s == 8.0
    assert manifest.default_kids() == (KID.hex(),)
    assert rep.content_protection[0].scheme_id_uri == CLEARKEY_SCHEME


def test_an_init_change_at_a_discontinuity_starts_a_period() -> None:
    text = ("#EXTM3U\n#EXT-X-MAP:URI=\"a.mp4\"\n#EXTINF:2,\na1.m4s\n#EXTINF:2,\na2.m4s\n#EXT-X-DISCONTINUITY\n"
            "#EXT-X-MAP:URI=\"b.mp4\"\n#EXTINF:3,\nb1.m4s\n#EXT-X-ENDLIST\n")
    manifest = build_manifest(BASE, [Track(id="v", kind="video", bandwidth_bps=1, playlist=media(text))])
    assert [(p.start_s, p.duration_s) for p in manifest.periods] == [(0.0, 4.0), (4.0, 3.0)]
    second = manifest.periods[1].adaptation_sets[0].representations[0]
    assert second.id == "v@1" and second.init is not None and second.init.url.endswith("/b.mp4")
    assert second.segments[0].start_s == 4.0


def test_a_discontinuity_without_an_init_change_stays_one_period() -> None:
    playlist = media((DATA / "ffmpeg_discontinuity.m3u8").read_text())
    manifest = build_manifest(BASE, [Track(id="v", kind="video", bandwidth_bps=1, playlist=playlist)])
    assert len(manifest.periods) == 1 and manifest.duration_s == 10.0
    assert [s.discontinuity for s in playlist.segments] == [1, 1, 1, 2, 2]


@pytest.mark.parametrize(("url", "content_type", "body", "expected"), [
    ("http://h/x/master.m3u8", None, b"", True),
    ("http://h/x/master.M3U8?token=1", "text/plain", b"", True),
    ("http://h/x/play", "application/vnd.apple.mpegurl; charset=utf-8", b"", True),
    ("http://h/x/play", "audio/mpegurl", b"", True),
    ("http://h/x/play", "text/plain", b"\xef\xbb\xbf  #EXTM3U\n", True),
    ("http://h/x/manifest.mpd", "application/dash+xml", b"<?xml version='1.0'?><MPD/>", False),
])
def test_hls_is_recognised_by_content_type_suffix_or_first_line(url: str, content_type: str | None, body: bytes,
                                                                 expected: bool) -> None:
    assert looks_like_hls(url, content_type, body) is expected


def test_default_kid_is_read_from_an_encrypted_init(packaged: object) -> None:
    from tests.conftest import ENCRYPTED_TITLE, PackagedTitles

    assert isinstance(packaged, PackagedTitles)
    title = packaged.content_root / ENCRYPTED_TITLE
    import json

    kids = {entry["kid"] for entry in json.loads((title / "keys.json").read_text())["keys"]}
    assert default_kid((title / "video" / "v216p" / "init.mp4").read_bytes()) in kids
    assert default_kid((packaged.content_root / "clip" / "video" / "v216p" / "init.mp4").read_bytes()) is None


M = "#EXTM3U\n"
E = "#EXTINF:2,\n"
ERRORS = {
    "not a playlist": ("<MPD/>", "line 1 is '<MPD/>'"),
    "empty": ("", "is empty"),
    "no segments": (M + "#EXT-X-ENDLIST\n", "lists no segments"),
    "uri without extinf": (M + "a.ts\n", "line 2: URI 'a.ts': a segment URI must follow an #EXTINF"),
    "extinf without uri": (M + E + "#EXT-X-ENDLIST\n", "line 2: #EXTINF: no segment URI follows"),
    "negative duration": (M + "#EXTINF:-2,\na.ts\n", "line 2: #EXTINF: duration='-2' is out of range"),
    "nan duration": (M + "#EXTINF:nan,\na.ts\n", "line 2: #EXTINF: duration='nan' is not a decimal number"),
    "huge duration": (M + "#EXTINF:1" + "0" * 19 + ",\na.ts\n", "out of range"),
    "zero duration": (M + "#EXTINF:0,\na.ts\n", "duration='0' is out of range (0"),
    "bad byterange": (M + E + "#EXT-X-BYTERANGE:12@x\na.ts\n", "line 3: #EXT-X-BYTERANGE: value='12@x'"),
    "zero byterange": (M + E + "#EXT-X-BYTERANGE:0@0\na.ts\n", "has a length out of range"),
    "byterange without offset": (M + E + "#EXT-X-BYTERANGE:10\na.ts\n", "has no @offset"),
    "key without method": (M + "#EXT-X-KEY:URI=\"k\"\n" + E + "a.ts\n", "line 2: #EXT-X-KEY: the required attribute METHOD"),
    "unknown method": (M + "#EXT-X-KEY:METHOD=ROT13,URI=\"k\"\n", "METHOD='ROT13' is not NONE"),
    "key without uri": (M + "#EXT-X-KEY:METHOD=AES-128\n", "the required attribute URI is missing"),
    "unquoted uri": (M + "#EXT-X-KEY:METHOD=AES-128,URI=k.bin\n", "URI='k.bin' must be a quoted string"),
    "long iv": (M + "#EXT-X-KEY:METHOD=AES-128,URI=\"k\",IV=0x" + "1" * 34 + "\n", "IV='0x111"),
    "unclosed quote": (M + "#EXT-X-MAP:URI=\"init.mp4\n", "line 2: #EXT-X-MAP: malformed attribute list"),
    "file scheme": (M + E + "file:///etc/passwd\n", "has scheme 'file'; only http, https"),
    "javascript scheme": (M + "#EXT-X-MAP:URI=\"javascript:alert(1)\"\n", "has scheme 'javascript'"),
    "control character": (M + E + "a\x00.ts\n", "line 3: holds a control character"),
    "gap": (M + "#EXT-X-GAP\n" + E + "a.ts\n", "line 2: #EXT-X-GAP: gaps"),
    "i-frames only": (M + "#EXT-X-I-FRAMES-ONLY\n", "I-frame-only"),
    "master and media": (M + E + "a.ts\n#EXT-X-STREAM-INF:BANDWIDTH=1\nv.m3u8\n", "line 4: #EXT-X-STREAM-INF: a playlist holds either variants"),
    "variant without bandwidth": (M + "#EXT-X-STREAM-INF:RESOLUTION=1x1\nv.m3u8\n", "line 2: #EXT-X-STREAM-INF: the required attribute BANDWIDTH"),
    "variant with text bandwidth": (M + "#EXT-X-STREAM-INF:BANDWIDTH=fast\nv.m3u8\n", "BANDWIDTH='fast' is not a decimal integer"),
    "variant with zero bandwidth": (M + "#EXT-X-STREAM-INF:BANDWIDTH=0\nv.m3u8\n", "BANDWIDTH='0' is out of range"),
    "huge bandwidth": (M + "#EXT-X-STREAM-INF:BANDWIDTH=" + "9" * 30 + "\nv.m3u8\n", "is not a decimal integer"),
    "bad resolution": (M + "#EXT-X-STREAM-INF:BANDWIDTH=1,RESOLUTION=wide\nv.m3u8\n", "RESOLUTION='wide'"),
    "zero frame rate": (M + "#EXT-X-STREAM-INF:BANDWIDTH=1,FRAME-RATE=0\nv.m3u8\n", "FRAME-RATE='0' is out of range"),
    "variant without uri": (M + "#EXT-X-STREAM-INF:BANDWIDTH=1\n", "line 2: #EXT-X-STREAM-INF: no variant URI"),
    "media without type": (M + "#EXT-X-MEDIA:GROUP-ID=\"a\",NAME=\"a\"\n", "the required attribute TYPE"),
    "media bad default": (M + "#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID=\"a\",NAME=\"a\",DEFAULT=MAYBE\n", "DEFAULT='MAYBE'"),
    "master without variants": (M + "#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID=\"a\",NAME=\"a\"\n", "lists no variant"),
    "sequence after segment": (M + E + "a.ts\n#EXT-X-MEDIA-SEQUENCE:3\n", "line 4: #EXT-X-MEDIA-SEQUENCE: must appear before"),
    "bad playlist type": (M + "#EXT-X-PLAYLIST-TYPE:LIVE\n", "'LIVE' is not VOD or EVENT"),
    "too long line": (M + "#" + "x" * 70_000 + "\n", "line 2: is 70001 characters long"),
    "not utf-8": (b"#EXTM3U\n\xff\xfe\n", "is not valid UTF-8 (byte 8)"),
}


@pytest.mark.parametrize("case", list(ERRORS))
def test_bad_playlists_are_one_clear_error(case: str) -> None:
    text, expected = ERRORS[case]
    with pytest.raises(HlsError) as info:
        parse_playlist(text, BASE + "x.m3u8")
    message = str(info.value)
    assert message.startswith("HLS playlist x.m3u8") and expected in message, message
    assert "\n" not in message and len(message) < 400


MAPPING_ERRORS = {
    "live without a target duration": (M + E + "a.ts\n", "a live playlist needs #EXT-X-TARGETDURATION"),
    "live with a discontinuity": (M + "#EXT-X-TARGETDURATION:4\n" + E + "a.ts\n#EXT-X-DISCONTINUITY\n" + E + "b.ts\n",
                                  "a discontinuity in a live playlist is not supported"),
    "sample-aes on ts": (M + "#EXT-X-KEY:METHOD=SAMPLE-AES,URI=\"skd://k\",KEYFORMAT=\"com.apple.streamingkeydelivery\"\n"
                         + E + "a.ts\n#EXT-X-ENDLIST\n", "line 2: METHOD=SAMPLE-AES on MPEG-TS"),
    "packed audio": (M + E + "a.aac\n#EXT-X-ENDLIST\n", "line 3: packed audio"),
    "encrypted init without iv": (M + "#EXT-X-KEY:METHOD=AES-128,URI=\"k\"\n#EXT-X-MAP:URI=\"i.mp4\"\n" + E
                                  + "a.m4s\n#EXT-X-ENDLIST\n", "line 3: #EXT-X-MAP: the init section is under"),
    "map change without discontinuity": (M + "#EXT-X-MAP:URI=\"i.mp4\"\n" + E + "a.m4s\n#EXT-X-MAP:URI=\"j.mp4\"\n"
                                         + E + "b.m4s\n#EXT-X-ENDLIST\n", "line 5: #EXT-X-MAP: the initialization section changes"),
}


@pytest.mark.parametrize("case", list(MAPPING_ERRORS))
def test_playlists_we_cannot_play_are_one_clear_error(case: str) -> None:
    text, expected = MAPPING_ERRORS[case]
    with pytest.raises(HlsError, match=expected.replace("(", r"\(")):
        build_manifest(BASE, [Track(id="v", kind="video", bandwidth_bps=1, playlist=media(text, BASE + "x.m3u8"))])


def test_variants_with_equal_bandwidth_or_unaligned_segments_are_refused() -> None:
    master = parse_playlist(M + "#EXT-X-STREAM-INF:BANDWIDTH=5\na.m3u8\n#EXT-X-STREAM-INF:BANDWIDTH=5\nb.m3u8\n",
                            BASE + "m.m3u8")
    assert isinstance(master, MasterPlaylist)
    with pytest.raises(HlsError, match="lines 2 and 4 both have BANDWIDTH=5"):
        video_variants(master)
    short, long = media(M + E + "a.ts\n#EXT-X-ENDLIST\n"), media(M + E + "a.ts\n" + E + "b.ts\n#EXT-X-ENDLIST\n")
    tracks = [Track(id="lo", kind="video", bandwidth_bps=1, playlist=short),
              Track(id="hi", kind="video", bandwidth_bps=2, playlist=long)]
    with pytest.raises(HlsError, match=r"different numbers of segments \(lo: 1, hi: 2\)"):
        build_manifest(BASE, tracks)


def test_the_same_video_listed_per_audio_group_is_one_variant() -> None:
    master = parse_playlist(M + "#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID=\"aac\",NAME=\"en\",DEFAULT=NO,URI=\"en.m3u8\"\n"
                            "#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID=\"aac\",NAME=\"fr\",DEFAULT=YES,URI=\"fr.m3u8\"\n"
                            "#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID=\"ac3\",NAME=\"en\",URI=\"en-ac3.m3u8\"\n"
                            "#EXT-X-STREAM-INF:BANDWIDTH=10,AUDIO=\"aac\"\nv.m3u8\n"
                            "#EXT-X-STREAM-INF:BANDWIDTH=20,AUDIO=\"ac3\"\nv.m3u8\n", BASE + "m.m3u8")
    assert isinstance(master, MasterPlaylist)
    variants = video_variants(master)
    assert len(variants) == 1 and variants[0].audio_group == "aac"
    assert [r.name for r in audio_renditions(master, variants)] == ["fr", "en"]  # DEFAULT=YES first


def test_an_audio_only_variant_is_no_rung_of_the_video_ladder() -> None:
    # FFmpeg's -var_stream_map lists the audio group's playlist as a variant too (CODECS="mp4a.40.2").
    master = parse_playlist(M + "#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID=\"aud\",NAME=\"a\",DEFAULT=YES,URI=\"a.m3u8\"\n"
                            "#EXT-X-STREAM-INF:BANDWIDTH=300,RESOLUTION=160x90,AUDIO=\"aud\"\nv0.m3u8\n"
                            "#EXT-X-STREAM-INF:BANDWIDTH=600,RESOLUTION=320x180,AUDIO=\"aud\"\nv1.m3u8\n"
                            "#EXT-X-STREAM-INF:BANDWIDTH=70,CODECS=\"mp4a.40.2\",AUDIO=\"aud\"\na.m3u8\n"
                            "#EXT-X-STREAM-INF:BANDWIDTH=90,CODECS=\"mp4a.40.5\"\nother-audio.m3u8\n", BASE + "m.m3u8")
    assert isinstance(master, MasterPlaylist)
    assert [v.uri.rsplit("/", 1)[-1] for v in video_variants(master)] == ["v0.m3u8", "v1.m3u8"]
    alone = parse_playlist(M + "#EXT-X-STREAM-INF:BANDWIDTH=70,CODECS=\"mp4a.40.2\"\na.m3u8\n", BASE + "m.m3u8")
    assert isinstance(alone, MasterPlaylist) and len(video_variants(alone)) == 1  # an audio-only stream still plays
