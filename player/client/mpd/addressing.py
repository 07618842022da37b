"""Segment addressing (ISO/IEC 23009-1 5.3.9): SegmentTemplate (with @duration or a
SegmentTimeline), SegmentList and SegmentBase to SegmentRefs with resolved URLs, every segment
taken from the MPD's budget before it is built.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from dataclasses import dataclass, replace
from xml.etree.ElementTree import Element

from player.client.mpd.limits import _MAX_INT32, _MAX_UINT32, MAX_FORMAT_WIDTH, MpdError
from player.client.mpd.model import LiveTemplate, SegmentRef, _median_duration_s
from player.client.mpd.values import _byte_range, _join, _q, _required_uint, _show, _signed, _uint

_COUNT_TOLERANCE = 1e-6  # ceil() of float segment counts forgives this much rounding error


# --------------------------------------------------------------------------- URL references
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


# --------------------------------------------------------------------------- addressing
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


class _SegmentReader:
    """Segment addressing (5.3.9) of one MPD document: the MPD URL and the remaining segment budget."""

    def __init__(self, url: str, max_segment_urls: int) -> None:
        self.url = url
        self.urls_left = max_segment_urls
        self.dynamic = False  # a dynamic MPD: an open-ended @duration template names segments on demand

    def take(self, count: int, choices: int, where: str) -> None:
        """Spends `count` segments of `choices` URLs each from the budget, before they are built."""
        if count * choices > self.urls_left:
            raise MpdError(
                f"{where}: describes {count} more segments with {choices} URL choice(s) each, beyond the "
                f"budget of this MPD ({self.urls_left} segment URLs left; raise max_segment_urls if this is real)"
            )
        self.urls_left -= count * choices

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
        if timeline is None and self.dynamic and ctx.timing.period_duration_s is None:
            return _live_addressing(ctx, init, media_format, start_number)
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


def _live_addressing(ctx: _SegmentContext, init: SegmentRef | None, media_format: str,
                     start_number: int) -> _Addressing:
    """A dynamic MPD's open-ended `SegmentTemplate@duration` (5.3.9.5.3): no segment list, a
    `LiveTemplate` that names any segment number (`availabilityTimeOffset`: 5.3.9.5.3, Table 16)."""
    duration = _uint(ctx.merged, "duration", ctx.where, minimum=1)
    if duration is None:
        raise MpdError(f"{ctx.where}: a live SegmentTemplate without SegmentTimeline needs @duration")
    raw_offset = (ctx.merged.get("availabilityTimeOffset") or "0").strip()
    try:
        offset_s = math.inf if raw_offset == "INF" else float(raw_offset)
    except ValueError:
        offset_s = math.nan
    if not offset_s >= 0:
        raise MpdError(f"{ctx.where}@availabilityTimeOffset={_show(raw_offset)} is not a non-negative number")
    raw_complete = (ctx.merged.get("availabilityTimeComplete") or "true").strip()
    if raw_complete not in ("true", "false", "1", "0"):
        raise MpdError(f"{ctx.where}@availabilityTimeComplete={_show(raw_complete)} is not an xs:boolean")
    live = LiveTemplate(media_format=media_format, start_number=start_number, duration_ticks=duration,
                        timescale=ctx.timescale, pto_ticks=ctx.pto, period_start_s=ctx.timing.period_start_s,
                        base_urls=ctx.bases, availability_time_offset_s=offset_s,
                        availability_time_complete=raw_complete in ("true", "1"))
    return _Addressing(init=init, segments=(), nominal_s=duration / ctx.timescale, pto_s=ctx.pto / ctx.timescale,
                       live=live)


@dataclass(frozen=True, slots=True)
class _Addressing:
    init: SegmentRef | None
    segments: tuple[SegmentRef, ...]
    nominal_s: float | None
    pto_s: float = 0.0
    index_range: tuple[int, int] | None = None
    live: LiveTemplate | None = None


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
        raise MpdError(f"{where}: {what} needs a known Period duration (an open-ended template is read only in a dynamic MPD)")
    return timing.period_duration_s
