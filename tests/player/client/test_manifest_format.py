"""Where the manifest format is recognised (`load_manifest`), and the MPD Location element."""

from __future__ import annotations

import pytest

from player.client.bootstrap import BootstrapError, load_manifest, manifest_format
from player.client.mpd import MpdError, parse_mpd

MPD = ('<?xml version="1.0"?><MPD xmlns="urn:mpeg:dash:schema:mpd:2011" type="static" minBufferTime="PT2S" '
       'mediaPresentationDuration="PT4S">{location}<Period><AdaptationSet contentType="video">'
       '<SegmentTemplate duration="2" media="v/$Number$.m4s" initialization="v/init.mp4"/>'
       '<Representation id="v" bandwidth="100000"/></AdaptationSet></Period></MPD>')


@pytest.mark.parametrize(("url", "body", "content_type", "expected"), [
    ("http://h/x/master.m3u8", b"#EXTM3U\n#EXT-X-VERSION:7\n", "application/vnd.apple.mpegurl", "hls"),
    ("http://h/x/playlist", b"\xef\xbb\xbf  #EXTM3U\n", None, "hls"),  # BOM and whitespace
    ("http://h/x/manifest.mpd", b"", "application/x-mpegURL; charset=utf-8", "hls"),
    ("http://h/x/stream.m3u8?token=1", b"", None, "hls"),
    ("http://h/x/manifest.mpd", b"<?xml version='1.0'?><MPD/>", "application/dash+xml", "dash"),
    ("http://h/x/wrongly-named.m3u8", b"<MPD/>", None, "dash"),  # the body decides first
    ("http://h/x/manifest.mpd", b"garbage", "text/plain", "dash"),  # refused by the MPD reader, clearly
])
def test_the_manifest_format_is_recognised_from_body_type_and_url(url: str, body: bytes, content_type: str | None,
                                                                  expected: str) -> None:
    assert manifest_format(url, body, content_type) == expected


async def test_a_forced_protocol_that_does_not_fit_is_a_bootstrap_error() -> None:
    with pytest.raises(BootstrapError, match="^manifest is not valid: "):
        await load_manifest(None, "http://h/x/manifest.mpd", b"<MPD/>", None,  # type: ignore[arg-type]
                            protocol="hls")


async def test_an_mpd_that_is_not_valid_is_a_bootstrap_error() -> None:
    with pytest.raises(BootstrapError, match="manifest is not valid"):
        await load_manifest(None, "http://h/x/manifest.mpd", b"<html/>", "text/html")  # type: ignore[arg-type]


def test_relative_references_resolve_against_the_mpd_location() -> None:
    manifest = parse_mpd(MPD.format(location="<Location>https://cdn.example/t/manifest.mpd</Location>"),
                         "http://origin/elsewhere/manifest.mpd")
    rep = manifest.periods[0].adaptation_sets[0].representations[0]
    assert manifest.location == "https://cdn.example/t/manifest.mpd" and manifest.url.startswith("http://origin/")
    assert rep.segments[0].url == "https://cdn.example/t/v/1.m4s" and rep.init is not None
    assert rep.init.url == "https://cdn.example/t/v/init.mp4"
    relative = parse_mpd(MPD.format(location="<Location>/moved/m.mpd</Location>"), "http://origin/a/m.mpd")
    assert relative.periods[0].adaptation_sets[0].representations[0].segments[0].url == "http://origin/moved/v/1.m4s"


@pytest.mark.parametrize("location", ["ftp://cdn/m.mpd", "javascript:alert(1)"])
def test_a_location_that_is_not_http_is_refused(location: str) -> None:
    with pytest.raises(MpdError, match="MPD/Location.*is not an http"):
        parse_mpd(MPD.format(location=f"<Location>{location}</Location>"), "http://origin/a/m.mpd")


def test_a_base_url_that_is_not_http_is_refused() -> None:
    text = MPD.format(location="").replace("<Period>", "<Period><BaseURL>javascript:alert(1)</BaseURL>")
    with pytest.raises(MpdError, match="BaseURL.*is not an http"):
        parse_mpd(text, "http://origin/a/m.mpd")
