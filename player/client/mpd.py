"""DASH MPD reader (ISO/IEC 23009-1): hostile input in, frozen dataclasses out.

`parse_mpd(text, url)` lists every media segment of every Representation with absolute URLs (one
per BaseURL failover choice) and times in seconds; anything malformed or hostile raises `MpdError`.
Pure parsing, no network I/O. What is supported and what is not: docs/MPD.md.
"""

from __future__ import annotations

import base64
import binascii
import math
import re
import statistics
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from fractions import Fraction
from typing import Literal, TypeVar
from urllib.parse import urljoin, urlsplit
from xml.etree.ElementTree import Element, ParseError

import defusedxml.ElementTree as safe_et
from defusedxml import DefusedXmlException, DTDForbidden, EntitiesForbidden, ExternalReferenceForbidden

from server.formats.boxes import Mp4FormatError, read_sidx
from server.formats.dash import CENC_NS, CLEARKEY_SCHEME, MPD_NS

# Limits against hostile manifests. A segment costs ~300 bytes in memory and each further BaseURL
# choice ~100 more, so the default budget of segment URLs keeps a parsed MPD under ~80 MB (24 h of
# 2 s segments in 5 renditions) and its parse around a second.
DEFAULT_MAX_SEGMENT_URLS = 250_000
# The element tree costs ~400 bytes an element and ~300 an attribute, so these keep it under
# ~100 MB; real MPDs are far smaller (our 60 s title's is 4 kB; 3 h as SegmentList in 10
# renditions, ~2 MB and 55,000 tags).
MAX_MPD_BYTES = 4 * 1024 * 1024
MAX_MPD_TAGS = 100_000  # counted as '<' characters
MAX_MPD_ATTRIBUTES = 200_000  # counted as '=' characters
MAX_BASE_URL_CHOICES = 16  # failover alternatives per Representation after combining the levels
MAX_DIMENSION_PX = 32_768
MAX_BANDWIDTH_BPS = 10**11
MAX_SAMPLE_RATE_HZ = 10**7
MAX_FRAME_RATE = Fraction(10_000)
MAX_DURATION_S = 1e9  # ~31 years
MAX_FORMAT_WIDTH = 32  # $Number%0<width>d$
_MAX_UINT32 = 2**32 - 1
_MAX_UINT64 = 2**64 - 1
_MAX_INT32 = 2**31 - 1
_COUNT_TOLERANCE = 1e-6  # ceil() of float segment counts forgives this much rounding error

ContentType = Literal["video", "audio", "text", "image", "other"]
_T = TypeVar("_T")


class MpdError(ValueError):
    """The MPD is malformed, hostile or uses a feature this reader does not support.

    The message names the element, attribute and value at fault.
    """


# --------------------------------------------------------------------------- data model
@dataclass(frozen=True, kw_only=True, slots=True)
class SegmentRef:
    """One media (or initialization) segment.

    `start_s` is on the presentation timeline (seconds from the start of the first Period);
    `urls` holds one absolute URL per BaseURL failover choice, primary first; `byte_range` is
    `(first_byte, last_byte)`, both inclusive as in an HTTP `Range: bytes=first-last` header, or
    None for the whole resource. An initialization segment has number 0 and duration 0.
    """

    number: int
    start_s: float
    duration_s: float
    urls: tuple[str, ...]
    byte_range: tuple[int, int] | None = None

    @property
    def url(self) -> str:
        """The primary URL (the first BaseURL choice)."""
        return self.urls[0]

    @property
    def end_s(self) -> float:
        return self.start_s + self.duration_s


@dataclass(frozen=True, kw_only=True, slots=True)
class ContentProtection:
    """A ContentProtection descriptor (ISO/IEC 23009-1 5.8.4.1; CENC signalling ISO/IEC 23001-7 11.2).

    `default_kid` is 32 lowercase hex digits; `laurl` is the license server URL of a DASH-IF
    `Laurl` element, verbatim (our packager writes `abrkit:license-url`, which the edge replaces);
    `pssh` holds the decoded `cenc:pssh` boxes.
    """

    scheme_id_uri: str
    value: str | None = None
    default_kid: str | None = None
    laurl: str | None = None
    pssh: tuple[bytes, ...] = ()

    @property
    def is_clearkey(self) -> bool:
        return self.scheme_id_uri.lower() == CLEARKEY_SCHEME


