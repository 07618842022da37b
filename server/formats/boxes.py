"""ISO BMFF (ISO/IEC 14496-12) boxes: one walker for the packager, the decoder and the MPD reader.

`iter_boxes` lays out the boxes of a buffer, `children`/`find_boxes` descend into containers, and
`read_sidx` reads a segment index (section 8.16.3). Every reader checks sizes against the buffer
and raises `Mp4FormatError`, so hostile bytes never index past the end.
"""

from __future__ import annotations

import mmap
import struct
from collections.abc import Iterator
from dataclasses import dataclass

Buffer = bytes | bytearray | memoryview | mmap.mmap

# Bytes to skip inside a box before its children start (full-box header, sample-entry fields).
_CHILD_OFFSET = {
    "moov": 0, "trak": 0, "mdia": 0, "minf": 0, "stbl": 0, "mvex": 0, "edts": 0, "dinf": 0,
    "moof": 0, "traf": 0, "sinf": 0, "schi": 0, "udta": 0, "mfra": 0,
    "stsd": 8,  # version/flags + entry_count
    "meta": 4,
    # VisualSampleEntry: 8 (SampleEntry) + 70; AudioSampleEntry: 8 + 20 (14496-12 section 12.1/12.2).
    "avc1": 78, "avc3": 78, "encv": 78, "hvc1": 78, "hev1": 78,
    "mp4a": 28, "enca": 28,
}


class Mp4FormatError(ValueError):
    """The bytes are not the (fragmented) MP4 we expect: truncated, malformed or unsupported."""


@dataclass(frozen=True, slots=True)
class Box:
    """One box: its four-character type and where it sits in the buffer (absolute offsets)."""

    type: str
    offset: int
    size: int
    header_size: int

    @property
    def payload_offset(self) -> int:
        return self.offset + self.header_size

    @property
    def end(self) -> int:
        return self.offset + self.size


def iter_boxes(data: Buffer, start: int = 0, end: int | None = None) -> Iterator[Box]:
    """Boxes laid end to end in data[start:end]; raises Mp4FormatError on a bad or truncated size.

    Lazy: a caller that stops at the box it wants never checks the boxes after it.
    """
    end = len(data) if end is None else end
    pos = start
    while pos < end:
        if end - pos < 8:
            raise Mp4FormatError(f"truncated box header at offset {pos}")
        size, raw_type = struct.unpack_from(">I4s", data, pos)
        header = 8
        if size == 1:
            if end - pos < 16:
                raise Mp4FormatError(f"truncated large-size box header at offset {pos}")
            (size,) = struct.unpack_from(">Q", data, pos + 8)
            header = 16
        elif size == 0:  # box extends to the end of its container
            size = end - pos
        if size < header or pos + size > end:
            raise Mp4FormatError(f"box {raw_type!r} at offset {pos} is truncated or has a bad size {size}")
        yield Box(raw_type.decode("latin-1"), pos, size, header)
        pos += size


def children(data: Buffer, box: Box) -> Iterator[Box]:
    """Child boxes of a container box (or of a sample entry / stsd, skipping their fixed fields)."""
    skip = _CHILD_OFFSET.get(box.type)
    if skip is None:
        raise Mp4FormatError(f"box {box.type!r} is not a container")
    return iter_boxes(data, box.payload_offset + skip, box.end)


def find_boxes(data: Buffer, path: str, within: Box | None = None) -> list[Box]:
    """All boxes matching a slash path such as "moov/trak/mdia/mdhd", below `within` (or top level)."""
    level = list(iter_boxes(data) if within is None else children(data, within))
    names = path.split("/")
    for depth, name in enumerate(names):
        matched = [b for b in level if b.type == name]
        if depth == len(names) - 1:
            return matched
        level = [child for b in matched for child in children(data, b)]
    return []


def find_box(data: Buffer, path: str, within: Box | None = None) -> Box | None:
    found = find_boxes(data, path, within)
    return found[0] if found else None


# --------------------------------------------------------------------------- sidx (section 8.16.3)
@dataclass(frozen=True, slots=True)
class SidxReference:
    """One media reference of a segment index: a byte range of the resource and its media time."""

    first_byte: int  # absolute in the resource
    size_bytes: int
    start_ticks: int  # earliest presentation time, in the index's timescale
    duration_ticks: int


@dataclass(frozen=True, slots=True)
class SegmentIndex:
    timescale: int  # ticks per second
    references: tuple[SidxReference, ...]


def read_sidx(data: Buffer, offset: int) -> SegmentIndex:
    """The references of the first `sidx` box in `data`, the bytes of a resource from byte `offset`.

    Byte ranges come out absolute in the resource (the box's offsets count from the byte after it).
    Hierarchical indexes (a reference to another sidx) are refused, as is any truncated field.
    """
    box = next((b for b in iter_boxes(data) if b.type == "sidx"), None)
    if box is None:
        raise Mp4FormatError("no sidx box in the index data")
    body = memoryview(data)[box.payload_offset : box.end]
    try:
        version = body[0]
        (timescale,) = struct.unpack_from(">I", body, 8)
        if version == 0:
            earliest, first_offset = struct.unpack_from(">II", body, 12)
            cursor = 20
        else:
            earliest, first_offset = struct.unpack_from(">QQ", body, 12)
            cursor = 28
        (count,) = struct.unpack_from(">H", body, cursor + 2)
        cursor += 4
    except (IndexError, struct.error):
        raise Mp4FormatError("the sidx box is truncated") from None
    if timescale == 0:
        raise Mp4FormatError("sidx timescale is 0")
    if cursor + 12 * count > len(body):
        raise Mp4FormatError(f"sidx lists {count} references but holds only {(len(body) - cursor) // 12}")
    references = []
    first_byte = offset + box.end + first_offset
    time = earliest
    for k in range(count):
        word, duration = struct.unpack_from(">II", body, cursor + 12 * k)
        if word >> 31:
            raise Mp4FormatError("hierarchical sidx (a reference to another sidx) is not supported")
        size = word & 0x7FFF_FFFF
        if size == 0:
            raise Mp4FormatError(f"sidx reference {k} has size 0")
        references.append(SidxReference(first_byte=first_byte, size_bytes=size, start_ticks=time,
                                        duration_ticks=duration))
        first_byte += size
        time += duration
    return SegmentIndex(timescale=timescale, references=tuple(references))
