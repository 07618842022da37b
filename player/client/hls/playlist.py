"""HLS playlists (RFC 8216 section 4.3) to frozen dataclasses: `parse_playlist(text, url)` gives a
`MasterPlaylist` or a `MediaPlaylist` with absolute URIs, inclusive byte ranges and, on every
segment, the keys and the initialization section in effect. Anything malformed or hostile raises
`HlsError` naming the playlist, line and tag; unknown tags are ignored, as 4.1 asks of clients.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from fractions import Fraction
from itertools import chain
from typing import Literal

from player.client.hls.lexer import Line, Source, show
from player.client.hls.limits import (
    DEFAULT_MAX_SEGMENT_URLS,
    MAX_BANDWIDTH_BPS,
    MAX_DIMENSION_PX,
    MAX_DURATION_S,
    MAX_FRAME_RATE,
    MAX_PRESENTATION_S,
    MAX_RENDITIONS,
    MAX_SEQUENCE,
    MAX_VARIANTS,
    HlsError,
    NoSegmentsYet,
)
from server.formats import hls as tags

_PDT = "#EXT-X-PROGRAM-DATE-TIME"
_SERVER_CONTROL = "#EXT-X-SERVER-CONTROL"  # LL-HLS (RFC 8216bis 4.4.3.8)
_PART_INF = "#EXT-X-PART-INF"
_PART = "#EXT-X-PART"
_PRELOAD_HINT = "#EXT-X-PRELOAD-HINT"
PARTS_PER_SEGMENT_LIMIT = 64  # EXT-X-PART tags a playlist may list per segment it lists (hostile input)
_MEDIA_TAGS = frozenset({tags.EXTINF, tags.EXT_X_TARGETDURATION, tags.EXT_X_MEDIA_SEQUENCE, tags.EXT_X_MAP,
                         tags.EXT_X_BYTERANGE, tags.EXT_X_DISCONTINUITY, tags.EXT_X_ENDLIST, tags.EXT_X_KEY,
                         tags.EXT_X_PLAYLIST_TYPE, "#EXT-X-DISCONTINUITY-SEQUENCE", "#EXT-X-I-FRAMES-ONLY",
                         _PDT, _SERVER_CONTROL, _PART_INF, _PART, _PRELOAD_HINT})
_MASTER_TAGS = frozenset({tags.EXT_X_STREAM_INF, tags.EXT_X_MEDIA, tags.EXT_X_I_FRAME_STREAM_INF,
                          tags.EXT_X_SESSION_KEY, "#EXT-X-SESSION-DATA"})
_KNOWN_METHODS = frozenset({tags.METHOD_NONE, tags.METHOD_AES_128, *tags.SAMPLE_METHODS, "AES-256", "AES-256-CTR"})
RenditionType = Literal["AUDIO", "VIDEO", "SUBTITLES", "CLOSED-CAPTIONS"]


@dataclass(frozen=True, kw_only=True, slots=True)
class Key:
    """An EXT-X-KEY (4.3.2.4). `uri` is absolute (http(s) or data:), `keyid` 32 lowercase hex digits."""

    method: str
    uri: str | None
    iv: bytes | None
    keyformat: str
    keyid: str | None
    line: int


@dataclass(frozen=True, kw_only=True, slots=True)
class InitSection:
    """An EXT-X-MAP (4.3.2.5) and the keys in effect where it appears."""

    uri: str
    byte_range: tuple[int, int] | None  # inclusive, as in an HTTP Range header
    keys: tuple[Key, ...]
    line: int


@dataclass(frozen=True, kw_only=True, slots=True)
class Segment:
    """A media segment: its URI, EXTINF duration, byte range, media and discontinuity sequence
    numbers, the EXT-X-KEY tags (one per KEYFORMAT) and the EXT-X-MAP in effect."""

    uri: str
    duration_s: float
    byte_range: tuple[int, int] | None
    sequence: int
    discontinuity: int
    keys: tuple[Key, ...]
    init: InitSection | None
    line: int  # of the URI
    # EXT-X-PROGRAM-DATE-TIME (4.3.2.6) as unix seconds: the wall-clock time of the segment's first
    # sample; extrapolated from an earlier segment's by the durations in between (not across a
    # discontinuity), None when the playlist gives none
    program_date_time_s: float | None = None


@dataclass(frozen=True, kw_only=True, slots=True)
class Part:
    """An LL-HLS Partial Segment (EXT-X-PART, rfc8216bis 4.4.4.9): part `index` of the segment whose
    media sequence number is `sequence`, listed before that segment's EXTINF (or, for the segment
    being published, after the last segment). Also the next part an EXT-X-PRELOAD-HINT names
    (4.4.5.3; duration 0, byte range end -1 when open-ended)."""

    uri: str
    duration_s: float
    byte_range: tuple[int, int] | None  # inclusive, as in an HTTP Range header
    sequence: int
    index: int
    independent: bool
    line: int


@dataclass(frozen=True, kw_only=True, slots=True)
class MediaPlaylist:
    url: str
    target_duration_s: float | None
    segments: tuple[Segment, ...]
    ended: bool  # EXT-X-ENDLIST: nothing will be added (VOD); a live playlist has none
    playlist_type: str | None
    # LL-HLS (RFC 8216bis 4.4.3.7-4.4.3.8, 4.4.4.9): EXT-X-SERVER-CONTROL and EXT-X-PART-INF, and how
    # many EXT-X-PART tags the playlist lists (a player that does not play parts plays the whole segments)
    can_block_reload: bool = False
    hold_back_s: float | None = None
    part_hold_back_s: float | None = None
    part_target_s: float | None = None
    part_count: int = 0
    parts: tuple[Part, ...] = ()  # in order; those of the segment being published come last
    preload_hint: Part | None = None  # EXT-X-PRELOAD-HINT:TYPE=PART

    def part(self, sequence: int, index: int) -> Part | None:
        """Part `index` of segment `sequence`, if listed."""
        for part in reversed(self.parts):
            if part.sequence == sequence and part.index == index:
                return part
            if part.sequence < sequence:
                return None
        return None

    @property
    def duration_s(self) -> float:
        return sum(s.duration_s for s in self.segments)


@dataclass(frozen=True, kw_only=True, slots=True)
class Variant:
    """An EXT-X-STREAM-INF (4.3.4.2) and its media playlist URI."""

    uri: str
    bandwidth_bps: int
    average_bandwidth_bps: int | None
    codecs: str | None
    resolution: tuple[int, int] | None
    frame_rate: Fraction | None
    audio_group: str | None
    line: int


@dataclass(frozen=True, kw_only=True, slots=True)
class Rendition:
    """An EXT-X-MEDIA (4.3.4.1): an alternative rendition; `uri` None when it is in the variant's stream."""

    type: RenditionType
    group_id: str
    name: str
    language: str | None
    default: bool
    autoselect: bool
    uri: str | None
    channels: str | None
    line: int