@dataclass(frozen=True, kw_only=True, slots=True)
class Representation:
    """One rendition and its segments.

    `segments` is empty for a SegmentBase Representation until its index is read: fetch
    `index_range` of `base_urls[0]` and call `with_sidx(data)`. `segment_duration_s` is the nominal
    duration (the template's or list's @duration, else the median of the listed segments; None when
    no segment is known yet). `presentation_time_offset_s` is the media time at the Period start.
    """

    id: str
    bandwidth_bps: int
    mime_type: str | None
    codecs: str | None
    width: int | None
    height: int | None
    frame_rate: Fraction | None  # frames per second
    audio_sampling_rate_hz: int | None
    base_urls: tuple[str, ...]
    init: SegmentRef | None
    segments: tuple[SegmentRef, ...]
    segment_duration_s: float | None
    period_start_s: float
    presentation_time_offset_s: float = 0.0
    index_range: tuple[int, int] | None = None
    content_protection: tuple[ContentProtection, ...] = ()

    @property
    def segment_count(self) -> int:
        return len(self.segments)

    def with_sidx(self, data: bytes) -> Representation:
        """This SegmentBase Representation with its segments read from the bytes of `index_range`."""
        if self.index_range is None:
            raise MpdError(f"Representation {self.id!r} has no SegmentBase@indexRange to read a sidx from")
        segments = tuple(
            parse_sidx(
                data,
                self.index_range[0],
                urls=self.base_urls,
                start_s=self.period_start_s - self.presentation_time_offset_s,
            )
        )
        return replace(self, segments=segments, segment_duration_s=_median_duration_s(segments))


@dataclass(frozen=True, kw_only=True, slots=True)
class AdaptationSet:
    """A set of interchangeable Representations, in ascending bandwidth."""

    id: str | None
    content_type: ContentType
    lang: str | None
    representations: tuple[Representation, ...]
    content_protection: tuple[ContentProtection, ...] = ()

    def clearkey_laurl(self) -> str | None:
        """The ClearKey license URL of this set (or of one of its Representations), if signalled."""
        return _clearkey_laurl(self.all_content_protection())

    def default_kids(self) -> tuple[str, ...]:
        """The distinct default KIDs (32 lowercase hex) of this set and its Representations."""
        return _default_kids(self.all_content_protection())

    def all_content_protection(self) -> Iterable[ContentProtection]:
        """The descriptors of this set, then those of its Representations."""
        yield from self.content_protection
        for rep in self.representations:
            yield from rep.content_protection


@dataclass(frozen=True, kw_only=True, slots=True)
class Period:
    """A Period: `start_s` on the presentation timeline, `duration_s` None when unknown (live)."""

    id: str | None
    start_s: float
    duration_s: float | None
    base_urls: tuple[str, ...]
    adaptation_sets: tuple[AdaptationSet, ...]

    @property
    def video(self) -> AdaptationSet | None:
        return self.first_of("video")

    @property
    def audio(self) -> AdaptationSet | None:
        return self.first_of("audio")

    def first_of(self, content_type: ContentType) -> AdaptationSet | None:
        return next((a for a in self.adaptation_sets if a.content_type == content_type), None)


@dataclass(frozen=True, kw_only=True, slots=True)
class Manifest:
    """A parsed MPD. `video`/`audio` are the first such adaptation sets of the first Period."""

    url: str
    type: Literal["static", "dynamic"]
    duration_s: float | None
    min_buffer_s: float
    max_segment_duration_s: float | None
    periods: tuple[Period, ...]
    availability_start_time: datetime | None = None
    minimum_update_period_s: float | None = None
    time_shift_buffer_depth_s: float | None = None

    @property
    def video(self) -> AdaptationSet | None:
        return self.periods[0].video

    @property
    def audio(self) -> AdaptationSet | None:
        return self.periods[0].audio

    def adaptation_sets(self) -> Iterable[AdaptationSet]:
        """The adaptation sets of every Period, in order."""
        for period in self.periods:
            yield from period.adaptation_sets

    def clearkey_laurl(self) -> str | None:
        """The first ClearKey license URL signalled anywhere in the MPD."""
        return _clearkey_laurl(self.all_content_protection())

    def default_kids(self) -> tuple[str, ...]:
        """Every distinct default KID in the MPD, in document order."""
        return _default_kids(self.all_content_protection())

    def all_content_protection(self) -> Iterable[ContentProtection]:
        """The descriptors of every adaptation set (and its Representations), in document order."""
        for aset in self.adaptation_sets():
            yield from aset.all_content_protection()


def _clearkey_laurl(items: Iterable[ContentProtection]) -> str | None:
    return next((p.laurl for p in items if p.is_clearkey and p.laurl), None)


def _default_kids(items: Iterable[ContentProtection]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(p.default_kid for p in items if p.default_kid))


# --------------------------------------------------------------------------- entry point
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


_DECLARED_ENCODING = re.compile(rb"\A\s*<\?xml[^>]{0,200}?encoding\s*=\s*[\"']([A-Za-z0-9._-]{1,40})[\"']")


