"""The MPD reader: `parse_mpd` walks the document from MPD to Representation (ISO/IEC 23009-1
5.3), inheriting attributes and BaseURLs level by level, and hands segment addressing on.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import TypeVar
from urllib.parse import urlsplit
from xml.etree.ElementTree import Element

from player.client.mpd.addressing import _SegmentReader, _Timing
from player.client.mpd.limits import (
    DEFAULT_MAX_SEGMENT_URLS,
    MAX_BANDWIDTH_BPS,
    MAX_BASE_URL_CHOICES,
    MAX_DIMENSION_PX,
    MpdError,
)
from player.client.mpd.model import AdaptationSet, ContentProtection, ContentType, Manifest, Period, Representation
from player.client.mpd.safexml import _parse_xml, _utf8
from player.client.mpd.values import _duration_s, _frame_rate, _join, _kid, _q, _sampling_rate_hz, _show, _uint
from server.formats.dash import CENC_NS, MPD_NS

_T = TypeVar("_T")
_DEFAULT_KID_ATTR = f"{{{CENC_NS}}}default_KID"
_PSSH_TAG = f"{{{CENC_NS}}}pssh"


def parse_mpd(text: str | bytes, url: str, *, max_segment_urls: int = DEFAULT_MAX_SEGMENT_URLS) -> Manifest:
    """Parses an MPD fetched from `url` (relative references resolve against it, RFC 3986).

    Raises `MpdError` for malformed or hostile input: not UTF-8, not well-formed, any DTD
    (so no XXE or entity expansion), wrong root namespace, invalid or absurd values, or more than
    `max_segment_urls` segment URLs in all (a segment with k BaseURL choices counts k).
    """
    if not urlsplit(url).scheme:
        raise MpdError(f"the MPD URL must be absolute, got {_show(url)}")
    root = _parse_xml(_utf8(text))
    if root.tag != _q("MPD"):
        raise MpdError(
            f"the root element is {_show(root.tag)}, expected MPD in namespace {MPD_NS} (ISO/IEC 23009-1 5.3.1)"
        )
    return _Reader(url, max_segment_urls).manifest(root)


class _Reader(_SegmentReader):
    """Walks one MPD document: Periods, AdaptationSets, Representations and BaseURLs."""

    # -- MPD and Periods (5.3.1, 5.3.2) --

    def manifest(self, root: Element) -> Manifest:
        where = "MPD"
        kind = root.get("type", "static").strip()
        if kind not in ("static", "dynamic"):
            raise MpdError(f"MPD@type={_show(kind)} must be 'static' or 'dynamic'")
        duration_s = _duration_s(root, "mediaPresentationDuration", where)
        min_buffer_s = _duration_s(root, "minBufferTime", where, allow_zero=True)
        if min_buffer_s is None:
            raise MpdError("MPD: the required attribute @minBufferTime is missing")
        start_time = None
        if (raw_time := root.get("availabilityStartTime")) is not None:
            try:
                start_time = datetime.fromisoformat(raw_time.strip())
            except ValueError:
                raise MpdError(f"MPD@availabilityStartTime={_show(raw_time)} is not an xs:dateTime") from None
        self.dynamic = kind == "dynamic"
        fetched_from = self.url
        location = self.location(root)
        if location is not None:
            self.url = location  # dash.js does the same: relative references resolve against the Location
        bases = self.base_urls((self.url,), root, where)
        period_els = root.findall(_q("Period"))
        if not period_els:
            raise MpdError("MPD has no Period")
        timings = _period_timings(period_els, duration_s)
        periods = tuple(
            self.period(el, index, timing, bases) for index, (el, timing) in enumerate(zip(period_els, timings))
        )
        if duration_s is None and kind == "static" and timings[-1].period_duration_s is not None:
            duration_s = timings[-1].period_start_s + timings[-1].period_duration_s
        return Manifest(
            url=fetched_from,
            type=kind,  # type: ignore[arg-type]  # checked above
            duration_s=duration_s,
            min_buffer_s=min_buffer_s,
            max_segment_duration_s=_duration_s(root, "maxSegmentDuration", where),
            periods=periods,
            availability_start_time=start_time,
            minimum_update_period_s=_duration_s(root, "minimumUpdatePeriod", where, allow_zero=True),
            time_shift_buffer_depth_s=_duration_s(root, "timeShiftBufferDepth", where, allow_zero=True),
            location=location,
            **(_dynamic_fields(root, where) if kind == "dynamic" else {}),
        )

    def location(self, root: Element) -> str | None:
        """The first MPD/Location (5.3.1.2: where the MPD is available), resolved against the URL it
        was fetched from; it must be http(s)."""
        element = root.find(_q("Location"))
        if element is None or not (element.text or "").strip():
            return None
        resolved = _join(self.url, (element.text or "").strip(), "MPD/Location")
        if urlsplit(resolved).scheme not in ("http", "https"):
            raise MpdError(f"MPD/Location={_show(resolved)} is not an http(s) URL")
        return resolved

    def period(self, el: Element, index: int, timing: _Timing, parent_bases: tuple[str, ...]) -> Period:
        where = f"Period[{index}]" + (f" id={_show(el.get('id', ''))}" if el.get("id") else "")
        bases = self.base_urls(parent_bases, el, where)
        sets = tuple(
            self.adaptation_set(aset, (el,), f"{where}/AdaptationSet[{i}]", timing, bases)
            for i, aset in enumerate(el.findall(_q("AdaptationSet")))
        )
        seen: set[str] = set()
        for rep in (rep for aset in sets for rep in aset.representations):
            if rep.id in seen:
                raise MpdError(f"{where}: Representation@id={_show(rep.id)} is used twice (5.3.5.2: unique per Period)")
            seen.add(rep.id)
        return Period(
            id=el.get("id"), start_s=timing.period_start_s, duration_s=timing.period_duration_s, base_urls=bases,
            adaptation_sets=sets,
        )

    # -- AdaptationSet and Representation (5.3.3, 5.3.5) --

    def adaptation_set(
        self, el: Element, outer: tuple[Element, ...], where: str, timing: _Timing, parent_bases: tuple[str, ...]
    ) -> AdaptationSet:
        bases = self.base_urls(parent_bases, el, where)
        protection = _content_protections(el, where)
        rep_els = el.findall(_q("Representation"))
        if not rep_els:
            raise MpdError(f"{where}: has no Representation")
        reps = [
            self.representation(rep, el, outer + (el,), where, timing, bases, protection)
            for rep in rep_els
        ]
        reps.sort(key=lambda r: r.bandwidth_bps)  # stable: equal bandwidths keep document order
        return AdaptationSet(
            id=el.get("id"),
            content_type=_content_type(el, rep_els[0]),
            lang=el.get("lang"),
            representations=tuple(reps),
            content_protection=protection,
        )

    def representation(
        self,
        el: Element,
        aset: Element,
        outer: tuple[Element, ...],
        parent_where: str,
        timing: _Timing,
        parent_bases: tuple[str, ...],
        set_protection: tuple[ContentProtection, ...],
    ) -> Representation:
        rep_id = el.get("id")
        if rep_id is None or not rep_id.strip():
            raise MpdError(f"{parent_where}/Representation: the required attribute @id is missing or empty")
        where = f"{parent_where}/Representation id={_show(rep_id)}"
        bandwidth_bps = _uint(el, "bandwidth", where, minimum=1, maximum=MAX_BANDWIDTH_BPS)
        if bandwidth_bps is None:
            raise MpdError(f"{where}: the required attribute @bandwidth is missing")
        # Common attributes (5.3.7) set on the AdaptationSet apply to its Representations.
        common = ((el, where), (aset, parent_where))
        width = _inherited(common, lambda e, w: _uint(e, "width", w, minimum=1, maximum=MAX_DIMENSION_PX))
        height = _inherited(common, lambda e, w: _uint(e, "height", w, minimum=1, maximum=MAX_DIMENSION_PX))
        rep_protection = _content_protections(el, where)
        bases = self.base_urls(parent_bases, el, where)
        addressing = self.addressing(
            outer + (el,), where, timing, bases, {"RepresentationID": rep_id, "Bandwidth": bandwidth_bps}
        )
        return Representation(
            id=rep_id,
            bandwidth_bps=bandwidth_bps,
            mime_type=_inherited(common, lambda e, w: e.get("mimeType")),
            codecs=_inherited(common, lambda e, w: e.get("codecs")),
            width=width,
            height=height,
            frame_rate=_inherited(common, _frame_rate),
            audio_sampling_rate_hz=_inherited(common, _sampling_rate_hz),
            base_urls=bases,
            init=addressing.init,
            segments=addressing.segments,
            segment_duration_s=addressing.nominal_s,
            period_start_s=timing.period_start_s,
            presentation_time_offset_s=addressing.pto_s,
            index_range=addressing.index_range,
            content_protection=set_protection + rep_protection,
            live=addressing.live,
        )

    # -- BaseURL (5.6) --

    def base_urls(self, parents: tuple[str, ...], el: Element, where: str) -> tuple[str, ...]:
        """Each BaseURL of `el` resolved against each parent choice (5.6.4); several BaseURLs are
        alternatives (5.6.5), kept in document order, primary first."""
        refs = [(b.text or "").strip() for b in el.findall(_q("BaseURL"))]
        if not refs:
            return parents
        if len(refs) > MAX_BASE_URL_CHOICES:
            raise MpdError(f"{where}: has {len(refs)} BaseURL elements, more than {MAX_BASE_URL_CHOICES}")
        choices = dict.fromkeys(_join(parent, ref, f"{where}/BaseURL") for parent in parents for ref in refs)
        allowed = {"http", "https", urlsplit(self.url).scheme}  # file: in tests that read MPDs from disk
        for choice in choices:
            if urlsplit(choice).scheme not in allowed:
                raise MpdError(f"{where}/BaseURL: {_show(choice)} is not an http(s) URL")
        if len(choices) > MAX_BASE_URL_CHOICES:
            raise MpdError(f"{where}: BaseURLs combine into {len(choices)} choices, more than {MAX_BASE_URL_CHOICES}")
        return tuple(choices)


def _xs_datetime(root: Element, name: str) -> datetime | None:
    raw = root.get(name)
    if raw is None:
        return None
    try:
        return datetime.fromisoformat(raw.strip())
    except ValueError:
        raise MpdError(f"MPD@{name}={_show(raw)} is not an xs:dateTime") from None


def _dynamic_fields(root: Element, where: str) -> dict[str, object]:
    """What a live player needs from a dynamic MPD (5.3.1.2, 5.8.4.11 UTCTiming, Annex K)."""
    if root.get("availabilityStartTime") is None:
        raise MpdError("MPD: a dynamic MPD needs @availabilityStartTime (5.3.1.2)")
    timings = []
    for i, el in enumerate(root.findall(_q("UTCTiming"))):
        scheme, value = (el.get("schemeIdUri") or "").strip(), (el.get("value") or "").strip()
        if not scheme or not value:
            raise MpdError(f"MPD/UTCTiming[{i}]: needs @schemeIdUri and @value")
        timings.append((scheme, value))
    target_s = rates = None
    service = root.find(_q("ServiceDescription"))
    if service is not None:
        latency, rate = service.find(_q("Latency")), service.find(_q("PlaybackRate"))
        if latency is not None and latency.get("target") is not None:
            target_ms = _uint(latency, "target", "ServiceDescription/Latency", minimum=1, maximum=3_600_000)
            target_s = None if target_ms is None else target_ms / 1000
        if rate is not None:
            try:
                low, high = float(rate.get("min", "1")), float(rate.get("max", "1"))
            except ValueError:
                raise MpdError("ServiceDescription/PlaybackRate: @min and @max must be numbers") from None
            if not 0 < low <= 1 <= high < 2:
                raise MpdError(f"ServiceDescription/PlaybackRate: needs 0 < @min <= 1 <= @max < 2, got {low}..{high}")
            rates = (low, high)
    return {
        "publish_time": _xs_datetime(root, "publishTime"),
        "suggested_presentation_delay_s": _duration_s(root, "suggestedPresentationDelay", where, allow_zero=True),
        "utc_timing": tuple(timings),
        "target_latency_s": target_s,
        "playback_rate_range": rates,
    }


def _inherited(levels: Sequence[tuple[Element, str]], read: Callable[[Element, str], _T | None]) -> _T | None:
    """The first value `read(element, where)` finds, innermost level first."""
    for level, where in levels:
        value = read(level, where)
        if value is not None:
            return value
    return None


def _period_timings(periods: list[Element], mpd_duration_s: float | None) -> list[_Timing]:
    """PeriodStart and duration of each Period (5.3.2.1)."""
    starts: list[float] = []
    durations: list[float | None] = []
    for index, el in enumerate(periods):
        where = f"Period[{index}]"
        start = _duration_s(el, "start", where, allow_zero=True)
        if start is None:
            if index == 0:
                start = 0.0  # static: 0; dynamic: we take the first Period to start at 0 as well
            elif durations[-1] is not None:
                start = starts[-1] + durations[-1]
            else:
                raise MpdError(f"{where}: has no @start and the previous Period has no @duration")
        if starts and start < starts[-1]:
            raise MpdError(f"{where}: @start={start} s is before the previous Period's start {starts[-1]} s")
        starts.append(start)
        durations.append(_duration_s(el, "duration", where))
    timings = []
    for index, start in enumerate(starts):
        duration = durations[index]
        if duration is None:
            if index + 1 < len(starts):
                duration = starts[index + 1] - start
            elif mpd_duration_s is not None:
                duration = mpd_duration_s - start
            if duration is not None and duration <= 0:
                raise MpdError(f"Period[{index}]: ends before it starts (the next Period or the MPD ends first)")
        timings.append(_Timing(start, duration))
    return timings


def _content_type(aset: Element, first_rep: Element) -> ContentType:
    """AdaptationSet@contentType, else the mimeType's major type, else the codecs (5.3.3.2)."""
    declared = (aset.get("contentType") or "").strip().lower()
    if declared in ("video", "audio", "text", "image"):
        return declared  # type: ignore[return-value]
    codecs = (aset.get("codecs") or first_rep.get("codecs") or "").strip().lower()
    mime = (aset.get("mimeType") or first_rep.get("mimeType") or "").strip().lower()
    major = mime.split("/", 1)[0]
    if major in ("video", "audio", "text", "image"):
        return major  # type: ignore[return-value]
    if mime == "application/ttml+xml" or codecs.startswith(("stpp", "wvtt")):
        return "text"
    if codecs.startswith(("avc", "hev", "hvc", "vp0", "vp8", "vp9", "av01", "dvh")):
        return "video"
    if codecs.startswith(("mp4a", "ac-3", "ec-3", "ac-4", "opus", "flac", "dtsc", "mha")):
        return "audio"
    return "other"


