"""Per-segment objective quality of a rendition against its source: luma PSNR on sampled frames.

Method: in each segment, `samples_per_segment` frames spread evenly (never the segment's first,
intra-coded frame alone); the rendition's decoded frame is scaled (bicubic) to the comparison size,
which is the source size capped at 1080 lines, and compared on the Y plane with the source frame
scaled the same way. A segment's score is PSNR of the mean squared error over its sampled frames.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

MAX_PSNR_DB = 100.0  # reported for a perfect match (MSE 0), as FFmpeg's psnr filter caps at inf
COMPARISON_MAX_HEIGHT = 1080


def comparison_size(source_width: int, source_height: int) -> tuple[int, int]:
    """(width, height) at which renditions are compared: source size capped at 1080 lines, even."""
    if source_height <= COMPARISON_MAX_HEIGHT:
        return source_width - source_width % 2, source_height - source_height % 2
    width = round(source_width * COMPARISON_MAX_HEIGHT / source_height / 2) * 2
    return width, COMPARISON_MAX_HEIGHT


def sample_offsets(segment_frames: int, samples_per_segment: int) -> tuple[int, ...]:
    """Frame offsets inside a segment of `segment_frames` frames: the centres of equal slices."""
    if segment_frames <= 0 or samples_per_segment <= 0:
        raise ValueError("segment_frames and samples_per_segment must be > 0")
    count = min(samples_per_segment, segment_frames)
    return tuple(sorted({int((j + 0.5) * segment_frames / count) for j in range(count)}))


def mse(reference: np.ndarray, test: np.ndarray) -> float:
    """Mean squared error of two same-shape 8-bit planes."""
    if reference.shape != test.shape:
        raise ValueError(f"shape mismatch: {reference.shape} vs {test.shape}")
    diff = reference.astype(np.int32) - test.astype(np.int32)
    return float(np.mean(diff * diff))


def psnr_db(mse_values: Sequence[float], peak: float = 255.0) -> float:
    """PSNR in dB of the mean of `mse_values`; MAX_PSNR_DB when they are all zero."""
    if not mse_values:
        raise ValueError("no samples")
    mean = sum(mse_values) / len(mse_values)
    if mean <= 0.0:
        return MAX_PSNR_DB
    return min(MAX_PSNR_DB, 10.0 * math.log10(peak * peak / mean))