def _utf8(text: str | bytes) -> bytes:
    if isinstance(text, str):
        try:
            data = text.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise MpdError(f"the MPD text holds a character that is not valid in UTF-8 at index {exc.start}") from None
    elif isinstance(text, (bytes, bytearray, memoryview)):
        data = bytes(text)
    else:
        raise MpdError(f"the MPD must be str or bytes, got {type(text).__name__}")
    if len(data) > MAX_MPD_BYTES:
        raise MpdError(f"the MPD is {len(data)} bytes, more than the {MAX_MPD_BYTES} allowed")
    if (tags := data.count(b"<")) > MAX_MPD_TAGS:
        raise MpdError(f"the MPD has {tags} tags, more than the {MAX_MPD_TAGS} allowed")
    if (attributes := data.count(b"=")) > MAX_MPD_ATTRIBUTES:
        raise MpdError(f"the MPD has {attributes} attributes, more than the {MAX_MPD_ATTRIBUTES} allowed")
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise MpdError(f"the MPD is not valid UTF-8 (byte {exc.start})") from None
    declared = _DECLARED_ENCODING.match(data)
    if declared and declared.group(1).lower() not in (b"utf-8", b"utf8"):
        raise MpdError(f"the MPD declares encoding {declared.group(1).decode()!r}; only UTF-8 is supported")
    return data


def _parse_xml(data: bytes) -> Element:
    try:
        return safe_et.fromstring(data, forbid_dtd=True, forbid_entities=True, forbid_external=True)
    except DTDForbidden:
        raise MpdError("the MPD has a DTD (<!DOCTYPE>), refused: no entities, no external references") from None
    except EntitiesForbidden as exc:
        raise MpdError(f"the MPD declares the entity {exc.name!r}, which is refused (entity expansion)") from None
    except ExternalReferenceForbidden:
        raise MpdError("the MPD refers to an external resource, which is refused (XXE)") from None
    except DefusedXmlException as exc:
        raise MpdError(f"the MPD uses a forbidden XML construct: {exc}") from None
    except ParseError as exc:
        raise MpdError(f"the MPD is not well-formed XML: {exc}") from None


# --------------------------------------------------------------------------- values
def _q(name: str) -> str:
    return f"{{{MPD_NS}}}{name}"


_DEFAULT_KID_ATTR = f"{{{CENC_NS}}}default_KID"
_PSSH_TAG = f"{{{CENC_NS}}}pssh"
_UINT = re.compile(r"[0-9]{1,20}")
_INT = re.compile(r"-?[0-9]{1,20}")
_NUM = r"([0-9]{1,15}(?:\.[0-9]{0,15})?)"
# xs:duration restricted to non-negative values (years and months taken as 365 and 30 days)
_DURATION = re.compile(rf"P(?:{_NUM}Y)?(?:{_NUM}M)?(?:{_NUM}D)?(?:T(?:{_NUM}H)?(?:{_NUM}M)?(?:{_NUM}S)?)?")
_DURATION_UNITS_S = (365 * 86400, 30 * 86400, 86400, 3600, 60, 1)
_BYTE_RANGE = re.compile(r"([0-9]{1,20})-([0-9]{1,20})")
_FRAME_RATE = re.compile(r"([0-9]{1,10})(?:/([0-9]{1,10}))?|[0-9]{1,10}\.[0-9]{1,10}")


def _show(value: str) -> str:
    """A value for an error message, cut short (a hostile one can be megabytes long)."""
    return repr(value if len(value) <= 60 else value[:60] + "...")


def _uint(
    el: Element, name: str, where: str, *, default: int | None = None, minimum: int = 0, maximum: int = _MAX_UINT64
) -> int | None:
    raw = el.get(name)
    if raw is None:
        return default
    text = raw.strip()
    if not _UINT.fullmatch(text):
        raise MpdError(f"{where}: @{name}={_show(raw)} is not an unsigned integer")
    value = int(text)
    if not minimum <= value <= maximum:
        raise MpdError(f"{where}: @{name}={_show(raw)} is out of range [{minimum}, {maximum}]")
    return value


def _required_uint(el: Element, name: str, where: str, *, minimum: int = 0, maximum: int = _MAX_UINT64) -> int:
    value = _uint(el, name, where, minimum=minimum, maximum=maximum)
    if value is None:
        raise MpdError(f"{where}: the required attribute @{name} is missing")
    return value


def _signed(el: Element, name: str, where: str, *, default: int, minimum: int, maximum: int) -> int:
    raw = el.get(name)
    if raw is None:
        return default
    text = raw.strip()
    if not _INT.fullmatch(text) or not minimum <= int(text) <= maximum:
        raise MpdError(f"{where}: @{name}={_show(raw)} is not a whole number in [{minimum}, {maximum}]")
    return int(text)


