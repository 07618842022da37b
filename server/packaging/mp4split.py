"""ISO BMFF (ISO/IEC 14496-12) box reading for fragmented MP4: split into init + media segments.

Only what packaging and its tests need, on the box walker of `server.formats.boxes`: read the track
header of an init segment (timescale, codec string, size, encryption), read fragment timing
(tfdt/trun), and build/insert a `pssh` box (ISO/IEC 23001-7 section 8.1). Every reader checks
sizes and raises `Mp4FormatError`.
"""

from __future__ import annotations

import struct
import uuid
from collections.abc import Sequence
from dataclasses import dataclass

from server.formats.boxes import Box, Buffer, Mp4FormatError, children, find_box, find_boxes, iter_boxes

_SYNC_NON_SYNC_FLAG = 0x00010000  # sample_is_non_sync_sample in sample flags (section 8.8.3.1)


def _require(data: Buffer, path: str, within: Box | None = None) -> Box:
    box = find_box(data, path, within)
    if box is None:
        raise Mp4FormatError(f"missing box {path}")
    return box


def _single(data: Buffer, path: str, within: Box) -> Box:
    """The one box at `path` below `within`; we only handle single-track files."""
    found = find_boxes(data, path, within)
    if len(found) != 1:
        raise Mp4FormatError(f"expected one {path} in {within.type}, found {len(found)}")
    return found[0]


def _full_box(data: Buffer, box: Box) -> tuple[int, int]:
    """(version, flags) of a full box."""
    if box.size - box.header_size < 4:
        raise Mp4FormatError(f"{box.type} box too small")
    word = struct.unpack_from(">I", data, box.payload_offset)[0]
    return word >> 24, word & 0xFFFFFF


# --------------------------------------------------------------------------- init segment
@dataclass(frozen=True, slots=True)
class TrackDefaults:
    """trex defaults (section 8.8.3) used when tfhd/trun leave a field out."""

    sample_duration: int = 0
    sample_size: int = 0
    sample_flags: int = 0


@dataclass(frozen=True, slots=True)
class InitInfo:
    """What an init segment says about its single track."""

    track_id: int
    timescale: int
    handler: str  # "vide" or "soun"
    codecs: str  # RFC 6381 codec string, e.g. "avc1.64001f" or "mp4a.40.2"
    width: int | None
    height: int | None
    sample_rate_hz: int | None
    channels: int | None
    scheme_type: str | None  # "cenc" when encrypted
    default_kid: bytes | None
    per_sample_iv_size: int | None
    pssh: tuple[PsshInfo, ...]
    defaults: TrackDefaults


@dataclass(frozen=True, slots=True)
class PsshInfo:
    system_id: uuid.UUID
    kids: tuple[bytes, ...]
    data: bytes


