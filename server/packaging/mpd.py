"""A static DASH MPD writer (ISO/IEC 23009-1, isoff-live profile, SegmentTemplate + SegmentTimeline).

Segment times come from the packaged boxes (tfdt/trun), so the manifest states exactly what the
segments hold; encrypted adaptation sets carry the CENC and ClearKey descriptors of DASH-IF IOP 4.3
section 7 in the layout browser players accept (see `_protection`); the `pssh` box is in the init
segments only.
"""

from __future__ import annotations

import uuid
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from fractions import Fraction
from typing import Literal

from server.formats.dash import (
    AUDIO_CHANNEL_SCHEME,
    CENC_NS,
    CLEARKEY_SCHEME,
    DASHIF_NS,
    MP4_PROTECTION_SCHEME,
    MPD_NS,
    PROFILE_LIVE,
    ROLE_SCHEME,
)


@dataclass(frozen=True, kw_only=True, slots=True)
class MpdProtection:
    """CENC signalling for one adaptation set: its default KID and the ClearKey license server URL."""

    default_kid: uuid.UUID
    license_url: str

    def __post_init__(self) -> None:
        if not self.license_url:
            raise ValueError("license_url must not be empty")


@dataclass(frozen=True, kw_only=True, slots=True)
class MpdRepresentation:
    id: str
    bandwidth_bps: int
    codecs: str
    width: int | None = None
    height: int | None = None
    frame_rate: Fraction | None = None
    sample_rate_hz: int | None = None
    channels: int | None = None

    def __post_init__(self) -> None:
        if self.bandwidth_bps <= 0:
            raise ValueError(f"representation {self.id}: bandwidth_bps must be > 0")


@dataclass(frozen=True, kw_only=True, slots=True)
class MpdAdaptationSet:
    """One adaptation set; every representation shares the same segment timeline (aligned)."""

    content_type: Literal["video", "audio"]
    mime_type: str
    timescale: int
    presentation_time_offset: int
    segment_starts: tuple[int, ...]  # media time of each segment's earliest presentation
    segment_durations: tuple[int, ...]  # timescale units
    initialization: str  # SegmentTemplate@initialization, with $RepresentationID$
    media: str  # SegmentTemplate@media, with $RepresentationID$ and $Number$
    representations: tuple[MpdRepresentation, ...]
    protection: MpdProtection | None = None
    lang: str = "und"

    def __post_init__(self) -> None:
        if self.timescale <= 0:
            raise ValueError("timescale must be > 0")
        if not self.segment_durations or len(self.segment_starts) != len(self.segment_durations):
            raise ValueError("segment_starts and segment_durations must be non-empty and of equal length")
        if not self.representations:
            raise ValueError(f"{self.content_type} adaptation set has no representations")


def _iso_duration(seconds: float) -> str:
    return f"PT{seconds:.3f}S"


def _rate(value: Fraction) -> str:
    return str(value.numerator) if value.denominator == 1 else f"{value.numerator}/{value.denominator}"


def _timeline(parent: ET.Element, starts: tuple[int, ...], durations: tuple[int, ...]) -> None:
    """SegmentTimeline with runs of equal, contiguous segments folded into S@r."""
    timeline = ET.SubElement(parent, "SegmentTimeline")
    i = 0
    while i < len(durations):
        j = i
        while (
            j + 1 < len(durations)
            and durations[j + 1] == durations[i]
            and starts[j + 1] == starts[j] + durations[j]
        ):
            j += 1
        attrs = {"d": str(durations[i])}
        if i == 0 or starts[i] != starts[i - 1] + durations[i - 1]:
            attrs = {"t": str(starts[i]), **attrs}
        if j > i:
            attrs["r"] = str(j - i)
        ET.SubElement(timeline, "S", attrs)
        i = j + 1


