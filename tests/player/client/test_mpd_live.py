"""The MPD reader on dynamic MPDs as our live channel writes them (server/live/mpd.py): an open-ended
SegmentTemplate@duration becomes a `LiveTemplate`, and the live attributes are read and checked."""

from __future__ import annotations

import math

import pytest

from player.client.mpd import MpdError, parse_mpd
from server.live.mpd import live_mpd
from tests.conftest import PackagedTitles
from tests.server.live.conftest import make_channel

URL = "http://edge.test/live/manifest.mpd"


@pytest.mark.parametrize("low_latency", [False, True])
def test_the_channels_dynamic_mpd_is_read(packaged: PackagedTitles, low_latency: bool) -> None:
    channel = make_channel(packaged, start_s=1_000_000.0, low_latency=low_latency)
    manifest = parse_mpd(live_mpd(channel), URL)
    assert manifest.type == "dynamic" and manifest.duration_s is None
    assert manifest.availability_start_time is not None
    assert manifest.availability_start_time.timestamp() == pytest.approx(1_000_000.0)
    assert manifest.publish_time == manifest.availability_start_time
    assert manifest.minimum_update_period_s == pytest.approx(float(channel.segment_s))
    assert manifest.time_shift_buffer_depth_s == pytest.approx(30.0)
    assert manifest.suggested_presentation_delay_s == pytest.approx(channel.target_latency_s)
    assert manifest.utc_timing == (("urn:mpeg:dash:utc:http-xsdate:2014", "abrkit:time-url"),)
    video = manifest.video
    assert video is not None
    for rep in video.representations:
        live = rep.live
        assert live is not None and rep.segments == ()
        assert live.start_number == 1 and live.duration_s == pytest.approx(float(channel.segment_s))
        seg = live.ref(7)
        assert seg.url == f"http://edge.test/live/video/{rep.id}/7.m4s"
        assert seg.start_s == pytest.approx(6 * float(channel.segment_s))
        assert rep.init is not None and rep.init.url.endswith(f"/live/video/{rep.id}/init.mp4")
        if low_latency:
            assert live.availability_time_offset_s == pytest.approx(float(channel.segment_s) - channel.chunk_duration_s)
            assert not live.availability_time_complete
        else:
            assert live.availability_time_offset_s == 0 and live.availability_time_complete
    if low_latency:
        assert manifest.target_latency_s == pytest.approx(channel.target_latency_s)
        assert manifest.playback_rate_range == (0.96, 1.04)
    else:
        assert manifest.target_latency_s is None and manifest.playback_rate_range is None


def test_a_live_segment_before_the_start_number_is_refused(packaged: PackagedTitles) -> None:
    manifest = parse_mpd(live_mpd(make_channel(packaged, start_s=1_000_000.0)), URL)
    live = manifest.video.representations[0].live  # type: ignore[union-attr]
    assert live is not None
    with pytest.raises(MpdError, match="before @startNumber"):
        live.ref(0)


def _dynamic(extra_mpd: str = 'availabilityStartTime="2026-01-01T00:00:00Z"', template: str = 'duration="2"') -> str:
    return f"""<?xml version="1.0"?>
<MPD xmlns="urn:mpeg:dash:schema:mpd:2011" type="dynamic" minBufferTime="PT2S" {extra_mpd}>
 <Period id="0" start="PT0S"><AdaptationSet contentType="video">
  <SegmentTemplate media="$Number$.m4s" initialization="init.mp4" {template}/>
  <Representation id="v" bandwidth="1000"/></AdaptationSet></Period></MPD>"""


@pytest.mark.parametrize(("mpd", "message"), [
    (_dynamic(extra_mpd=""), "needs @availabilityStartTime"),
    (_dynamic(extra_mpd='availabilityStartTime="yesterday"'), "not an xs:dateTime"),
    (_dynamic(template=""), "needs @duration"),
    (_dynamic(template='duration="2" availabilityTimeOffset="-1"'), "availabilityTimeOffset"),
    (_dynamic(template='duration="2" availabilityTimeComplete="maybe"'), "availabilityTimeComplete"),
])
def test_bad_dynamic_mpds_get_clear_errors(mpd: str, message: str) -> None:
    with pytest.raises(MpdError, match=message):
        parse_mpd(mpd, URL)


def test_a_minimal_dynamic_mpd_and_an_infinite_offset() -> None:
    manifest = parse_mpd(_dynamic(template='duration="2" availabilityTimeOffset="INF"'), URL)
    live = manifest.video.representations[0].live  # type: ignore[union-attr]
    assert live is not None and math.isinf(live.availability_time_offset_s)
    assert live.ref(1).url == "http://edge.test/live/1.m4s" and manifest.utc_timing == ()
