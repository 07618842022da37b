"""Numpy views of PyAV picture planes (rows may be padded: line_size >= width)."""

from __future__ import annotations

from dataclasses import dataclass

import av
import numpy as np
from av.video.plane import VideoPlane


@dataclass(frozen=True, slots=True)
class ColorTags:
    """A frame's colour description (AVColorSpace, AVColorRange, AVColorTransferCharacteristic,
    AVColorPrimaries values), carried over to a copy of its pixels."""

    colorspace: int
    color_range: int
    color_trc: int
    color_primaries: int

    @staticmethod
    def of(frame: av.VideoFrame) -> ColorTags:
        return ColorTags(int(frame.colorspace), int(frame.color_range), int(frame.color_trc),
                         int(frame.color_primaries))

    def apply(self, frame: av.VideoFrame) -> None:
        frame.colorspace, frame.color_range = self.colorspace, self.color_range
        frame.color_trc, frame.color_primaries = self.color_trc, self.color_primaries


def plane_rows(plane: VideoPlane) -> np.ndarray:
    """The plane's memory as a writable uint8 array of shape (rows, line_size)."""
    return np.frombuffer(memoryview(plane), dtype=np.uint8).reshape(-1, plane.line_size)


def luma(frame: av.VideoFrame) -> np.ndarray:
    """A copy of the Y plane of a YUV frame, without row padding."""
    return plane_rows(frame.planes[0])[: frame.height, : frame.width].copy()


def copy_frame(frame: av.VideoFrame) -> av.VideoFrame:
    """A new frame with the same pixels (timestamps and picture type are not copied)."""
    copy = av.VideoFrame(frame.width, frame.height, frame.format.name)
    for src, dst in zip(frame.planes, copy.planes):
        width = min(src.line_size, dst.line_size)
        plane_rows(dst)[: dst.height, :width] = plane_rows(src)[: dst.height, :width]
    return copy