@dataclass(frozen=True, kw_only=True, slots=True)
class MasterPlaylist:
    url: str
    variants: tuple[Variant, ...]
    renditions: tuple[Rendition, ...]
    session_keys: tuple[Key, ...]


def parse_playlist(text: str | bytes, url: str, *,
                   max_segments: int = DEFAULT_MAX_SEGMENT_URLS) -> MasterPlaylist | MediaPlaylist:
    """Parses a playlist fetched from `url`; which kind it is follows from its tags (4.3.4 vs 4.3.2)."""
    source = Source(text, url)
    lines = source.lines()
    head: list[Line] = []  # the lines before the first tag that says which kind of playlist this is
    for line in lines:
        head.append(line)
        if line.tag in _MASTER_TAGS:
            return _Master(source).parse(chain(head, lines))
        if line.tag in _MEDIA_TAGS or line.tag is None:
            break
    return _Media(source, max_segments).parse(chain(head, lines))


def _mixed(source: Source, line: Line) -> HlsError:
    return source.error(line, "a playlist holds either variants (a master playlist) or segments "
                              "(a media playlist), not both")


# --------------------------------------------------------------------------- keys
def _key(source: Source, line: Line) -> Key:
    attrs = source.attributes(line)
    method = source.enumerated(line, attrs, "METHOD", required=True) or ""
    if method not in _KNOWN_METHODS:
        raise source.error(line, f"METHOD={show(method)} is not NONE, AES-128, SAMPLE-AES or SAMPLE-AES-CTR")
    if method == tags.METHOD_NONE:
        return Key(method=method, uri=None, iv=None, keyformat=tags.KEYFORMAT_IDENTITY, keyid=None, line=line.number)
    raw_uri = source.quoted(line, attrs, "URI", required=True) or ""
    iv = source.hex_bytes(line, attrs["IV"], "IV", 16) if "IV" in attrs else None
    keyformat = source.quoted(line, attrs, "KEYFORMAT") or tags.KEYFORMAT_IDENTITY
    keyid = source.hex_bytes(line, attrs["KEYID"], "KEYID", 16).hex() if "KEYID" in attrs else None
    uri = raw_uri if raw_uri.startswith(("data:", "skd:")) else source.resolve(line, raw_uri)
    return Key(method=method, uri=uri, iv=iv, keyformat=keyformat, keyid=keyid, line=line.number)