def parse_init(data: Buffer) -> InitInfo:
    """Reads an init segment (ftyp + moov) of a single-track fragmented MP4."""
    moov = _require(data, "moov")
    trak = _single(data, "trak", moov)
    tkhd = _require(data, "tkhd", trak)
    version, _ = _full_box(data, tkhd)
    (track_id,) = struct.unpack_from(">I", data, tkhd.payload_offset + (20 if version == 1 else 12))
    mdhd = _require(data, "mdia/mdhd", trak)
    version, _ = _full_box(data, mdhd)
    (timescale,) = struct.unpack_from(">I", data, mdhd.payload_offset + (20 if version == 1 else 12))
    if timescale == 0:
        raise Mp4FormatError("mdhd timescale is 0")
    hdlr = _require(data, "mdia/hdlr", trak)
    handler = bytes(data[hdlr.payload_offset + 8 : hdlr.payload_offset + 12]).decode("latin-1")
    stsd = _require(data, "mdia/minf/stbl/stsd", trak)
    entries = list(children(data, stsd))
    if len(entries) != 1:
        raise Mp4FormatError(f"expected one sample entry in stsd, found {len(entries)}")
    entry = entries[0]

    scheme_type = default_kid = per_sample_iv_size = None
    original = entry.type
    if entry.type in ("encv", "enca"):
        sinf = _require(data, "sinf", entry)
        frma = _require(data, "frma", sinf)
        original = bytes(data[frma.payload_offset : frma.payload_offset + 4]).decode("latin-1")
        schm = _require(data, "schm", sinf)
        scheme_type = bytes(data[schm.payload_offset + 4 : schm.payload_offset + 8]).decode("latin-1")
        tenc = _require(data, "schi/tenc", sinf)
        # tenc: version/flags(4) reserved(1) crypt/skip or reserved(1) isProtected(1) ivSize(1) KID(16)
        per_sample_iv_size = data[tenc.payload_offset + 7]
        default_kid = bytes(data[tenc.payload_offset + 8 : tenc.payload_offset + 24])

    width = height = sample_rate = channels = None
    if original in ("avc1", "avc3"):
        width, height = struct.unpack_from(">HH", data, entry.payload_offset + 24)
        avcc = _require(data, "avcC", entry)
        profile, compat, level = data[avcc.payload_offset + 1 : avcc.payload_offset + 4]
        codecs = f"avc1.{profile:02x}{compat:02x}{level:02x}"
    elif original == "mp4a":
        channels, _bits = struct.unpack_from(">HH", data, entry.payload_offset + 16)
        sample_rate = struct.unpack_from(">I", data, entry.payload_offset + 24)[0] >> 16
        codecs = _mp4a_codecs(data, _require(data, "esds", entry))
    else:
        raise Mp4FormatError(f"unsupported sample entry {original!r}")

    trex = find_box(data, "mvex/trex", moov)
    defaults = TrackDefaults()
    if trex is not None:
        _, duration, size, flags = struct.unpack_from(">IIII", data, trex.payload_offset + 8)
        defaults = TrackDefaults(sample_duration=duration, sample_size=size, sample_flags=flags)
    pssh = tuple(parse_pssh(data, box) for box in find_boxes(data, "pssh", moov))
    return InitInfo(
        track_id=track_id, timescale=timescale, handler=handler, codecs=codecs,
        width=width, height=height, sample_rate_hz=sample_rate, channels=channels,
        scheme_type=scheme_type, default_kid=default_kid, per_sample_iv_size=per_sample_iv_size,
        pssh=pssh, defaults=defaults,
    )


def _mp4a_codecs(data: Buffer, esds: Box) -> str:
    """"mp4a.<OTI hex>.<audio object type>" from the esds descriptors (ISO/IEC 14496-1 section 7.2.6)."""
    pos, end = esds.payload_offset + 4, esds.end
    oti: int | None = None

    def descriptor(at: int) -> tuple[int, int, int]:
        tag, at = data[at], at + 1
        length = 0
        for _ in range(4):
            byte, at = data[at], at + 1
            length = (length << 7) | (byte & 0x7F)
            if not byte & 0x80:
                break
        return tag, at, length

    tag, pos, _ = descriptor(pos)
    if tag != 0x03:
        raise Mp4FormatError("esds without ES_Descriptor")
    flags = data[pos + 2]
    pos += 3
    if flags & 0x80:
        pos += 2
    if flags & 0x40:
        pos += 1 + data[pos]
    if flags & 0x20:
        pos += 2
    while pos < end:
        tag, body, length = descriptor(pos)
        if tag == 0x04:
            oti = data[body]
            pos = body + 13  # DecoderSpecificInfo follows the 13 fixed bytes
            continue
        if tag == 0x05 and oti is not None:
            aot = data[body] >> 3
            if aot == 31:
                aot = 32 + (((data[body] & 0x07) << 3) | (data[body + 1] >> 5))
            return f"mp4a.{oti:02x}.{aot}"
        pos = body + length
    if oti is None:
        raise Mp4FormatError("esds without DecoderConfigDescriptor")
    return f"mp4a.{oti:02x}"


# --------------------------------------------------------------------------- pssh
def build_pssh(system_id: uuid.UUID, kids: Sequence[bytes] = (), data: bytes = b"") -> bytes:
    """A `pssh` box; version 1 (with the KID list) when kids are given (ISO/IEC 23001-7 8.1.2)."""
    for kid in kids:
        if len(kid) != 16:
            raise ValueError(f"a KID is 16 bytes, got {len(kid)}")
    body = system_id.bytes
    if kids:
        body += struct.pack(">I", len(kids)) + b"".join(kids)
    body += struct.pack(">I", len(data)) + data
    version = 1 if kids else 0
    return struct.pack(">I4sI", 12 + len(body), b"pssh", version << 24) + body


