"""The one ISO-BMFF box walker: sizes checked against the buffer, lazy, and the `sidx` reader on top."""

from __future__ import annotations

import struct

import pytest

from server.formats.boxes import Mp4FormatError, children, find_box, find_boxes, iter_boxes, read_sidx


def box(kind: bytes, payload: bytes = b"") -> bytes:
    return struct.pack(">I4s", 8 + len(payload), kind) + payload


def large_box(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I4sQ", 1, kind, 16 + len(payload)) + payload


def test_boxes_are_laid_end_to_end_with_absolute_offsets() -> None:
    data = box(b"ftyp", b"isom") + large_box(b"mdat", b"x" * 5) + struct.pack(">I4s", 0, b"free") + b"tail"
    found = [(b.type, b.offset, b.size, b.header_size) for b in iter_boxes(data)]
    assert found == [("ftyp", 0, 12, 8), ("mdat", 12, 21, 16), ("free", 33, 12, 8)]  # size 0: to the end


@pytest.mark.parametrize(("data", "message"), [
    (b"\x00\x00\x00", "truncated box header"),
    (struct.pack(">I4s", 1, b"mdat") + b"\x00" * 4, "truncated large-size box header"),
    (struct.pack(">I4s", 4, b"free"), "bad size 4"),  # smaller than its own header
    (struct.pack(">I4s", 100, b"moov"), "truncated or has a bad size 100"),
])
def test_a_bad_or_truncated_size_is_refused(data: bytes, message: str) -> None:
    with pytest.raises(Mp4FormatError, match=message):
        list(iter_boxes(data))


def test_the_walk_is_lazy_so_a_reader_can_stop_before_garbage() -> None:
    data = box(b"styp") + box(b"sidx") + b"\xff" * 5
    walk = iter_boxes(data)
    assert [next(walk).type, next(walk).type] == ["styp", "sidx"]
    with pytest.raises(Mp4FormatError):
        next(walk)


def test_containers_and_sample_entries_are_descended_into() -> None:
    avc1 = box(b"avc1", b"\x00" * 78 + box(b"avcC", b"\x01\x64\x00\x1f"))
    stsd = box(b"stsd", struct.pack(">II", 0, 1) + avc1)
    moov = box(b"moov", box(b"trak", box(b"mdia", box(b"minf", box(b"stbl", stsd)))))
    entry = find_box(moov, "moov/trak/mdia/minf/stbl/stsd")
    assert entry is not None and [b.type for b in children(moov, entry)] == ["avc1"]
    assert [b.type for b in find_boxes(moov, "trak/mdia/minf/stbl/stsd/avc1/avcC", find_box(moov, "moov"))] == ["avcC"]
    assert find_box(moov, "moov/trak/tkhd") is None
    with pytest.raises(Mp4FormatError, match="not a container"):
        list(children(moov, next(iter_boxes(avc1[8 + 78:]))))


def test_a_64_bit_sidx_counts_offsets_from_the_byte_after_it() -> None:
    refs = struct.pack(">III", 300, 2000, 0) + struct.pack(">III", 200, 1000, 0)
    sidx = box(b"sidx", struct.pack(">B3xIIQQHH", 1, 1, 1000, 2**33, 7, 0, 2) + refs)
    index = read_sidx(box(b"free") + sidx + b"\xff" * 3, 100)  # garbage after the sidx is never read
    first = 100 + 8 + len(sidx) + 7
    assert index.timescale == 1000
    assert [(r.first_byte, r.size_bytes, r.start_ticks, r.duration_ticks) for r in index.references] == [
        (first, 300, 2**33, 2000), (first + 300, 200, 2**33 + 2000, 1000)]


@pytest.mark.parametrize(("body", "message"), [
    (b"", "truncated"),
    (struct.pack(">B3xIIIIHH", 0, 1, 1000, 0, 0, 0, 2), "lists 2 references but holds only 0"),
])
def test_a_short_sidx_is_refused(body: bytes, message: str) -> None:
    with pytest.raises(Mp4FormatError, match=message):
        read_sidx(box(b"sidx", body), 0)