# --------------------------------------------------------------------------- media playlists
class _Media:
    def __init__(self, source: Source, max_segments: int) -> None:
        self.source = source
        self.max_segments = max_segments

    def parse(self, lines: Iterable[Line]) -> MediaPlaylist:
        src = self.source
        segments: list[Segment] = []
        keys: dict[str, Key] = {}
        init: InitSection | None = None
        target: float | None = None
        sequence = discontinuity = 0
        playlist_type: str | None = None
        ended = False
        pending_duration: tuple[Line, float] | None = None
        pending_range: tuple[Line, int, int | None] | None = None
        pending_discontinuity = False
        pending_pdt: float | None = None
        total_s = 0.0
        control: dict[str, float | bool | None] = {}
        parts: list[Part] = []
        hint: Part | None = None
        for line in lines:
            tag = line.tag
            if tag is None:
                if pending_duration is None:
                    raise src.error(line, "a segment URI must follow an #EXTINF tag")
                uri = src.resolve(line, line.value)
                byte_range = None
                if pending_range is not None:
                    byte_range = self._range(pending_range, uri, segments)
                if len(segments) >= self.max_segments:
                    raise src.error(line, f"the playlist lists more than {self.max_segments} segments")
                if pending_discontinuity:
                    discontinuity += 1
                pdt = pending_pdt
                if pdt is None and segments and not pending_discontinuity and segments[-1].program_date_time_s is not None:
                    pdt = segments[-1].program_date_time_s + segments[-1].duration_s
                total_s += pending_duration[1]
                if total_s > MAX_PRESENTATION_S:
                    raise src.error(pending_duration[0], f"the segments add up to more than {MAX_PRESENTATION_S:g} s")
                segments.append(Segment(uri=uri, duration_s=pending_duration[1], byte_range=byte_range,
                                        sequence=sequence + len(segments), discontinuity=discontinuity,
                                        keys=tuple(keys.values()), init=init, line=line.number,
                                        program_date_time_s=pdt))
                pending_duration = pending_range = pending_pdt = None
                pending_discontinuity = False
            elif tag == tags.EXTINF:
                raw = line.value.split(",", 1)[0]
                pending_duration = (line, src.decimal(line, raw, "duration", minimum=0, maximum=MAX_DURATION_S,
                                                      allow_zero=False))
            elif tag == tags.EXT_X_BYTERANGE:
                length, offset = src.byte_range(line, line.value, "value")
                pending_range = (line, length, offset)
            elif tag == tags.EXT_X_KEY:
                key = _key(src, line)
                if key.method == tags.METHOD_NONE:
                    keys.clear()
                else:
                    keys[key.keyformat] = key
            elif tag == tags.EXT_X_MAP:
                init = self._map(line, keys)
            elif tag == tags.EXT_X_DISCONTINUITY:
                pending_discontinuity = True
            elif tag == tags.EXT_X_TARGETDURATION:
                target = src.decimal(line, line.value, "value", minimum=0, maximum=MAX_DURATION_S)
            elif tag == tags.EXT_X_MEDIA_SEQUENCE:
                if segments:
                    raise src.error(line, "must appear before the first segment")
                sequence = src.integer(line, line.value, "value", maximum=MAX_SEQUENCE // 2)
            elif tag == "#EXT-X-DISCONTINUITY-SEQUENCE":
                if segments:
                    raise src.error(line, "must appear before the first segment")
                discontinuity = src.integer(line, line.value, "value", maximum=MAX_SEQUENCE // 2)
            elif tag == tags.EXT_X_PLAYLIST_TYPE:
                playlist_type = line.value.strip().upper()
                if playlist_type not in ("VOD", "EVENT"):
                    raise src.error(line, f"{show(line.value)} is not VOD or EVENT")
            elif tag == tags.EXT_X_ENDLIST:
                ended = True
            elif tag == _PDT:
                pending_pdt = self._date_time(line)
            elif tag == _SERVER_CONTROL:
                control.update(self._server_control(line))
            elif tag == _PART_INF:
                attrs = src.attributes(line)
                if "PART-TARGET" not in attrs:
                    raise src.error(line, "the required attribute PART-TARGET is missing")
                control["part_target_s"] = src.decimal(line, attrs["PART-TARGET"], "PART-TARGET", minimum=0,
                                                       maximum=MAX_DURATION_S, allow_zero=False)
            elif tag == _PART:
                if len(parts) >= PARTS_PER_SEGMENT_LIMIT * (len(segments) + 1):
                    raise src.error(line, f"more than {PARTS_PER_SEGMENT_LIMIT} parts per segment")
                parts.append(self._part(line, sequence + len(segments), parts))
            elif tag == _PRELOAD_HINT:
                hint = self._preload_hint(line, sequence + len(segments), parts) or hint
            elif tag == "#EXT-X-SKIP":
                raise src.error(line, "a delta playlist (skipped segments) answers a request with _HLS_skip, "
                                      "which this player never makes")
            elif tag == "#EXT-X-I-FRAMES-ONLY":
                raise src.error(line, "an I-frame-only playlist is for trick play, not for playback")
            elif tag == "#EXT-X-GAP":
                raise src.error(line, "gaps (segments marked missing) are not supported")
            elif tag in _MASTER_TAGS:
                raise _mixed(src, line)
        if pending_duration is not None:
            raise src.error(pending_duration[0], "no segment URI follows this #EXTINF")
        if not segments and not ended:
            wait_s = control.get("part_target_s") or target
            raise NoSegmentsYet(str(src.error(None, "lists no complete segment yet")), media_sequence=sequence,
                                can_block_reload=bool(control.get("can_block_reload")),
                                wait_s=float(wait_s) if wait_s else None)
        if not segments:
            raise src.error(None, "lists no segments")
        return MediaPlaylist(url=src.url, target_duration_s=target, segments=tuple(segments), ended=ended,
                             playlist_type=playlist_type, part_count=len(parts), parts=tuple(parts),
                             preload_hint=hint, **control)  # type: ignore[arg-type]

    def _date_time(self, line: Line) -> float:
        """An EXT-X-PROGRAM-DATE-TIME value (ISO 8601 with a time zone, 4.3.2.6) as unix seconds."""
        raw = line.value.strip()
        try:
            value = datetime.fromisoformat(raw) if len(raw) <= 40 else None
        except ValueError:
            value = None
        if value is None:
            raise self.source.error(line, f"{show(raw)} is not an ISO 8601 date-time")
        if value.tzinfo is None:
            raise self.source.error(line, f"{show(raw)} has no time zone (RFC 8216 4.3.2.6 requires one)")
        return value.timestamp()

    def _server_control(self, line: Line) -> dict[str, float | bool | None]:
        src = self.source
        attrs = src.attributes(line)
        out: dict[str, float | bool | None] = {
            "can_block_reload": (src.enumerated(line, attrs, "CAN-BLOCK-RELOAD") or "NO") == "YES"}
        for name, field in (("HOLD-BACK", "hold_back_s"), ("PART-HOLD-BACK", "part_hold_back_s")):
            if name in attrs:
                out[field] = src.decimal(line, attrs[name], name, minimum=0, maximum=MAX_DURATION_S, allow_zero=False)
        return out

    def _range(self, pending: tuple[Line, int, int | None], uri: str, segments: list[Segment]) -> tuple[int, int]:
        line, length, offset = pending
        if offset is None:
            # 4.3.2.2: without @o the sub-range starts after the previous segment's, of the same resource.
            previous = segments[-1] if segments else None
            if previous is None or previous.byte_range is None or previous.uri != uri:
                raise self.source.error(line, "has no @offset, and the previous segment is not a sub-range "
                                              "of the same resource")
            offset = previous.byte_range[1] + 1
        return offset, offset + length - 1

    def _part(self, line: Line, sequence: int, parts: list[Part]) -> Part:
        src = self.source
        attrs = src.attributes(line)
        uri = src.resolve(line, src.quoted(line, attrs, "URI", required=True) or "")
        if "DURATION" not in attrs:
            raise src.error(line, "the required attribute DURATION is missing")
        duration = src.decimal(line, attrs["DURATION"], "DURATION", minimum=0, maximum=MAX_DURATION_S)
        if (src.enumerated(line, attrs, "GAP") or "NO") == "YES":
            raise src.error(line, "gaps (parts marked missing) are not supported")
        byte_range = None
        if (raw := src.quoted(line, attrs, "BYTERANGE")) is not None:
            length, offset = src.byte_range(line, raw, "BYTERANGE")
            if offset is None:  # after the previous part's range, of the same resource (4.4.4.9)
                previous = parts[-1] if parts else None
                if previous is None or previous.byte_range is None or previous.uri != uri:
                    raise src.error(line, "BYTERANGE has no @offset, and the previous part is not a sub-range "
                                          "of the same resource")
                offset = previous.byte_range[1] + 1
            byte_range = (offset, offset + length - 1)
        index = parts[-1].index + 1 if parts and parts[-1].sequence == sequence else 0
        return Part(uri=uri, duration_s=duration, byte_range=byte_range, sequence=sequence, index=index,
                    independent=(src.enumerated(line, attrs, "INDEPENDENT") or "NO") == "YES", line=line.number)

    def _preload_hint(self, line: Line, sequence: int, parts: list[Part]) -> Part | None:
        """The next part an EXT-X-PRELOAD-HINT:TYPE=PART names (None for TYPE=MAP)."""
        src = self.source
        attrs = src.attributes(line)
        kind = src.enumerated(line, attrs, "TYPE", required=True)
        if kind not in ("PART", "MAP"):
            raise src.error(line, f"TYPE={show(kind or '')} is not PART or MAP")
        if kind != "PART":
            return None
        uri = src.resolve(line, src.quoted(line, attrs, "URI", required=True) or "")
        byte_range = None
        if "BYTERANGE-START" in attrs or "BYTERANGE-LENGTH" in attrs:
            start = src.integer(line, attrs.get("BYTERANGE-START", "0"), "BYTERANGE-START")
            length = src.integer(line, attrs["BYTERANGE-LENGTH"], "BYTERANGE-LENGTH") if (
                "BYTERANGE-LENGTH" in attrs) else None
            byte_range = (start, start + length - 1 if length else -1)
        index = parts[-1].index + 1 if parts and parts[-1].sequence == sequence else 0
        return Part(uri=uri, duration_s=0.0, byte_range=byte_range, sequence=sequence, index=index,
                    independent=False, line=line.number)

    def _map(self, line: Line, keys: dict[str, Key]) -> InitSection:
        src = self.source
        attrs = src.attributes(line)
        uri = src.resolve(line, src.quoted(line, attrs, "URI", required=True) or "")
        byte_range = None
        if (raw := src.quoted(line, attrs, "BYTERANGE")) is not None:
            length, offset = src.byte_range(line, raw, "BYTERANGE")
            start = offset or 0  # the init section of a resource starts it unless told otherwise
            byte_range = (start, start + length - 1)
        return InitSection(uri=uri, byte_range=byte_range, keys=tuple(keys.values()), line=line.number)


# --------------------------------------------------------------------------- master playlists
class _Master:
    def __init__(self, source: Source) -> None:
        self.source = source

    def parse(self, lines: Iterable[Line]) -> MasterPlaylist:
        src = self.source
        variants: list[Variant] = []
        renditions: list[Rendition] = []
        session_keys: list[Key] = []
        pending: tuple[Line, dict[str, str]] | None = None
        for line in lines:
            if line.tag is None:
                if pending is None:
                    raise src.error(line, "a variant URI must follow an #EXT-X-STREAM-INF tag")
                if len(variants) >= MAX_VARIANTS:
                    raise src.error(line, f"the master playlist lists more than {MAX_VARIANTS} variants")
                variants.append(self._variant(*pending, src.resolve(line, line.value)))
                pending = None
            elif line.tag == tags.EXT_X_STREAM_INF:
                if pending is not None:
                    raise src.error(pending[0], "no variant URI follows this tag")
                pending = (line, src.attributes(line))
            elif line.tag == tags.EXT_X_MEDIA:
                if len(renditions) >= MAX_RENDITIONS:
                    raise src.error(line, f"the master playlist lists more than {MAX_RENDITIONS} renditions")
                renditions.append(self._rendition(line))
            elif line.tag == tags.EXT_X_SESSION_KEY:
                key = _key(src, line)
                if key.method != tags.METHOD_NONE:
                    session_keys.append(key)
            elif line.tag in _MEDIA_TAGS:
                raise _mixed(src, line)
        if pending is not None:
            raise src.error(pending[0], "no variant URI follows this tag")
        if not variants:
            raise src.error(None, "the master playlist lists no variant (#EXT-X-STREAM-INF)")
        return MasterPlaylist(url=src.url, variants=tuple(variants), renditions=tuple(renditions),
                              session_keys=tuple(session_keys))

    def _variant(self, line: Line, attrs: dict[str, str], uri: str) -> Variant:
        src = self.source
        if "BANDWIDTH" not in attrs:
            raise src.error(line, "the required attribute BANDWIDTH is missing")
        bandwidth = src.integer(line, attrs["BANDWIDTH"], "BANDWIDTH", minimum=1, maximum=MAX_BANDWIDTH_BPS)
        average = None
        if "AVERAGE-BANDWIDTH" in attrs:
            average = src.integer(line, attrs["AVERAGE-BANDWIDTH"], "AVERAGE-BANDWIDTH", minimum=1,
                                  maximum=MAX_BANDWIDTH_BPS)
        resolution = src.resolution(line, attrs["RESOLUTION"], MAX_DIMENSION_PX) if "RESOLUTION" in attrs else None
        frame_rate = src.frame_rate(line, attrs["FRAME-RATE"], MAX_FRAME_RATE) if "FRAME-RATE" in attrs else None
        return Variant(uri=uri, bandwidth_bps=bandwidth, average_bandwidth_bps=average,
                       codecs=src.quoted(line, attrs, "CODECS"), resolution=resolution, frame_rate=frame_rate,
                       audio_group=src.quoted(line, attrs, "AUDIO"), line=line.number)

    def _rendition(self, line: Line) -> Rendition:
        src = self.source
        attrs = src.attributes(line)
        kind = src.enumerated(line, attrs, "TYPE", required=True)
        if kind not in ("AUDIO", "VIDEO", "SUBTITLES", "CLOSED-CAPTIONS"):
            raise src.error(line, f"TYPE={show(kind or '')} is not AUDIO, VIDEO, SUBTITLES or CLOSED-CAPTIONS")
        raw_uri = src.quoted(line, attrs, "URI")
        flags = {}
        for name in ("DEFAULT", "AUTOSELECT"):
            value = src.enumerated(line, attrs, name) or "NO"
            if value not in ("YES", "NO"):
                raise src.error(line, f"{name}={show(value)} is not YES or NO")
            flags[name] = value == "YES"
        return Rendition(
            type=kind,  # type: ignore[arg-type]  # checked above
            group_id=src.quoted(line, attrs, "GROUP-ID", required=True) or "",
            name=src.quoted(line, attrs, "NAME", required=True) or "",
            language=src.quoted(line, attrs, "LANGUAGE"), default=flags["DEFAULT"], autoselect=flags["AUTOSELECT"],
            uri=src.resolve(line, raw_uri) if raw_uri is not None else None,
            channels=src.quoted(line, attrs, "CHANNELS"), line=line.number,
        )


__all__ = ["HlsError", "InitSection", "Key", "MasterPlaylist", "MediaPlaylist", "Rendition", "Segment", "Variant",
           "parse_playlist"]
