"""Numpy views of PyAV picture planes (rows may be padded: line_size >= width)."""

from __future__ import annotations

import av
import numpy as np
from av.video.plane import VideoPlane


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