def _duration_s(el: Element, name: str, where: str, *, allow_zero: bool = False) -> float | None:
    """An xs:duration attribute in seconds (ISO/IEC 23009-1 uses it for every time attribute)."""
    raw = el.get(name)
    if raw is None:
        return None
    text = raw.strip()
    match = _DURATION.fullmatch(text)
    if match is None or text in ("P", "PT") or text.endswith("T"):
        raise MpdError(f"{where}: @{name}={_show(raw)} is not a non-negative xs:duration like PT4.5S")
    seconds = sum(float(part) * unit for part, unit in zip(match.groups(), _DURATION_UNITS_S) if part)
    if not math.isfinite(seconds) or seconds > MAX_DURATION_S:
        raise MpdError(f"{where}: @{name}={_show(raw)} is longer than {MAX_DURATION_S:.0f} s")
    if seconds == 0 and not allow_zero:
        raise MpdError(f"{where}: @{name}={_show(raw)} must be greater than zero")
    return seconds


def _byte_range(el: Element, name: str, where: str) -> tuple[int, int] | None:
    raw = el.get(name)
    if raw is None:
        return None
    match = _BYTE_RANGE.fullmatch(raw.strip())
    if match is None:
        raise MpdError(f"{where}: @{name}={_show(raw)} is not a byte range FIRST-LAST")
    first, last = int(match.group(1)), int(match.group(2))
    if first > last or last > _MAX_UINT64:
        raise MpdError(f"{where}: @{name}={_show(raw)} is not a byte range with FIRST <= LAST")
    return first, last


def _frame_rate(el: Element, where: str) -> Fraction | None:
    """@frameRate: an integer or a ratio like 30000/1001 (5.3.7.2; decimals accepted too)."""
    raw = el.get("frameRate")
    if raw is None:
        return None
    text = raw.strip()
    match = _FRAME_RATE.fullmatch(text)
    if match is None or match.group(2) == "0":
        raise MpdError(f"{where}: @frameRate={_show(raw)} is not a frame rate like 24 or 30000/1001")
    rate = Fraction(text)
    if not 0 < rate <= MAX_FRAME_RATE:
        raise MpdError(f"{where}: @frameRate={_show(raw)} is out of range (0, {MAX_FRAME_RATE}]")
    return rate


def _sampling_rate_hz(el: Element, where: str) -> int | None:
    """@audioSamplingRate: one rate, or 'min max' for a variable rate (we keep the first)."""
    raw = el.get("audioSamplingRate")
    if raw is None:
        return None
    first = raw.split()[0] if raw.split() else ""
    if not _UINT.fullmatch(first) or not 0 < int(first) <= MAX_SAMPLE_RATE_HZ:
        raise MpdError(f"{where}: @audioSamplingRate={_show(raw)} is not a rate in (0, {MAX_SAMPLE_RATE_HZ}] Hz")
    return int(first)


def _kid(raw: str, where: str) -> str:
    try:
        return uuid.UUID(raw.strip()).hex
    except ValueError:
        raise MpdError(f"{where}: @cenc:default_KID={_show(raw)} is not a UUID") from None


def _join(base: str, reference: str, where: str) -> str:
    try:
        return urljoin(base, reference)
    except ValueError as exc:
        raise MpdError(f"{where}: cannot resolve URL {_show(reference)} against {_show(base)}: {exc}") from None


class _Resolver:
    """Resolves references against a Representation's BaseURL choices (RFC 3986 5.2, deduplicated).

    urljoin costs ~8 us, too much for 10^5 segments, so a reference whose last path segment is plain
    (no ':', '?', '#', whitespace or control characters, not a dot segment) is resolved as the
    resolution of its directory, done once per directory, plus that last segment: the same result,
    because a plain last segment is only appended by the merge (5.2.3) and dot removal (5.2.4).
    """

    def __init__(self, bases: tuple[str, ...], where: str) -> None:
        self.bases = bases
        self.where = where
        self.directories: dict[str, tuple[str, ...] | None] = {}

    def __call__(self, reference: str) -> tuple[str, ...]:
        cut = reference.rfind("/") + 1
        last = reference[cut:]
        if last not in ("", ".", "..") and not _UNPLAIN_SEGMENT.search(last):
            prefix = reference[:cut]
            if prefix not in self.directories:
                self.directories[prefix] = self._directories(prefix)
            directories = self.directories[prefix]
            if directories is not None:
                return tuple(directory + last for directory in directories)
        return tuple(dict.fromkeys(_join(base, reference, self.where) for base in self.bases))

    def _directories(self, prefix: str) -> tuple[str, ...] | None:
        """Each choice's resolution of `prefix` + a plain segment, without that segment."""
        joined = [_join(base, prefix + "x", self.where) for base in self.bases]
        if not all(url.endswith("x") for url in joined):
            return None
        return tuple(dict.fromkeys(url[:-1] for url in joined))


_UNPLAIN_SEGMENT = re.compile(r"[\x00-\x20\x7f:?#]")


def _median_duration_s(segments: Sequence[SegmentRef]) -> float | None:
    return statistics.median(s.duration_s for s in segments) if segments else None


