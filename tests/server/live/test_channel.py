"""The live schedule: which segment and chunk exists when, and the dynamic MPD and HLS playlists."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

import pytest

from server.formats.dash import MPD_NS, TIME_URL_PLACEHOLDER, UTC_HTTP_XSDATE_SCHEME
from server.live.channel import LiveChannel, LiveConfig, NotAvailable
from server.live.hls import live_media_playlist
from server.live.mpd import iso_datetime, live_mpd
from tests.server.live.conftest import make_channel

AST = 1_000_000.0
Q = f"{{{MPD_NS}}}"


def test_segment_numbers_map_to_the_wall_clock(packaged) -> None:  # type: ignore[no-untyped-def]
    normal = make_channel(packaged, start_s=AST)
    assert normal.segment_available_at_s(1) == AST + 4  # once complete
    assert normal.newest_available(AST + 3.99) == 0
    assert normal.newest_available(AST + 4.0) == 1
    assert normal.newest_available(AST + 41.0) == 10
    low = make_channel(packaged, start_s=AST, low_latency=True, chunk_s=0.5)
    assert low.segment_available_at_s(1) == AST + 0.5  # from its first chunk on
    assert low.chunk_available_at_s(3, 7) == AST + 12
    assert low.newest_available(AST + 8.49) == 2 and low.newest_available(AST + 8.5) == 3
    assert [low.chunks_available(3, AST + t) for t in (8.0, 8.5, 9.99, 10.0, 12.0, 99.0)] == [0, 1, 3, 4, 8, 8]


@pytest.mark.parametrize(("now", "message"), [
    (AST + 3.9, "not available yet"), (AST - 100, "not available yet"), (AST + 100, "left the 30 s time-shift window"),
])
def test_segments_outside_the_window_are_refused_clearly(packaged, now: float, message: str) -> None:  # type: ignore[no-untyped-def]
    channel = make_channel(packaged, start_s=AST)
    with pytest.raises(NotAvailable, match=message) as info:
        channel.check_available(1, now)
    assert (info.value.available_at_s == AST + 4) == ("yet" in message)
    channel.check_available(1, AST + 4)
    channel.check_available(20, AST + 100)  # segments that ended within the window stay
    with pytest.raises(NotAvailable, match="outside"):
        channel.check_available(0, AST + 100)


def test_config_errors_are_clear(packaged) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ValueError, match="not packaged"):
        LiveChannel(LiveConfig(source_title="nosuch", availability_start_s=AST), packaged.content_root)
    with pytest.raises(ValueError, match="does not divide"):
        make_channel(packaged, low_latency=True, chunk_s=0.3)
    with pytest.raises(ValueError, match="must not have"):
        LiveConfig(channel="clip", source_title="clip", availability_start_s=AST)
    with pytest.raises(ValueError, match="invalid title"):
        LiveConfig(channel="../x", source_title="clip", availability_start_s=AST)


def _duration_s(text: str) -> float:
    match = re.fullmatch(r"PT(\d+(?:\.\d+)?)S", text)
    assert match, text
    return float(match[1])


@pytest.mark.parametrize("low_latency", [False, True])
def test_the_dynamic_mpd_says_what_the_schedule_does(packaged, low_latency: bool) -> None:  # type: ignore[no-untyped-def]
    channel = make_channel(packaged, start_s=AST, low_latency=low_latency, encrypted=True)
    root = ET.fromstring(live_mpd(channel))
    assert root.get("type") == "dynamic" and root.get("mediaPresentationDuration") is None
    assert root.get("availabilityStartTime") == iso_datetime(AST) == "1970-01-12T13:46:40.000Z"
    assert root.get("publishTime") == iso_datetime(AST)
    assert _duration_s(root.get("minimumUpdatePeriod", "")) == 4
    assert _duration_s(root.get("timeShiftBufferDepth", "")) == 30
    assert _duration_s(root.get("suggestedPresentationDelay", "")) == channel.target_latency_s
    assert _duration_s(root.get("maxSegmentDuration", "")) == 4
    (timing,) = root.findall(f"{Q}UTCTiming")
    assert timing.get("schemeIdUri") == UTC_HTTP_XSDATE_SCHEME and timing.get("value") == TIME_URL_PLACEHOLDER
    assert list(root)[-1] is timing  # the schema puts UTCTiming after the Periods
    (period,) = root.findall(f"{Q}Period")
    assert period.get("start") == "PT0S"
    sets = period.findall(f"{Q}AdaptationSet")
    assert [a.get("contentType") for a in sets] == ["video", "audio"]
    for aset in sets:
        template = aset.find(f"{Q}SegmentTemplate")
        assert template is not None and template.find(f"{Q}SegmentTimeline") is None
        assert "$Number$" in template.get("media", "") and template.get("startNumber") == "1"
        assert int(template.get("duration", "0")) == 4 * int(template.get("timescale", "0"))
        assert aset.find(f"{Q}ContentProtection") is not None  # protection kept as packaged
        if low_latency:
            assert float(template.get("availabilityTimeOffset", "")) == 3.5
            assert template.get("availabilityTimeComplete") == "false"
        else:
            assert template.get("availabilityTimeOffset") is None
    service = root.find(f"{Q}ServiceDescription")
    assert (service is not None) == low_latency
    if service is not None:
        assert list(root).index(service) < list(root).index(period)
        latency = service.find(f"{Q}Latency")
        assert latency is not None and int(latency.get("target", "0")) == round(channel.target_latency_s * 1000)


def test_hls_live_playlist_slides_with_the_clock(packaged) -> None:  # type: ignore[no-untyped-def]
    import m3u8

    channel = make_channel(packaged, start_s=AST)
    assert "#EXTINF" not in live_media_playlist(channel, "video", "v216p", AST + 3)
    early = m3u8.loads(live_media_playlist(channel, "video", "v216p", AST + 20))
    later = m3u8.loads(live_media_playlist(channel, "video", "v216p", AST + 100))
    assert not early.is_endlist and early.media_sequence == 1
    assert [s.uri for s in early.segments] == [f"{n}.m4s" for n in range(1, 6)]
    assert later.media_sequence == 18 and later.segments[-1].uri == "25.m4s"  # 30 s window
    assert later.segments[0].program_date_time.timestamp() == AST + 17 * 4
    assert later.target_duration == 4
