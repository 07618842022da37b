"""The packager's HLS playlists, read back by m3u8 (an independent parser): they describe exactly the
files and durations `segments.json` records, follow RFC 8216's rules (target duration, BANDWIDTH as
the peak with audio), signal ClearKey on the encrypted title only, and the origin serves them."""

from __future__ import annotations

import json
import math

import m3u8
import pytest

from server.formats.hls import PLAYLIST_CONTENT_TYPE
from server.formats.segments import load_segments_json
from server.origin import OriginConfig, create_app
from server.packaging.hls import clearkey_key_tag, master_playlist, media_playlist, peak_bps
from tests.conftest import CLEAR_TITLE, ENCRYPTED_TITLE, PackagedTitles


@pytest.mark.parametrize("title", [CLEAR_TITLE, ENCRYPTED_TITLE])
def test_playlists_describe_the_packaged_files(packaged: PackagedTitles, title: str) -> None:
    title_dir = packaged.content_root / title
    segments = load_segments_json(title_dir / "segments.json")
    master = m3u8.loads((title_dir / "master.m3u8").read_text(), uri="http://h/t/master.m3u8")
    assert master.is_variant and len(master.playlists) == len(segments.video)
    audio = segments.audio[0]
    audio_peak = peak_bps(audio.segment_sizes_bytes, audio.segment_durations_s)
    for variant, rendition in zip(master.playlists, segments.video):
        assert variant.uri == f"video/{rendition.id}/playlist.m3u8"
        assert variant.stream_info.bandwidth >= peak_bps(rendition.segment_sizes_bytes,
                                                          rendition.segment_durations_s) + audio_peak
        assert variant.stream_info.resolution == (rendition.width, rendition.height)
        assert variant.stream_info.codecs == f"{rendition.codecs},{audio.codecs}"
        assert variant.stream_info.audio == "audio"
    bandwidths = [v.stream_info.bandwidth for v in master.playlists]
    assert bandwidths == sorted(set(bandwidths))  # ascending along the ladder, as segments.json lists it
    assert [m.uri for m in master.media] == [f"audio/{audio.id}/playlist.m3u8"] and master.media[0].default == "YES"
    kids = {}
    if segments.encrypted:
        kids = {e["tracks"][0]: e["kid"] for e in json.loads((title_dir / "keys.json").read_text())["keys"]}
    for kind, renditions in (("video", segments.video), ("audio", segments.audio)):
        for rendition in renditions:
            directory = title_dir / kind / rendition.id
            playlist = m3u8.loads((directory / "playlist.m3u8").read_text())
            assert playlist.is_endlist and playlist.playlist_type == "vod" and playlist.version == 6
            assert [s.duration for s in playlist.segments] == pytest.approx(list(rendition.segment_durations_s))
            assert all(round(s.duration) <= playlist.target_duration for s in playlist.segments)
            assert playlist.segment_map[0].uri == "init.mp4" and (directory / "init.mp4").is_file()
            assert all((directory / s.uri).is_file() for s in playlist.segments)
            assert [(directory / s.uri).stat().st_size for s in playlist.segments] == list(rendition.segment_sizes_bytes)
            key = playlist.segments[0].key
            if segments.encrypted:
                assert key is not None and key.method == "SAMPLE-AES-CTR" and key.keyformat == "org.w3.clearkey"
                assert key._extra_params["keyid"] == f"0x{kids[kind]}"  # m3u8 keeps KEYID as an extra
            else:
                assert key is None


def test_target_duration_rounds_like_rfc_8216_and_the_key_tag_is_well_formed() -> None:
    text = media_playlist((4.0, 4.4999, 2.0))
    assert "#EXT-X-TARGETDURATION:4\n" in text
    assert "#EXT-X-TARGETDURATION:5\n" in media_playlist((4.5, 1.0))
    tag = clearkey_key_tag(bytes(range(16)))
    key = m3u8.loads("#EXTM3U\n" + tag + "\n#EXTINF:1,\na.m4s\n").keys[0]
    assert key.uri == "data:text/plain;base64,AAECAwQFBgcICQoLDA0ODw==" and key._extra_params["keyid"] == "0x" + bytes(range(16)).hex()
    with pytest.raises(ValueError):
        media_playlist(())
    with pytest.raises(ValueError):
        clearkey_key_tag(b"short")
    assert math.isclose(peak_bps((1000, 3000), (1.0, 2.0)), 12_000)


def test_variant_bandwidths_stay_ascending_along_the_ladder() -> None:
    from server.formats.segments import VideoRenditionInfo

    def rung(rid: str, size: int) -> VideoRenditionInfo:
        return VideoRenditionInfo(id=rid, bitrate_bps=1, measured_bitrate_bps=1, width=2, height=2, frame_rate=24.0,
                                  codecs="avc1", segment_sizes_bytes=(size,), segment_durations_s=(1.0,),
                                  quality_metric="psnr_db", segment_quality=(40.0,))

    master = m3u8.loads(master_playlist([rung("a", 1000), rung("b", 900), rung("c", 5000)], []))
    assert [p.stream_info.bandwidth for p in master.playlists] == [8000, 8001, 40000]


async def test_the_origin_serves_playlists_as_mpegurl_with_a_short_max_age(packaged: PackagedTitles,
                                                                           aiohttp_client) -> None:  # noqa: ANN001
    client = await aiohttp_client(create_app(OriginConfig(content_root=packaged.content_root, port=0)))
    for path in (f"/{CLEAR_TITLE}/master.m3u8", f"/{CLEAR_TITLE}/video/v216p/playlist.m3u8",
                 f"/{CLEAR_TITLE}/audio/a128k/playlist.m3u8"):
        response = await client.get(path)
        assert response.status == 200 and response.headers["Content-Type"] == PLAYLIST_CONTENT_TYPE
        assert response.headers["Cache-Control"] == "public, max-age=2"
    for path in (f"/{CLEAR_TITLE}/video/v216p/other.m3u8", f"/{CLEAR_TITLE}/keys.m3u8", f"/{CLEAR_TITLE}/x/master.m3u8"):
        assert (await client.get(path)).status == 404
