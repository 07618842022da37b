"""Cut and re-time packaged fMP4 fragments for live: new `tfdt`/`mfhd`, and CMAF chunks at sample
boundaries (ISO/IEC 23000-19 section 7.3.3.2: a chunk is one moof+mdat of consecutive samples).

No re-encoding: a fragment's sample table (trun) and its sample-encryption tables (senc/saiz/saio,
ISO/IEC 23001-7 section 7) are sliced and written into a new moof; the sample bytes are copied as
they are. Built on the box walker of `server.formats.boxes`, with the packager's trex defaults.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass

from server.formats.boxes import Box, Buffer, Mp4FormatError, children, iter_boxes
from server.packaging.mp4split import TrackDefaults

_TFHD_BASE_DATA_OFFSET = 0x01
_TRUN_DATA_OFFSET = 0x001
_TRUN_FIRST_SAMPLE_FLAGS = 0x004
_TRUN_DURATION = 0x100
_TRUN_SIZE = 0x200
_TRAF_BOXES = {"tfhd", "tfdt", "trun", "senc", "saiz", "saio"}
_PREFIX_BOXES = {"styp", "sidx", "prft", "emsg", "free", "skip"}


def _box(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I4s", 8 + len(payload), kind) + payload


def _word(data: Buffer, box: Box) -> int:
    if box.size - box.header_size < 4:
        raise Mp4FormatError(f"{box.type} box too small")
    return struct.unpack_from(">I", data, box.payload_offset)[0]


@dataclass(frozen=True, slots=True)
class FragmentTable:
    """One source fragment (moof+mdat) parsed for re-timing and cutting; offsets are into `data`."""

    data: bytes
    tfhd: bytes  # the whole tfhd box, copied as it is
    base_decode_time: int  # tfdt, track timescale
    trun_version: int
    trun_flags: int
    first_sample_flags: int | None
    entry_size: int
    entries: bytes  # the per-sample trun entries, entry_size bytes each
    durations: tuple[int, ...]  # per sample, track timescale
    sample_offsets: tuple[int, ...]  # per sample, where its bytes start in data
    sample_sizes: tuple[int, ...]
    senc_header: bytes | None  # version/flags of senc (None: clear)
    senc_entries: tuple[bytes, ...]
    saiz_prefix: bytes  # version/flags (+ aux_info_type fields)
    saiz_default: int
    saio_prefix: bytes  # version/flags (+ aux_info_type fields)
    saio_version: int

    @property
    def sample_count(self) -> int:
        return len(self.durations)

    @property
    def duration(self) -> int:
        return sum(self.durations)


def parse_fragment(data: bytes, defaults: TrackDefaults) -> FragmentTable:
    """The sample table of a single-track fragment: optional styp/sidx/prft, one moof, one mdat.

    Raises `Mp4FormatError` for what cannot be cut safely (several trafs or truns, an explicit base
    data offset, boxes in the traf other than tfhd/tfdt/trun/senc/saiz/saio, samples outside mdat).
    """
    moof = mdat = None
    for box in iter_boxes(data):
        if box.type == "moof" and moof is None:
            moof = box
        elif box.type == "mdat" and moof is not None and mdat is None:
            mdat = box
        elif box.type not in _PREFIX_BOXES:
            raise Mp4FormatError(f"unexpected box {box.type!r} in a media segment (one moof+mdat expected)")
    if moof is None or mdat is None:
        raise Mp4FormatError("media segment has no moof+mdat")
    trafs = [b for b in children(data, moof) if b.type == "traf"]
    if len(trafs) != 1:
        raise Mp4FormatError(f"expected one traf, found {len(trafs)}")
    found: dict[str, Box] = {}
    for box in children(data, trafs[0]):
        if box.type not in _TRAF_BOXES:
            raise Mp4FormatError(f"cannot cut a fragment holding a {box.type!r} box")
        if box.type in found:
            raise Mp4FormatError(f"more than one {box.type!r} in the traf")
        found[box.type] = box
    for name in ("tfhd", "tfdt", "trun"):
        if name not in found:
            raise Mp4FormatError(f"missing {name} in the traf")

    tfhd = found["tfhd"]
    tfhd_flags = _word(data, tfhd) & 0xFFFFFF
    if tfhd_flags & _TFHD_BASE_DATA_OFFSET:
        raise Mp4FormatError("tfhd sets an explicit base data offset (not CMAF); cannot cut")
    pos = tfhd.payload_offset + 8
    duration_default, size_default = defaults.sample_duration, defaults.sample_size
    if tfhd_flags & 0x02:
        pos += 4
    if tfhd_flags & 0x08:
        (duration_default,) = struct.unpack_from(">I", data, pos)
        pos += 4
    if tfhd_flags & 0x10:
        (size_default,) = struct.unpack_from(">I", data, pos)

    tfdt = found["tfdt"]
    version = _word(data, tfdt) >> 24
    (base,) = struct.unpack_from(">Q" if version == 1 else ">I", data, tfdt.payload_offset + 4)

    trun = found["trun"]
    word = _word(data, trun)
    trun_version, trun_flags = word >> 24, word & 0xFFFFFF
    if not trun_flags & _TRUN_DATA_OFFSET:
        raise Mp4FormatError("trun has no data offset; cannot cut")
    (count,) = struct.unpack_from(">I", data, trun.payload_offset + 4)
    pos = trun.payload_offset + 8
    (data_offset,) = struct.unpack_from(">i", data, pos)
    pos += 4
    first_flags = None
    if trun_flags & _TRUN_FIRST_SAMPLE_FLAGS:
        (first_flags,) = struct.unpack_from(">I", data, pos)
        pos += 4
    entry_size = 4 * bin(trun_flags & 0xF00).count("1")
    if count == 0 or pos + count * entry_size > trun.end:
        raise Mp4FormatError("trun sample table is empty or runs past the box")
    entries = bytes(data[pos:pos + count * entry_size])
    durations, sizes, offsets = [], [], []
    at = moof.offset + data_offset
    for i in range(count):
        cursor = i * entry_size
        duration, size = duration_default, size_default
        if trun_flags & _TRUN_DURATION:
            (duration,) = struct.unpack_from(">I", entries, cursor)
            cursor += 4
        if trun_flags & _TRUN_SIZE:
            (size,) = struct.unpack_from(">I", entries, cursor)
        durations.append(duration)
        sizes.append(size)
        offsets.append(at)
        at += size
    if offsets[0] < mdat.payload_offset or at > mdat.end:
        raise Mp4FormatError("trun samples lie outside the mdat")

    senc_header, senc_entries = None, ()
    saiz_prefix, saiz_default, saio_prefix, saio_version = b"", 0, b"", 0
    if "senc" in found:
        if "saiz" not in found or "saio" not in found:
            raise Mp4FormatError("senc without saiz/saio; cannot cut")
        saiz = found["saiz"]
        saiz_flags = _word(data, saiz) & 0xFFFFFF
        pos = saiz.payload_offset + 4 + (8 if saiz_flags & 1 else 0)
        saiz_prefix = bytes(data[saiz.payload_offset:pos])
        saiz_default, saiz_count = struct.unpack_from(">BI", data, pos)
        pos += 5
        if saiz_count != count:
            raise Mp4FormatError(f"saiz lists {saiz_count} samples, trun {count}")
        info_sizes = [saiz_default] * count if saiz_default else list(data[pos:pos + count])
        senc = found["senc"]
        senc_header = bytes(data[senc.payload_offset:senc.payload_offset + 4])
        (senc_count,) = struct.unpack_from(">I", data, senc.payload_offset + 4)
        if senc_count != count:
            raise Mp4FormatError(f"senc lists {senc_count} samples, trun {count}")
        pos = senc.payload_offset + 8
        cut = []
        for size in info_sizes:
            cut.append(bytes(data[pos:pos + size]))
            pos += size
        if pos > senc.end:
            raise Mp4FormatError("senc is shorter than saiz says")
        senc_entries = tuple(cut)
        saio = found["saio"]
        saio_word = _word(data, saio)
        saio_version = saio_word >> 24
        saio_prefix = bytes(data[saio.payload_offset:saio.payload_offset + 4 + (8 if saio_word & 1 else 0)])
    return FragmentTable(
        data=data, tfhd=bytes(data[tfhd.offset:tfhd.end]), base_decode_time=base, trun_version=trun_version,
        trun_flags=trun_flags, first_sample_flags=first_flags, entry_size=entry_size, entries=entries,
        durations=tuple(durations), sample_offsets=tuple(offsets), sample_sizes=tuple(sizes),
        senc_header=senc_header, senc_entries=senc_entries, saiz_prefix=saiz_prefix, saiz_default=saiz_default,
        saio_prefix=saio_prefix, saio_version=saio_version,
    )


def build_fragment(table: FragmentTable, first: int, stop: int, *, decode_time: int, sequence: int) -> bytes:
    """moof+mdat holding samples [first, stop) of `table`, with tfdt `decode_time` (version 1, so any
    value fits) and mfhd `sequence`."""
    if not 0 <= first < stop <= table.sample_count:
        raise ValueError(f"sample range [{first}, {stop}) outside 0..{table.sample_count}")
    if not 0 < sequence < 2**32:
        raise ValueError(f"sequence number {sequence} out of range")
    count = stop - first
    trun_flags = table.trun_flags
    head = struct.pack(">I", (table.trun_version << 24) | (trun_flags & ~_TRUN_FIRST_SAMPLE_FLAGS if first else trun_flags))
    trun_fixed = struct.pack(">I", count)
    first_flags = b""
    if first == 0 and table.first_sample_flags is not None:
        first_flags = struct.pack(">I", table.first_sample_flags)
    entries = table.entries[first * table.entry_size:stop * table.entry_size]
    trun_len = 8 + 4 + 4 + 4 + len(first_flags) + len(entries)  # header, flags, count, data offset
    tfdt = _box(b"tfdt", struct.pack(">IQ", 1 << 24, decode_time))
    traf_parts = [table.tfhd, tfdt]
    enc: list[bytes] = []
    if table.senc_header is not None:
        chosen = table.senc_entries[first:stop]
        senc = _box(b"senc", table.senc_header + struct.pack(">I", count) + b"".join(chosen))
        sizes = b"" if table.saiz_default else bytes(len(e) for e in chosen)
        saiz = _box(b"saiz", table.saiz_prefix + struct.pack(">BI", table.saiz_default, count) + sizes)
        saio_len = 8 + len(table.saio_prefix) + 4 + (8 if table.saio_version else 4)
        # saio points at the first senc entry, counted from the moof (the base: default-base-is-moof).
        entries_at = 8 + 16 + 8 + len(table.tfhd) + len(tfdt) + trun_len + 8 + 8
        offset = struct.pack(">Q" if table.saio_version else ">I", entries_at)
        saio = _box(b"saio", table.saio_prefix + struct.pack(">I", 1) + offset)
        assert len(saio) == saio_len
        enc = [senc, saiz, saio]
    moof_len = 8 + 16 + 8 + len(table.tfhd) + len(tfdt) + trun_len + sum(len(b) for b in enc)
    trun = _box(b"trun", head + trun_fixed + struct.pack(">i", moof_len + 8) + first_flags + entries)
    traf = _box(b"traf", b"".join([*traf_parts, trun, *enc]))
    moof = _box(b"moof", _box(b"mfhd", struct.pack(">II", 0, sequence)) + traf)
    assert len(moof) == moof_len
    start, end = table.sample_offsets[first], table.sample_offsets[stop - 1] + table.sample_sizes[stop - 1]
    return moof + struct.pack(">I4s", 8 + end - start, b"mdat") + table.data[start:end]


def chunk_ranges(durations: Sequence[int], chunk_ticks: int, chunks: int, *, skip: int = 0) -> list[tuple[int, int]]:
    """Sample ranges [first, stop) of `chunks` chunks of `chunk_ticks` each: a sample belongs to the
    chunk its decode time (from the fragment's start) falls in; the last chunk takes the rest. The
    first `skip` samples are left out. A chunk with no sample is (first, first)."""
    if chunk_ticks <= 0 or chunks < 1:
        raise ValueError("chunk_ticks and chunks must be positive")
    bounds = [0] * (chunks + 1)
    t = 0
    index = 0
    for chunk in range(1, chunks):
        limit = chunk * chunk_ticks
        while index < len(durations) and t < limit:
            t += durations[index]
            index += 1
        bounds[chunk] = index
    bounds[chunks] = len(durations)
    bounds[0] = 0
    return [(max(a, skip), max(b, skip)) for a, b in zip(bounds, bounds[1:])]