def _content_protections(el: Element, where: str) -> tuple[ContentProtection, ...]:
    """The ContentProtection children of an AdaptationSet or Representation (5.8.4.1)."""
    return tuple(
        _content_protection(cp, f"{where}/ContentProtection[{i}]")
        for i, cp in enumerate(el.findall(_q("ContentProtection")))
    )


def _content_protection(el: Element, where: str) -> ContentProtection:
    scheme = el.get("schemeIdUri")
    if scheme is None or not scheme.strip():
        raise MpdError(f"{where}: the required attribute @schemeIdUri is missing")
    raw_kid = el.get(_DEFAULT_KID_ATTR)
    laurl = None
    pssh: list[bytes] = []
    for child in el:
        if not isinstance(child.tag, str):
            continue
        local = child.tag.rsplit("}", 1)[-1]
        # DASH-IF IOP 4.3 7.6.2.4 writes dashif:Laurl; newer DASH-IF CPS texts write dashif:laurl.
        if local.lower() == "laurl" and laurl is None and (child.text or "").strip():
            laurl = (child.text or "").strip()
        elif child.tag == _PSSH_TAG:
            text = "".join((child.text or "").split())
            try:
                pssh.append(base64.b64decode(text, validate=True))
            except (binascii.Error, ValueError):
                raise MpdError(f"{where}/cenc:pssh: is not base64 ({_show(text)})") from None
    return ContentProtection(
        scheme_id_uri=scheme.strip(),
        value=el.get("value"),
        default_kid=_kid(raw_kid, where) if raw_kid is not None else None,
        laurl=laurl,
        pssh=tuple(pssh),
    )