def _protection(parent: ET.Element, protection: MpdProtection) -> None:
    """The CENC descriptor with the default KID, then the ClearKey one with its license URL.

    This is the layout dash.js 5 and Shaka Player 5 play with Chromium's ClearKey CDM (DASH-IF IOP
    4.3 7.6.2.4 and DASH-IF CPS): no `cenc:pssh` in the ClearKey descriptor, because dash.js passes a
    ClearKey descriptor's init data to `generateRequest` as 'keyids' (a pssh box there is rejected)
    and builds the right `{"kids": [...]}` itself from `cenc:default_KID`; and no W3C common-PSSH
    (`urn:uuid:1077efec-...`) descriptor, which dash.js also takes for ClearKey with the pssh as
    'keyids' init data. The W3C common pssh stays in every init segment, where a player that waits
    for the media's 'encrypted' event (Shaka) finds it as 'cenc' init data; ours takes the KIDs from
    `cenc:default_KID`. dash.js, Shaka and ours all read the URL from `dashif:Laurl` (namespace
    https://dashif.org/CPS).
    """
    ET.SubElement(
        parent,
        "ContentProtection",
        {
            "schemeIdUri": MP4_PROTECTION_SCHEME,
            "value": "cenc",
            "cenc:default_KID": str(protection.default_kid),
        },
    )
    clearkey = ET.SubElement(parent, "ContentProtection", {"schemeIdUri": CLEARKEY_SCHEME, "value": "ClearKey1.0"})
    ET.SubElement(clearkey, "dashif:Laurl").text = protection.license_url


def build_mpd(
    *,
    title: str,
    duration_s: float,
    min_buffer_time_s: float,
    adaptation_sets: tuple[MpdAdaptationSet, ...],
) -> bytes:
    """The MPD document (UTF-8 XML) of a static presentation with one period."""
    if duration_s <= 0:
        raise ValueError("duration_s must be > 0")
    root = ET.Element(
        "MPD",
        {
            "xmlns": MPD_NS,
            "xmlns:cenc": CENC_NS,
            "xmlns:dashif": DASHIF_NS,
            "type": "static",
            "profiles": PROFILE_LIVE,
            "mediaPresentationDuration": _iso_duration(duration_s),
            "minBufferTime": _iso_duration(min_buffer_time_s),
        },
    )
    info = ET.SubElement(root, "ProgramInformation")
    ET.SubElement(info, "Title").text = title
    period = ET.SubElement(root, "Period", {"id": "0", "start": "PT0S"})
    for index, aset in enumerate(adaptation_sets):
        attrs = {
            "id": str(index),
            "contentType": aset.content_type,
            "mimeType": aset.mime_type,
            "segmentAlignment": "true",
            "startWithSAP": "1",
        }
        reps = aset.representations
        if aset.content_type == "video":
            attrs["maxWidth"] = str(max(r.width or 0 for r in reps))
            attrs["maxHeight"] = str(max(r.height or 0 for r in reps))
            rates = [r.frame_rate for r in reps if r.frame_rate is not None]
            if rates:
                attrs["maxFrameRate"] = _rate(max(rates))
            attrs["par"] = _par(reps[-1])
        else:
            attrs["lang"] = aset.lang
        element = ET.SubElement(period, "AdaptationSet", attrs)
        if aset.protection is not None:
            _protection(element, aset.protection)
        ET.SubElement(element, "Role", {"schemeIdUri": ROLE_SCHEME, "value": "main"})
        template = ET.SubElement(
            element,
            "SegmentTemplate",
            {
                "timescale": str(aset.timescale),
                "presentationTimeOffset": str(aset.presentation_time_offset),
                "initialization": aset.initialization,
                "media": aset.media,
                "startNumber": "1",
            },
        )
        _timeline(template, aset.segment_starts, aset.segment_durations)
        for rep in reps:
            rep_attrs = {"id": rep.id, "bandwidth": str(rep.bandwidth_bps), "codecs": rep.codecs}
            if aset.content_type == "video":
                rep_attrs.update(width=str(rep.width), height=str(rep.height), sar="1:1")
                if rep.frame_rate is not None:
                    rep_attrs["frameRate"] = _rate(rep.frame_rate)
            elif rep.sample_rate_hz is not None:
                rep_attrs["audioSamplingRate"] = str(rep.sample_rate_hz)
            rep_el = ET.SubElement(element, "Representation", rep_attrs)
            if rep.channels is not None:
                ET.SubElement(
                    rep_el, "AudioChannelConfiguration", {"schemeIdUri": AUDIO_CHANNEL_SCHEME, "value": str(rep.channels)}
                )
    ET.indent(root)
    return ET.tostring(root, encoding="utf-8", xml_declaration=True) + b"\n"


def _par(rep: MpdRepresentation) -> str:
    """Picture aspect ratio as reduced W:H (sar is 1:1, so it is the pixel ratio)."""
    ratio = Fraction(rep.width or 1, rep.height or 1)
    return f"{ratio.numerator}:{ratio.denominator}"