# --------------------------------------------------------------------------- segment templates
@dataclass(frozen=True, slots=True)
class _Field:
    name: str  # Number, Time, Bandwidth or RepresentationID
    width: int  # minimum digits, zero-padded (the %0<width>d format tag)


_MEDIA_IDS = frozenset(("RepresentationID", "Number", "Time", "Bandwidth"))
_INIT_IDS = frozenset(("RepresentationID", "Bandwidth"))  # @initialization names no segment (Table 16)
_IDENTIFIER = re.compile(r"(RepresentationID|Number|Time|Bandwidth)(?:%0([0-9]{1,9})d|%d)?")


def _compile_template(template: str, attr: str, where: str, *, allowed: frozenset[str]) -> list[str | _Field]:
    """Splits a template into literals and identifiers (ISO/IEC 23009-1 5.3.9.4.4, Table 16)."""
    pieces = template.split("$")
    if len(pieces) % 2 == 0:
        raise MpdError(f"{where}@{attr}={_show(template)} has an unpaired '$'")
    parts: list[str | _Field] = []
    for index, piece in enumerate(pieces):
        if index % 2 == 0:
            parts.append(piece)
        elif piece == "":
            parts.append("$")  # "$$" is an escaped dollar
        else:
            match = _IDENTIFIER.fullmatch(piece)
            if match is None:
                raise MpdError(f"{where}@{attr} has an unknown identifier ${_show(piece)[1:-1]}$")
            name, width = match.group(1), int(match.group(2) or 0)
            if name not in allowed:
                raise MpdError(f"{where}@{attr} may not use ${name}$")
            if width > MAX_FORMAT_WIDTH or (name == "RepresentationID" and match.group(0) != name):
                raise MpdError(
                    f"{where}@{attr} has a bad format tag in ${_show(piece)[1:-1]}$ (at most %0{MAX_FORMAT_WIDTH}d)"
                )
            parts.append(_Field(name, width))
    return parts


def _bind(parts: list[str | _Field], values: dict[str, int | str]) -> list[str | _Field]:
    """Substitutes the identifiers named in `values`, merging adjacent literals."""
    out: list[str | _Field] = []
    for part in parts:
        if isinstance(part, _Field) and part.name in values:
            value = values[part.name]
            part = value if isinstance(value, str) else f"{value:0{part.width}d}"
        if isinstance(part, str) and out and isinstance(out[-1], str):
            out[-1] += part
        else:
            out.append(part)
    return out


def _format_string(parts: list[str | _Field]) -> str:
    """A `str.format` string with `number` and `time` fields for the identifiers left in `parts`."""
    out = []
    for part in parts:
        if isinstance(part, _Field):
            out.append(f"{{{part.name.lower()}:0{part.width}d}}")
        else:
            out.append(part.replace("{", "{{").replace("}", "}}"))
    return "".join(out)


# --------------------------------------------------------------------------- the reader
@dataclass(frozen=True, slots=True)
class _Timing:
    """Where a Representation's segments sit: Period start and duration on the presentation timeline."""

    period_start_s: float
    period_duration_s: float | None


@dataclass(frozen=True, slots=True)
class _Run:
    """`count` consecutive segments of `duration` ticks from media time `time`, numbered from `number`."""

    number: int
    time: int
    duration: int
    count: int


