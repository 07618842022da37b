"""H.264 bitstream checks the decoder needs without decoding (ITU-T H.264): does an access unit's
first slice header look like the start of an IDR picture, from the avcC's SPS and PPS."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class SliceHeaderCheck:
    """Does an access unit's first H.264 slice look like the start of an IDR picture?

    In mode "none", where nothing is decoded, it is the only check of the key; when a segment does
    not decode, it tells a wrong key from damaged data. CENC keeps each NAL's length and type byte in
    the clear and encrypts the rest, so with a wrong key the slice header (ITU-T H.264 7.3.3) reads
    as random bits: first_mb_in_slice must be 0, slice_type I, pic_parameter_set_id one of the
    avcC's and frame_num 0 (7.4.3, IDR); a random header passes all four about once in 600.
    Each later access unit's first slice must start a picture (first_mb_in_slice 0, a slice_type, one
    of the avcC's pps ids), which a random header does about once in four: `implausible` counts the
    access units that fail, so a few failures among the first samples tell a wrong key from damaged
    data even when the IDR's random header passed by chance.
    """

    length_size: int
    pps_ids: frozenset[int]
    frame_num_bits: int | None  # None: not known (several SPS, scaling matrices), not checked
    colour_plane_bits: int  # 2 with separate_colour_plane_flag, else 0

    @staticmethod
    def from_avcc(extradata: bytes | None) -> SliceHeaderCheck | None:
        """Parses an avcC record (ISO/IEC 14496-15 5.3.3.1); None if there is none."""
        if not extradata or len(extradata) < 7 or extradata[0] != 1:
            return None
        try:
            length_size = (extradata[4] & 3) + 1
            sps_count, pos = extradata[5] & 0x1F, 6
            sps: list[bytes] = []
            for _ in range(sps_count):
                size = int.from_bytes(extradata[pos:pos + 2], "big")
                sps.append(extradata[pos + 2:pos + 2 + size])
                pos += 2 + size
            pps_count, pos = extradata[pos], pos + 1
            pps_ids = set()
            for _ in range(pps_count):
                size = int.from_bytes(extradata[pos:pos + 2], "big")
                pps_ids.add(_BitReader(extradata[pos + 3:pos + 2 + size]).ue())  # after the NAL header
                pos += 2 + size
            frame_num_bits, colour_plane_bits = _sps_frame_num_bits(sps[0]) if len(sps) == 1 else (None, 0)
        except (IndexError, ValueError):
            return None
        return SliceHeaderCheck(length_size, frozenset(pps_ids), frame_num_bits, colour_plane_bits)

    def plausible(self, access_unit: bytes) -> bool:
        """Does this access unit start like the IDR picture a segment must open with?"""
        head = self._first_slice(access_unit)
        if head is None or head.in_band:
            return head is not None
        return (head.nal_type == 5 and head.first_mb == 0 and head.slice_type % 5 in (2, 4)
                and head.pps_id in self.pps_ids and head.frame_num == 0)

    def implausible(self, access_units: list[bytes]) -> int:
        """How many of these access units (the first an IDR, the others any picture) do not start with
        a slice header that could be theirs."""
        count = 0
        for index, access_unit in enumerate(access_units):
            if index == 0:
                count += not self.plausible(access_unit)
                continue
            head = self._first_slice(access_unit)
            count += head is None or not (head.in_band or (head.first_mb == 0 and head.slice_type < 10
                                                           and head.pps_id in self.pps_ids))
        return count

    def _first_slice(self, access_unit: bytes) -> _SliceStart | None:
        """The start of the first slice header; None when there is no readable slice."""
        pos = 0
        while pos + self.length_size < len(access_unit):
            size = int.from_bytes(access_unit[pos:pos + self.length_size], "big")
            nal = access_unit[pos + self.length_size:pos + self.length_size + size]
            pos += self.length_size + size
            if not nal:
                return None
            nal_type = nal[0] & 0x1F
            if nal_type in (7, 8):
                return _SliceStart(nal_type, in_band=True)  # in-band parameter sets: their ids are not ours to know
            if nal_type not in (1, 5):
                continue  # SEI, AUD, ...
            try:
                reader = _BitReader(nal[1:24])
                first_mb, slice_type, pps_id = reader.ue(), reader.ue(), reader.ue()
                reader.bits(self.colour_plane_bits)
                frame_num = reader.bits(self.frame_num_bits) if self.frame_num_bits else 0
            except ValueError:
                return None
            return _SliceStart(nal_type, first_mb=first_mb, slice_type=slice_type, pps_id=pps_id, frame_num=frame_num)
        return None


@dataclass(frozen=True, slots=True)
class _SliceStart:
    """The fields a slice header starts with (ITU-T H.264 7.3.3), or in_band parameter sets before it."""

    nal_type: int
    in_band: bool = False
    first_mb: int = 0
    slice_type: int = 0
    pps_id: int = 0
    frame_num: int = 0


_HIGH_PROFILES = frozenset({100, 110, 122, 244, 44, 83, 86, 118, 128, 138, 139, 134, 135})


def _sps_frame_num_bits(sps: bytes) -> tuple[int | None, int]:
    """(log2_max_frame_num, colour_plane_id bits) from an SPS NAL (ITU-T H.264 7.3.2.1.1)."""
    reader = _BitReader(sps[4:])  # after the NAL header, profile_idc, constraint flags and level_idc
    reader.ue()  # seq_parameter_set_id
    colour_plane_bits = 0
    if sps[1] in _HIGH_PROFILES:
        if reader.ue() == 3:  # chroma_format_idc 4:4:4
            colour_plane_bits = 2 * reader.bits(1)
        reader.ue()  # bit_depth_luma_minus8
        reader.ue()  # bit_depth_chroma_minus8
        reader.bits(1)  # qpprime_y_zero_transform_bypass_flag
        if reader.bits(1):  # seq_scaling_matrix_present_flag: lists follow, not worth parsing
            return None, colour_plane_bits
    return reader.ue() + 4, colour_plane_bits


class _BitReader:
    """Reads u(n) and ue(v) (ITU-T H.264 7.2, 9.1) from the start of an RBSP."""

    def __init__(self, data: bytes) -> None:
        self._bits = "".join(f"{b:08b}" for b in data.replace(b"\x00\x00\x03", b"\x00\x00"))
        self._pos = 0

    def bits(self, count: int) -> int:
        if self._pos + count > len(self._bits):
            raise ValueError("truncated RBSP")
        value = int(self._bits[self._pos:self._pos + count] or "0", 2)
        self._pos += count
        return value

    def ue(self) -> int:
        zeros = 0
        while self._pos < len(self._bits) and self._bits[self._pos] == "0":
            zeros += 1
            self._pos += 1
        if zeros > 31:
            raise ValueError("Exp-Golomb code too long")
        return self.bits(zeros + 1) - 1
