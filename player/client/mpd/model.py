"""What a parsed MPD is: frozen dataclasses from the Manifest down to each SegmentRef, and the
`sidx` reader that fills a SegmentBase Representation's segments (ISO/IEC 23009-1, 14496-12).
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from fractions import Fraction
from typing import Literal

from player.client.mpd.limits import MpdError
from player.client.mpd.values import _join
from server.formats.boxes import Mp4FormatError, read_sidx
from server.formats.dash import CLEARKEY_SCHEME

ContentType = Literal["video", "audio", "text", "image", "other"]


@dataclass(frozen=True, kw_only=True, slots=True)
class SegmentCipher:
    """Whole-resource encryption of a segment: HLS METHOD=AES-128 (AES-128-CBC with PKCS#7 padding,
    RFC 8216 5.2). `key` is filled in once fetched from `key_uri`; never logged."""

    key_uri: str
    iv: bytes
    key: bytes | None = field(default=None, repr=False)


@dataclass(frozen=True, kw_only=True, slots=True)
class SegmentRef:
    """One media (or initialization) segment.

    `start_s` is on the presentation timeline (seconds from the start of the first Period);
    `urls` holds one absolute URL per BaseURL failover choice, primary first; `byte_range` is
    `(first_byte, last_byte)`, both inclusive as in an HTTP `Range: bytes=first-last` header, or
    None for the whole resource. An initialization segment has number 0 and duration 0. `cipher`
    says how the fetched bytes are encrypted as a whole (HLS AES-128), None when they are not.
    """

    number: int
    start_s: float
    duration_s: float
    urls: tuple[str, ...]
    byte_range: tuple[int, int] | None = None
    cipher: SegmentCipher | None = None

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
class LiveTemplate:
    """The open-ended `SegmentTemplate@duration` of a dynamic MPD (ISO/IEC 23009-1 5.3.9.5.3): a
    live Representation lists no segments, it names segment `number` on demand (`ref`).

    `media_format` is a `str.format` string with `number` and `time` fields and the Representation's
    values bound; `availability_time_offset_s` is how much earlier than its end a segment can be
    requested (low latency, `availabilityTimeComplete=false`: its first chunks are there).
    """

    media_format: str
    start_number: int
    duration_ticks: int
    timescale: int
    pto_ticks: int
    period_start_s: float
    base_urls: tuple[str, ...]
    availability_time_offset_s: float = 0.0
    availability_time_complete: bool = True

    @property
    def duration_s(self) -> float:
        return self.duration_ticks / self.timescale

    def ref(self, number: int) -> SegmentRef:
        """Segment `number` (>= `start_number`): its URLs and its place on the presentation timeline."""
        if number < self.start_number:
            raise MpdError(f"segment {number} is before @startNumber={self.start_number}")
        k = number - self.start_number
        time = self.pto_ticks + k * self.duration_ticks
        reference = self.media_format.format(number=number, time=time)
        urls = tuple(dict.fromkeys(_join(base, reference, "SegmentTemplate@media") for base in self.base_urls))
        return SegmentRef(number=number, start_s=self.period_start_s + k * self.duration_s,
                          duration_s=self.duration_s, urls=urls)


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
    live: LiveTemplate | None = None  # a dynamic MPD's open-ended template (then `segments` is empty)

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
    location: str | None = None  # MPD/Location resolved: relative references were resolved against it
    # dynamic MPDs (5.3.1.2, Annex K)
    publish_time: datetime | None = None
    suggested_presentation_delay_s: float | None = None
    utc_timing: tuple[tuple[str, str], ...] = ()  # (schemeIdUri, value) of each UTCTiming, in order
    target_latency_s: float | None = None  # ServiceDescription/Latency@target
    playback_rate_range: tuple[float, float] | None = None  # ServiceDescription/PlaybackRate@min/@max
    protocol: Literal["dash", "hls"] = "dash"  # what it was read from (an HLS presentation maps onto this model)

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


def _median_duration_s(segments: Sequence[SegmentRef]) -> float | None:
    return statistics.median(s.duration_s for s in segments) if segments else None


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