class _Reader:
    """Walks one MPD document; holds the MPD URL and the remaining segment budget."""

    def __init__(self, url: str, max_segment_urls: int) -> None:
        self.url = url
        self.urls_left = max_segment_urls

    def take(self, count: int, choices: int, where: str) -> None:
        """Spends `count` segments of `choices` URLs each from the budget, before they are built."""
        if count * choices > self.urls_left:
            raise MpdError(
                f"{where}: describes {count} more segments with {choices} URL choice(s) each, beyond the "
                f"budget of this MPD ({self.urls_left} segment URLs left; raise max_segment_urls if this is real)"
            )
        self.urls_left -= count * choices

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
            url=self.url,
            type=kind,  # type: ignore[arg-type]  # checked above
            duration_s=duration_s,
            min_buffer_s=min_buffer_s,
            max_segment_duration_s=_duration_s(root, "maxSegmentDuration", where),
            periods=periods,
            availability_start_time=start_time,
            minimum_update_period_s=_duration_s(root, "minimumUpdatePeriod", where, allow_zero=True),
            time_shift_buffer_depth_s=_duration_s(root, "timeShiftBufferDepth", where, allow_zero=True),
        )

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
        if len(choices) > MAX_BASE_URL_CHOICES:
            raise MpdError(f"{where}: BaseURLs combine into {len(choices)} choices, more than {MAX_BASE_URL_CHOICES}")
        return tuple(choices)

    # -- segment addressing (5.3.9) --

    def addressing(
        self,
        levels: tuple[Element, ...],
        where: str,
        timing: _Timing,
        bases: tuple[str, ...],
        rep_values: dict[str, int | str],
    ) -> _Addressing:
        """The init and media segments from the innermost of SegmentBase, SegmentList or
        SegmentTemplate; its attributes are merged from the Period down to the Representation
        (5.3.9.1: the lower level overrides)."""
        kind: str | None = None
        for level in reversed(levels):
            present = [
                name for name in ("SegmentTemplate", "SegmentList", "SegmentBase") if level.find(_q(name)) is not None
            ]
            if len(present) > 1:
                raise MpdError(f"{where}: {' and '.join(present)} on the same element (5.3.9.1 allows one)")
            if present:
                kind = present[0]
                break
        if kind in (None, "SegmentBase") and bases == (self.url,):
            raise MpdError(f"{where}: no BaseURL names its media file (and there is no SegmentList or SegmentTemplate)")
        if kind is None:
            # 5.3.9.1: no segment information -> the BaseURL is the one media segment of the Period.
            duration_s = _need_period_duration(timing, where, "a Representation with only a BaseURL")
            segment = SegmentRef(number=1, start_s=timing.period_start_s, duration_s=duration_s, urls=bases)
            self.take(1, len(bases), where)
            return _Addressing(init=None, segments=(segment,), nominal_s=duration_s)
        elements: list[Element] = []
        for level in levels:
            found = level.findall(_q(kind))
            if len(found) > 1:
                raise MpdError(f"{where}: more than one {kind} on the same element")
            elements.extend(found)
        attrs: dict[str, str] = {}
        for element in elements:
            attrs.update(element.attrib)
        merged = Element(elements[-1].tag, attrs)
        spot = f"{where}: {kind}"
        timescale = _uint(merged, "timescale", spot, default=1, minimum=1, maximum=_MAX_UINT32) or 1
        pto = _uint(merged, "presentationTimeOffset", spot, default=0) or 0
        context = _SegmentContext(
            merged=merged, elements=elements, where=spot, timing=timing, bases=bases, timescale=timescale, pto=pto,
            resolve=_Resolver(bases, spot),
        )
        if kind == "SegmentTemplate":
            return self.template(context, rep_values)
        if kind == "SegmentList":
            return self.segment_list(context)
        return self.segment_base(context)

    def template(self, ctx: _SegmentContext, rep_values: dict[str, int | str]) -> _Addressing:
        """SegmentTemplate (5.3.9.4) with @duration (5.3.9.5.3) or a SegmentTimeline (5.3.9.6)."""
        media = ctx.merged.get("media")
        if media is None:
            raise MpdError(f"{ctx.where}: the required attribute @media is missing")
        media_parts = _compile_template(media, "media", ctx.where, allowed=_MEDIA_IDS)
        media_format = _format_string(_bind(media_parts, rep_values))
        start_number = _uint(ctx.merged, "startNumber", ctx.where, default=1, maximum=_MAX_UINT32) or 0
        if (init_template := ctx.merged.get("initialization")) is not None:
            parts = _compile_template(init_template, "initialization", ctx.where, allowed=_INIT_IDS)
            init_ref = _format_string(_bind(parts, rep_values)).format()
            init = ctx.segment(0, ctx.timing.period_start_s, 0.0, init_ref, None)
        else:
            init = ctx.initialization()
        timeline = ctx.child("SegmentTimeline")
        if timeline is not None:
            runs = self.timeline(timeline, ctx, start_number)
            nominal_ticks = None
        else:
            runs, nominal_ticks = self.duration_runs(ctx, start_number)
        segments = tuple(
            ctx.segment(
                number,
                ctx.timing.period_start_s + (time - ctx.pto) / ctx.timescale,
                duration / ctx.timescale,
                media_format.format(number=number, time=time),
                None,
            )
            for number, time, duration in _expand(runs)
        )
        if timeline is None:
            segments = _clip_last(segments, ctx.timing)
        nominal_s = nominal_ticks / ctx.timescale if nominal_ticks else _median_duration_s(segments)
        return _Addressing(init=init, segments=segments, nominal_s=nominal_s, pto_s=ctx.pto / ctx.timescale)

    def duration_runs(self, ctx: _SegmentContext, start_number: int) -> tuple[list[_Run], int | None]:
        """Segments of a @duration template: ceil(Period duration / @duration) of them (5.3.9.5.3),
        capped by @endNumber; without @duration, one segment spanning the Period."""
        duration = _uint(ctx.merged, "duration", ctx.where, minimum=1)
        period_s = _need_period_duration(ctx.timing, ctx.where, "a SegmentTemplate without SegmentTimeline")
        if duration is None:
            self.take(1, len(ctx.bases), ctx.where)
            return [_Run(start_number, ctx.pto, max(1, round(period_s * ctx.timescale)), 1)], None
        count = max(1, math.ceil(period_s * ctx.timescale / duration - _COUNT_TOLERANCE))
        end_number = _uint(ctx.merged, "endNumber", ctx.where)
        if end_number is not None:
            if end_number < start_number:
                raise MpdError(f"{ctx.where}: @endNumber={end_number} is below @startNumber={start_number}")
            count = min(count, end_number - start_number + 1)
        self.take(count, len(ctx.bases), ctx.where)
        return [_Run(start_number, ctx.pto, duration, count)], duration

    def timeline(self, el: Element, ctx: _SegmentContext, start_number: int) -> list[_Run]:
        """The runs of a SegmentTimeline (5.3.9.6): S@t (absolute, else where the previous run
        ended), S@d, S@r (repeats; negative: up to the next S@t or the Period end), S@n."""
        entries = el.findall(_q("S"))
        if not entries:
            raise MpdError(f"{ctx.where}/SegmentTimeline: has no S element")
        runs: list[_Run] = []
        number, end = start_number, None
        for index, entry in enumerate(entries):
            spot = f"{ctx.where}/SegmentTimeline/S[{index}]"
            duration = _required_uint(entry, "d", spot, minimum=1)
            time = _uint(entry, "t", spot)
            if time is None:
                time = end if end is not None else 0
            elif end is not None and time < end:
                raise MpdError(f"{spot}: @t={time} starts before the previous segment ends ({end})")
            restart = _uint(entry, "n", spot)
            if restart is not None:
                number = restart
            repeat = _signed(entry, "r", spot, default=0, minimum=-(2**31), maximum=_MAX_INT32)
            if repeat >= 0:
                pieces = [_Run(number, time, duration, repeat + 1)]
            else:
                if index + 1 < len(entries):
                    until = _uint(entries[index + 1], "t", spot.replace(f"S[{index}]", f"S[{index + 1}]"))
                    if until is None:
                        raise MpdError(f"{spot}: @r={repeat} needs the next S to have @t")
                else:
                    period_s = _need_period_duration(ctx.timing, spot, f"@r={repeat} on the last S")
                    until = ctx.pto + round(period_s * ctx.timescale)
                if until <= time:
                    raise MpdError(f"{spot}: @r={repeat} repeats up to {until}, which is not after @t={time}")
                # Up to the next S@t or the Period end exactly: a shorter last segment fills the remainder.
                full, rest = divmod(until - time, duration)
                pieces = [_Run(number, time, duration, full)] if full else []
                if rest:
                    pieces.append(_Run(number + full, time + full * duration, rest, 1))
            for run in pieces:
                self.take(run.count, len(ctx.bases), spot)
                runs.append(run)
                number += run.count
                end = run.time + run.count * run.duration
        return runs

    def segment_list(self, ctx: _SegmentContext) -> _Addressing:
        """SegmentList (5.3.9.3): SegmentURL@media/@mediaRange, timed by @duration or a SegmentTimeline."""
        urls: list[Element] = []
        for element in reversed(ctx.elements):  # the innermost list of SegmentURLs wins
            urls = element.findall(_q("SegmentURL"))
            if urls:
                break
        if not urls:
            raise MpdError(f"{ctx.where}: has no SegmentURL")
        start_number = _uint(ctx.merged, "startNumber", ctx.where, default=1, maximum=_MAX_UINT32) or 0
        timeline = ctx.child("SegmentTimeline")
        duration = _uint(ctx.merged, "duration", ctx.where, minimum=1)
        if timeline is not None:
            runs = self.timeline(timeline, ctx, start_number)  # takes its segments from the budget
            timed = sum(run.count for run in runs)
            if timed != len(urls):
                raise MpdError(f"{ctx.where}: {len(urls)} SegmentURLs but the SegmentTimeline has {timed} segments")
        else:
            self.take(len(urls), len(ctx.bases), ctx.where)
            if duration is not None:
                runs = [_Run(start_number, ctx.pto, duration, len(urls))]
            elif len(urls) == 1:
                period_s = _need_period_duration(ctx.timing, ctx.where, "a one-segment SegmentList without @duration")
                runs = [_Run(start_number, ctx.pto, max(1, round(period_s * ctx.timescale)), 1)]
            else:
                raise MpdError(f"{ctx.where}: several SegmentURLs need @duration or a SegmentTimeline (5.3.9.3)")
        segments = tuple(
            ctx.segment(
                number,
                ctx.timing.period_start_s + (time - ctx.pto) / ctx.timescale,
                ticks / ctx.timescale,
                url.get("media"),
                _byte_range(url, "mediaRange", f"{ctx.where}/SegmentURL[{i}]"),
            )
            for i, (url, (number, time, ticks)) in enumerate(zip(urls, _expand(runs)))
        )
        if timeline is None:
            segments = _clip_last(segments, ctx.timing)
        nominal_s = duration / ctx.timescale if duration and timeline is None else _median_duration_s(segments)
        return _Addressing(
            init=ctx.initialization(), segments=segments, nominal_s=nominal_s, pto_s=ctx.pto / ctx.timescale
        )

    def segment_base(self, ctx: _SegmentContext) -> _Addressing:
        """SegmentBase (5.3.9.2): one file indexed by a sidx at @indexRange; segments stay unknown
        until `Representation.with_sidx` reads it."""
        index_range = _byte_range(ctx.merged, "indexRange", ctx.where)
        init = ctx.initialization()
        if init is None and index_range is not None and index_range[0] > 0:
            # No Initialization element: the init segment is what precedes the index (as dash.js does).
            init = ctx.segment(0, ctx.timing.period_start_s, 0.0, None, (0, index_range[0] - 1))
        if index_range is None:
            # Without an index the whole file is one segment spanning the Period.
            duration_s = _need_period_duration(ctx.timing, ctx.where, "a SegmentBase without @indexRange")
            self.take(1, len(ctx.bases), ctx.where)
            segment = ctx.segment(1, ctx.timing.period_start_s, duration_s, None, None)
            return _Addressing(init=init, segments=(segment,), nominal_s=duration_s, pto_s=ctx.pto / ctx.timescale)
        return _Addressing(
            init=init, segments=(), nominal_s=None, pto_s=ctx.pto / ctx.timescale, index_range=index_range
        )


