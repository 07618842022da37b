"""The dynamic MPD of a live channel (ISO/IEC 23009-1 section 5.3.1.2, type="dynamic").

Built from the source title's static MPD (its adaptation sets, representations and content
protection stay as packaged): SegmentTimeline gives way to `SegmentTemplate@duration` with
`$Number$` from 1 at `availabilityStartTime`; the MPD carries `publishTime`,
`minimumUpdatePeriod`, `timeShiftBufferDepth`, `suggestedPresentationDelay`, `maxSegmentDuration`
and a `UTCTiming` (http-xsdate) pointing at a time endpoint. Low latency adds, per DASH-IF IOP
"Low-latency Modes for DASH" (segments with $Number$ mode), `availabilityTimeOffset` = D - chunk,
`availabilityTimeComplete="false"` and a `ServiceDescription` with the latency target and the
playback-rate range. The document does not change while the channel runs (the template describes
every segment), so `publishTime` is the channel's start.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from datetime import UTC, datetime

import defusedxml.ElementTree as safe_et

from server.formats.dash import (
    CENC_NS,
    DASHIF_NS,
    MPD_NS,
    PROFILE_DASHIF_LOW_LATENCY,
    PROFILE_LIVE,
    TIME_URL_PLACEHOLDER,
    UTC_HTTP_XSDATE_SCHEME,
)
from server.live.channel import LiveChannel

# The playback-rate range a low-latency player may use to hold its target (dash.js's default
# catch-up range is 0.5 either side; the issue and DASH-IF IOP examples use a few percent).
PLAYBACK_RATE_MIN = 0.96
PLAYBACK_RATE_MAX = 1.04

_NS = {"": MPD_NS, "cenc": CENC_NS, "dashif": DASHIF_NS}
for _prefix, _uri in _NS.items():
    ET.register_namespace(_prefix, _uri)


def iso_datetime(unix_s: float) -> str:
    """xs:dateTime in UTC with milliseconds, e.g. 2026-12-05T03:00:00.000Z."""
    return datetime.fromtimestamp(unix_s, UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{int(unix_s * 1000) % 1000:03d}Z"


def iso_duration(seconds: float) -> str:
    return f"PT{seconds:.3f}S"


def _q(name: str) -> str:
    return f"{{{MPD_NS}}}{name}"


def live_mpd(channel: LiveChannel) -> bytes:
    """The channel's dynamic MPD (UTF-8 XML)."""
    root = safe_et.fromstring(channel.manifest_bytes)
    if root.tag != _q("MPD"):
        raise ValueError("the source title's manifest is not an MPD")
    config = channel.config
    segment_s = float(channel.segment_s)
    for attr in ("mediaPresentationDuration",):
        root.attrib.pop(attr, None)
    profiles = PROFILE_LIVE + (f",{PROFILE_DASHIF_LOW_LATENCY}" if config.low_latency else "")
    root.attrib.update({
        "type": "dynamic",
        "profiles": profiles,
        "availabilityStartTime": iso_datetime(channel.availability_start_s),
        "publishTime": iso_datetime(channel.availability_start_s),
        "minimumUpdatePeriod": iso_duration(segment_s),
        "timeShiftBufferDepth": iso_duration(config.time_shift_buffer_s),
        "suggestedPresentationDelay": iso_duration(channel.target_latency_s),
        "maxSegmentDuration": iso_duration(segment_s),
    })
    for title in root.iter(_q("Title")):
        title.text = config.channel
    periods = root.findall(_q("Period"))
    if len(periods) != 1:
        raise ValueError("a live source title needs exactly one Period")
    period = periods[0]
    period.attrib.clear()
    period.attrib.update({"id": "0", "start": "PT0S"})
    for aset in period.findall(_q("AdaptationSet")):
        template = aset.find(_q("SegmentTemplate"))
        if template is None:
            raise ValueError("the source title's adaptation sets need a SegmentTemplate")
        timeline = template.find(_q("SegmentTimeline"))
        if timeline is not None:
            template.remove(timeline)
            template.text = None
        timescale = int(template.get("timescale", "1"))
        duration = channel.segment_s * timescale
        if duration.denominator != 1:
            raise ValueError(f"{segment_s} s segments are not whole ticks at timescale {timescale}")
        template.set("duration", str(int(duration)))
        template.set("startNumber", "1")
        if config.low_latency:
            template.set("availabilityTimeOffset", f"{segment_s - channel.chunk_duration_s:.3f}")
            template.set("availabilityTimeComplete", "false")
    if config.low_latency:
        _service_description(root, channel)
    timing = ET.SubElement(root, _q("UTCTiming"))
    timing.set("schemeIdUri", UTC_HTTP_XSDATE_SCHEME)
    timing.set("value", config.time_url or TIME_URL_PLACEHOLDER)
    ET.indent(root)
    return ET.tostring(root, encoding="utf-8", xml_declaration=True) + b"\n"


def _service_description(root: ET.Element, channel: LiveChannel) -> None:
    """ServiceDescription (ISO/IEC 23009-1 Annex K) before the first Period, as the schema orders it."""
    element = ET.Element(_q("ServiceDescription"), {"id": "0"})
    target_ms = round(channel.target_latency_s * 1000)
    ET.SubElement(element, _q("Latency"), {
        "target": str(target_ms), "min": str(round(channel.chunk_duration_s * 1000)),
        "max": str(target_ms + round(2 * float(channel.segment_s) * 1000))})
    ET.SubElement(element, _q("PlaybackRate"), {"min": f"{PLAYBACK_RATE_MIN}", "max": f"{PLAYBACK_RATE_MAX}"})
    children = list(root)
    at = next((i for i, child in enumerate(children) if child.tag not in (_q("ProgramInformation"), _q("BaseURL"),
                                                                           _q("Location"), _q("PatchLocation"))),
              len(children))
    root.insert(at, element)