def parse_pssh(data: Buffer, box: Box) -> PsshInfo:
    version, _ = _full_box(data, box)
    pos = box.payload_offset + 4
    system_id = uuid.UUID(bytes=bytes(data[pos : pos + 16]))
    pos += 16
    kids: list[bytes] = []
    if version > 0:
        (count,) = struct.unpack_from(">I", data, pos)
        pos += 4
        kids = [bytes(data[pos + 16 * i : pos + 16 * (i + 1)]) for i in range(count)]
        pos += 16 * count
    (size,) = struct.unpack_from(">I", data, pos)
    if pos + 4 + size > box.end:
        raise Mp4FormatError("pssh data runs past the box")
    return PsshInfo(system_id, tuple(kids), bytes(data[pos + 4 : pos + 4 + size]))


def append_to_moov(init: bytes, extra: bytes) -> bytes:
    """Returns the init segment with `extra` (whole boxes) appended as the last children of moov."""
    moov = _require(init, "moov")
    if moov.header_size != 8:
        raise Mp4FormatError("large-size moov is not supported")
    new_size = moov.size + len(extra)
    header = struct.pack(">I4s", new_size, b"moov")
    return init[: moov.offset] + header + init[moov.payload_offset : moov.end] + extra + init[moov.end :]


# --------------------------------------------------------------------------- fragments
@dataclass(frozen=True, slots=True)
class Fragment:
    """One media segment in a fragmented MP4: [offset, end) holds (styp/sidx/prft)* moof mdat."""

    offset: int
    end: int
    sequence_number: int
    base_media_decode_time: int  # tfdt, track timescale
    duration: int  # sum of sample durations, track timescale
    earliest_presentation_time: int  # min(dts + composition offset), track timescale
    sample_count: int
    starts_with_sync_sample: bool
    has_senc: bool


@dataclass(frozen=True, slots=True)
class SplitMp4:
    init_end: int  # data[:init_end] is the init segment
    fragments: tuple[Fragment, ...]


_PREFIX_BOXES = {"styp", "sidx", "prft", "emsg"}
_IGNORED_TOP = {"free", "skip", "mfra", "udta"}


def split_fragmented_mp4(data: Buffer) -> SplitMp4:
    """Finds the init segment (everything before the first fragment) and each moof+mdat fragment."""
    boxes = list(iter_boxes(data))
    if not boxes or boxes[0].type != "ftyp":
        raise Mp4FormatError("not an MP4 file (no leading ftyp box)")
    if not any(b.type == "moov" for b in boxes):
        raise Mp4FormatError("no moov box")
    init = parse_init(data)
    fragments: list[Fragment] = []
    init_end: int | None = None
    pending: int | None = None  # start offset of a styp/sidx run before a moof
    moof: Box | None = None
    for box in boxes:
        if box.type in ("ftyp", "moov", "pssh") and moof is None and not fragments:
            continue
        if box.type in _PREFIX_BOXES:
            pending = box.offset if pending is None else pending
        elif box.type == "moof":
            if moof is not None:
                raise Mp4FormatError(f"moof at offset {moof.offset} has no mdat")
            moof = box
            pending = box.offset if pending is None else pending
        elif box.type == "mdat":
            if moof is None or pending is None:
                raise Mp4FormatError(f"mdat at offset {box.offset} without a moof")
            if init_end is None:
                init_end = pending
            fragments.append(_fragment(data, moof, pending, box.end, init.defaults))
            moof = pending = None
        elif box.type in _IGNORED_TOP:
            continue
        else:
            raise Mp4FormatError(f"unexpected top-level box {box.type!r} at offset {box.offset}")
    if moof is not None:
        raise Mp4FormatError("file ends inside a fragment (moof without mdat)")
    if init_end is None:
        raise Mp4FormatError("no media fragments (moof+mdat) found")
    return SplitMp4(init_end=init_end, fragments=tuple(fragments))