@dataclass(frozen=True, slots=True)
class _Addressing:
    init: SegmentRef | None
    segments: tuple[SegmentRef, ...]
    nominal_s: float | None
    pto_s: float = 0.0
    index_range: tuple[int, int] | None = None


@dataclass(frozen=True, slots=True)
class _SegmentContext:
    """One Representation's merged segment element and what its segments need."""

    merged: Element  # attributes merged outermost first
    elements: list[Element]  # the elements of this kind, outermost first
    where: str
    timing: _Timing
    bases: tuple[str, ...]
    timescale: int
    pto: int
    resolve: _Resolver

    def child(self, name: str) -> Element | None:
        """The innermost level's child element `name` (child elements are inherited whole)."""
        for element in reversed(self.elements):
            found = element.find(_q(name))
            if found is not None:
                return found
        return None

    def segment(
        self, number: int, start_s: float, duration_s: float, reference: str | None, byte_range: tuple[int, int] | None
    ) -> SegmentRef:
        urls = self.bases if reference is None else self.resolve(reference)
        return SegmentRef(number=number, start_s=start_s, duration_s=duration_s, urls=urls, byte_range=byte_range)

    def initialization(self) -> SegmentRef | None:
        """An Initialization element (@sourceURL, @range), as in SegmentBase and SegmentList."""
        element = self.child("Initialization")
        if element is None:
            return None
        byte_range = _byte_range(element, "range", f"{self.where}/Initialization")
        return self.segment(0, self.timing.period_start_s, 0.0, element.get("sourceURL"), byte_range)


def _expand(runs: Iterable[_Run]) -> Iterable[tuple[int, int, int]]:
    for run in runs:
        for k in range(run.count):
            yield run.number + k, run.time + k * run.duration, run.duration


def _clip_last(segments: tuple[SegmentRef, ...], timing: _Timing) -> tuple[SegmentRef, ...]:
    """With @duration addressing the last segment ends at the Period end at the latest (5.3.9.5.3:
    it may be shorter than @duration). A SegmentTimeline's durations are kept as written."""
    if not segments or timing.period_duration_s is None:
        return segments
    last = segments[-1]
    period_end_s = timing.period_start_s + timing.period_duration_s
    if last.start_s < period_end_s < last.end_s:
        return segments[:-1] + (replace(last, duration_s=period_end_s - last.start_s),)
    return segments


def _need_period_duration(timing: _Timing, where: str, what: str) -> float:
    if timing.period_duration_s is None:
        raise MpdError(f"{where}: {what} needs a known Period duration (live MPDs are not supported)")
    return timing.period_duration_s


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


# --------------------------------------------------------------------------- sidx (ISO/IEC 14496-12 8.16.3)
def parse_sidx(
    data: bytes, offset: int, *, urls: tuple[str, ...] = (), start_s: float = 0.0, first_number: int = 1
) -> list[SegmentRef]:
    """The media segments indexed by the first `sidx` box in `data`.

    `data` are the bytes of the resource starting at byte `offset` (an @indexRange fetch);
    `start_s` is the presentation time of media time 0 (Period start minus presentationTimeOffset).
    Byte ranges are absolute in the resource. Hierarchical indexes are not supported.
    """
    try:
        index = read_sidx(data, offset)
    except Mp4FormatError as exc:
        raise MpdError(str(exc)) from None
    return [
        SegmentRef(
            number=first_number + k,
            start_s=start_s + ref.start_ticks / index.timescale,
            duration_s=ref.duration_ticks / index.timescale,
            urls=urls,
            byte_range=(ref.first_byte, ref.first_byte + ref.size_bytes - 1),
        )
        for k, ref in enumerate(index.references)
    ]