def _fragment(data: Buffer, moof: Box, start: int, end: int, defaults: TrackDefaults) -> Fragment:
    mfhd = _require(data, "mfhd", moof)
    (sequence,) = struct.unpack_from(">I", data, mfhd.payload_offset + 4)
    traf = _single(data, "traf", moof)

    tfhd = _require(data, "tfhd", traf)
    _, flags = _full_box(data, tfhd)
    pos = tfhd.payload_offset + 8  # version/flags + track_ID
    if flags & 0x01:
        pos += 8
    if flags & 0x02:
        pos += 4
    duration_default, size_default, flags_default = (
        defaults.sample_duration, defaults.sample_size, defaults.sample_flags,
    )
    if flags & 0x08:
        (duration_default,) = struct.unpack_from(">I", data, pos)
        pos += 4
    if flags & 0x10:
        (size_default,) = struct.unpack_from(">I", data, pos)
        pos += 4
    if flags & 0x20:
        (flags_default,) = struct.unpack_from(">I", data, pos)

    tfdt = _require(data, "tfdt", traf)
    version, _ = _full_box(data, tfdt)
    base = struct.unpack_from(">Q" if version == 1 else ">I", data, tfdt.payload_offset + 4)[0]

    dts = base
    duration = 0
    earliest: int | None = None
    count = 0
    first_flags: int | None = None
    for trun in find_boxes(data, "trun", traf):
        version, tflags = _full_box(data, trun)
        (n,) = struct.unpack_from(">I", data, trun.payload_offset + 4)
        pos = trun.payload_offset + 8
        if tflags & 0x01:
            pos += 4
        trun_first_flags: int | None = None
        if tflags & 0x04:
            (trun_first_flags,) = struct.unpack_from(">I", data, pos)
            pos += 4
        entry_size = 4 * bin(tflags & 0xF00).count("1")
        if pos + n * entry_size > trun.end:
            raise Mp4FormatError("trun sample table runs past the box")
        for i in range(n):
            sample_duration, sample_flags, offset = duration_default, flags_default, 0
            if tflags & 0x100:
                (sample_duration,) = struct.unpack_from(">I", data, pos)
                pos += 4
            if tflags & 0x200:
                pos += 4
            if tflags & 0x400:
                (sample_flags,) = struct.unpack_from(">I", data, pos)
                pos += 4
            elif i == 0 and trun_first_flags is not None:
                sample_flags = trun_first_flags
            if tflags & 0x800:
                (offset,) = struct.unpack_from(">i" if version == 1 else ">I", data, pos)
                pos += 4
            if first_flags is None:
                first_flags = sample_flags
            presentation = dts + offset
            earliest = presentation if earliest is None else min(earliest, presentation)
            dts += sample_duration
            duration += sample_duration
            count += 1
    if count == 0 or earliest is None or first_flags is None:
        raise Mp4FormatError(f"fragment {sequence} has no samples")
    return Fragment(
        offset=start, end=end, sequence_number=sequence, base_media_decode_time=base,
        duration=duration, earliest_presentation_time=earliest, sample_count=count,
        starts_with_sync_sample=not first_flags & _SYNC_NON_SYNC_FLAG,
        has_senc=find_box(data, "senc", traf) is not None,
    )


def shift_decode_times(segment: Buffer, ticks: int) -> bytes:
    """`segment` (one media segment: moof+mdat, with styp/prft before it) with `ticks` added to every
    tfdt baseMediaDecodeTime: the whole track moves on the media timeline, sample bytes and sizes
    unchanged. Used to start tracks of one title at the same media time (`build._align_tracks`)."""
    out = bytearray(segment)
    shifted = 0
    for moof in (box for box in iter_boxes(out) if box.type == "moof"):
        for tfdt in find_boxes(out, "traf/tfdt", moof):
            version, _ = _full_box(out, tfdt)
            fmt = ">Q" if version == 1 else ">I"
            if tfdt.payload_offset + 4 + struct.calcsize(fmt) > tfdt.end:
                raise Mp4FormatError("tfdt box too small")
            (base,) = struct.unpack_from(fmt, out, tfdt.payload_offset + 4)
            new = base + ticks
            if not 0 <= new < (1 << (64 if version == 1 else 32)):
                raise Mp4FormatError(f"tfdt {base} + {ticks} does not fit a version {version} tfdt")
            struct.pack_into(fmt, out, tfdt.payload_offset + 4, new)
            shifted += 1
    if any(box.type == "sidx" for box in iter_boxes(out)):
        raise Mp4FormatError("a segment with a sidx cannot be re-timed here (its earliest time would go stale)")
    if shifted == 0:
        raise Mp4FormatError("no tfdt to re-time in the segment")
    return bytes(out)
