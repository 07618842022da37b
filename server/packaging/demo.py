"""The bundled demo clip: a deterministic synthetic source made with numpy and PyAV alone.

Picture: drifting gradients, a scrolling band of fine detail, bouncing shapes, seeded film-grain
noise, a timecode and a white flash at every whole second; sound: a slow pentatonic melody with a
short pip on every whole second (the pip and the flash line up, to check A/V sync by eye and ear).
The same config always gives the same frames and samples, bit for bit.
"""

from __future__ import annotations

import math
import os
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from av.codec.context import Flags

from server.packaging.planes import plane_rows

# Segments of a seven-segment digit, as (x, y, w, h) in units of the stroke width; the digit cell
# is 5 wide and 9 tall.
_SEGMENTS = {
    "a": (1, 0, 3, 1),
    "b": (4, 1, 1, 3),
    "c": (4, 5, 1, 3),
    "d": (1, 8, 3, 1),
    "e": (0, 5, 1, 3),
    "f": (0, 1, 1, 3),
    "g": (1, 4, 3, 1),
}
_DIGITS = {
    "0": "abcdef", "1": "bc", "2": "abdeg", "3": "abcdg", "4": "bcfg",
    "5": "acdfg", "6": "acdefg", "7": "abc", "8": "abcdefg", "9": "abcdfg",
}
_PENTATONIC_HZ = (261.63, 293.66, 329.63, 392.00, 440.00, 523.25, 587.33, 659.25)
_NOISE_FIELDS = 4
_NOISE_MARGIN_ROWS = 64


@dataclass(frozen=True, kw_only=True, slots=True)
class DemoClipConfig:
    """Parameters of the synthetic clip; the same values always give the same frames and samples."""

    duration_s: float = 60.0
    width: int = 1920
    height: int = 1080
    frame_rate: int = 24
    sample_rate_hz: int = 48_000
    seed: int = 2024

    def __post_init__(self) -> None:
        if not (0.0 < self.duration_s <= 24 * 3600):
            raise ValueError(f"duration_s must be in (0, 86400], got {self.duration_s}")
        if self.width < 64 or self.height < 64 or self.width % 2 or self.height % 2:
            raise ValueError(f"width and height must be even and >= 64, got {self.width}x{self.height}")
        if not (1 <= self.frame_rate <= 120):
            raise ValueError(f"frame_rate must be in [1, 120], got {self.frame_rate}")
        if self.sample_rate_hz not in (32_000, 44_100, 48_000):
            raise ValueError(f"sample_rate_hz must be 32000, 44100 or 48000, got {self.sample_rate_hz}")

    @property
    def frame_count(self) -> int:
        return max(1, round(self.duration_s * self.frame_rate))

    @property
    def sample_count(self) -> int:
        return round(self.frame_count / self.frame_rate * self.sample_rate_hz)


class DemoClip:
    """Renders frames (yuv420p) and stereo samples of the demo clip on demand, in any order."""

    def __init__(self, config: DemoClipConfig) -> None:
        self.config = config
        w, h = config.width, config.height
        rng = np.random.default_rng(config.seed)
        self._x = np.arange(w, dtype=np.float32) / w
        self._y = np.arange(h, dtype=np.float32) / h
        # Film grain: a few seeded fields, each frame takes one at a seeded row offset so no two
        # frames carry the same noise (x264 cannot predict it, so it costs bits at every rung).
        grain = rng.normal(0.0, 2.0, size=(_NOISE_FIELDS, h + _NOISE_MARGIN_ROWS, w)).round()
        self._noise: np.ndarray = np.clip(grain, -8, 8).astype(np.int16)
        # Fine detail band (lower quarter): a chirped grating plus seeded speckle in 2x2 and 4x4
        # grains, twice as wide as the frame so it can scroll. Its finer parts vanish rung by rung.
        band_h = h // 4
        bx = np.arange(2 * w, dtype=np.float32)
        by = np.arange(band_h, dtype=np.float32)[:, None]
        grating = 14.0 * np.sin(bx * (0.15 + 0.55 * (by / band_h)))
        speckle = np.zeros((band_h, 2 * w), dtype=np.float32)
        for cell, amplitude in ((2, 5), (4, 7)):
            coarse = rng.integers(-amplitude, amplitude + 1, size=(band_h // cell + 1, 2 * w // cell + 1))
            speckle += np.repeat(np.repeat(coarse, cell, axis=0), cell, axis=1)[:band_h, : 2 * w]
        self._band = (grating + speckle).astype(np.int16)
        self._band_top = h - band_h - h // 24
        shapes = rng.uniform(0.0, 1.0, size=(3, 6))
        self._shapes = [tuple(float(v) for v in row) for row in shapes]

    # ------------------------------------------------------------------ video
    def frame_planes(self, index: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Y, U, V planes (uint8) of frame `index` (0-based)."""
        cfg = self.config
        w, h = cfg.width, cfg.height
        t = index / cfg.frame_rate
        col = 45.0 * np.sin(2 * np.pi * (1.5 * self._x - t / 10.0))
        row = 35.0 * np.cos(2 * np.pi * (self._y - t / 7.0))
        y = (110.0 + row[:, None] + col[None, :]).astype(np.int16)

        shift = int(t * w / 6.0) % w
        top = self._band_top
        y[top : top + self._band.shape[0]] += self._band[:, shift : shift + w]

        rng = np.random.default_rng((self.config.seed, index))
        field = int(rng.integers(_NOISE_FIELDS))
        offset = int(rng.integers(_NOISE_MARGIN_ROWS))
        y += self._noise[field, offset : offset + h]

        u = np.full((h // 2, w // 2), 128, dtype=np.int16)
        v = np.full((h // 2, w // 2), 128, dtype=np.int16)
        u += (30.0 * np.sin(2 * np.pi * (self._x[::2] + t / 13.0)))[None, :].astype(np.int16)
        v += (30.0 * np.cos(2 * np.pi * (self._y[::2] - t / 11.0)))[:, None].astype(np.int16)

        for k, (px, py, fx, fy, size, hue) in enumerate(self._shapes):
            side = int((0.08 + 0.1 * size) * h) & ~1
            cx = int((0.5 + 0.45 * math.sin(2 * np.pi * (px + t * (0.05 + 0.1 * fx)))) * (w - side))
            cy = int((0.5 + 0.45 * math.sin(2 * np.pi * (py + t * (0.04 + 0.1 * fy)))) * (h - side))
            cx, cy = cx & ~1, cy & ~1
            luma = 60 + 60 * k
            y[cy : cy + side, cx : cx + side] = luma
            u[cy // 2 : (cy + side) // 2, cx // 2 : (cx + side) // 2] = int(128 + 90 * math.cos(6.28 * hue))
            v[cy // 2 : (cy + side) // 2, cx // 2 : (cx + side) // 2] = int(128 + 90 * math.sin(6.28 * hue))

        stroke = max(2, h // 90)
        frame_in_second = index % cfg.frame_rate
        if frame_in_second < max(1, cfg.frame_rate // 12):
            box = 10 * stroke
            y[2 * stroke : 2 * stroke + box, w - 2 * stroke - box : w - 2 * stroke] = 235
        seconds = index // cfg.frame_rate
        text = f"{seconds // 60:02d}{seconds % 60:02d}{frame_in_second:02d}"
        self._draw_timecode(y, text, stroke)

        np.clip(y, 16, 235, out=y)
        np.clip(u, 16, 240, out=u)
        np.clip(v, 16, 240, out=v)
        return y.astype(np.uint8), u.astype(np.uint8), v.astype(np.uint8)

    @staticmethod
    def _draw_timecode(y: np.ndarray, text: str, stroke: int) -> None:
        """Draws MM SS FF as seven-segment digits on a dark box in the top-left corner."""
        cell_w, gap = 5 * stroke, 2 * stroke
        x0, y0 = 2 * stroke, 2 * stroke
        width = len(text) * (cell_w + gap) + 2 * gap
        y[y0 - stroke : y0 + 10 * stroke, x0 - stroke : x0 + width] = 24
        for i, ch in enumerate(text):
            left = x0 + i * (cell_w + gap) + (i // 2) * gap
            for seg in _DIGITS[ch]:
                sx, sy, sw, sh = _SEGMENTS[seg]
                y[y0 + sy * stroke : y0 + (sy + sh) * stroke, left + sx * stroke : left + (sx + sw) * stroke] = 220

    def video_frame(self, index: int) -> av.VideoFrame:
        """Frame `index` as a yuv420p VideoFrame with pts=index in time base 1/frame_rate."""
        frame = av.VideoFrame(self.config.width, self.config.height, "yuv420p")
        for plane, data in zip(frame.planes, self.frame_planes(index)):
            rows, cols = data.shape
            plane_rows(plane)[:rows, :cols] = data
        frame.pts = index
        frame.time_base = Fraction(1, self.config.frame_rate)
        return frame

    # ------------------------------------------------------------------ audio
    def audio_samples(self, start: int, count: int) -> np.ndarray:
        """Stereo samples [start, start+count) as float32 of shape (2, count), in [-1, 1]."""
        sr = self.config.sample_rate_hz
        n = np.arange(start, start + count, dtype=np.float64)
        t = n / sr
        note_len_s = 0.5
        note = np.floor(t / note_len_s).astype(np.int64)
        # A fixed walk over the scale, cheap to evaluate for any sample index.
        degree = (note * 5 + (note // 8) * 3) % len(_PENTATONIC_HZ)
        freq = np.asarray(_PENTATONIC_HZ)[degree]
        phase_t = t - note * note_len_s
        envelope = np.minimum(1.0, phase_t / 0.02) * np.exp(-3.0 * phase_t)
        melody = 0.25 * envelope * np.sin(2 * np.pi * freq * phase_t)
        bass = 0.08 * np.sin(2 * np.pi * 65.41 * t)
        in_second = t - np.floor(t)
        pip = np.where(in_second < 0.05, 0.2 * np.sin(2 * np.pi * 1000.0 * in_second), 0.0)
        pan = 0.5 + 0.4 * np.sin(2 * np.pi * note / 16.0)
        left = melody * (1.0 - pan) * 2.0 + bass + pip
        right = melody * pan * 2.0 + bass + pip
        return np.stack([left, right]).astype(np.float32)

    def audio_frame(self, start: int, count: int) -> av.AudioFrame:
        """Samples [start, start+count) as a planar float stereo AudioFrame with pts=start."""
        frame = av.AudioFrame.from_ndarray(self.audio_samples(start, count), format="fltp", layout="stereo")
        frame.sample_rate = self.config.sample_rate_hz
        frame.pts = start
        frame.time_base = Fraction(1, self.config.sample_rate_hz)
        return frame

    def iter_media(self, *, audio_frame_samples: int = 1024) -> Iterator[av.VideoFrame | av.AudioFrame]:
        """All frames of the clip, video and audio interleaved in presentation order."""
        cfg = self.config
        total_samples = cfg.sample_count
        next_sample = 0
        for index in range(cfg.frame_count):
            video_end = (index + 1) * cfg.sample_rate_hz // cfg.frame_rate
            while next_sample < min(video_end, total_samples):
                count = min(audio_frame_samples, total_samples - next_sample)
                yield self.audio_frame(next_sample, count)
                next_sample += count
            yield self.video_frame(index)
        while next_sample < total_samples:
            count = min(audio_frame_samples, total_samples - next_sample)
            yield self.audio_frame(next_sample, count)
            next_sample += count


def write_demo_source(path: Path, config: DemoClipConfig, *, crf: int = 14) -> Path:
    """Writes the clip as an MP4 (H.264 at high quality + AAC 256k) to use as `abrkit package` input.

    Single-threaded x264 and bit-exact muxing keep the file identical from run to run. Keyframes
    come every 1.25 s, off any usual segment grid, as in real inputs that packaging must re-GOP.
    Written aside and renamed into place: another process reading `path` (a shared cache folder)
    sees the old file or the whole new one.
    """
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    try:
        _write_clip(tmp, config, crf)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def _write_clip(path: Path, config: DemoClipConfig, crf: int) -> None:
    clip = DemoClip(config)
    with av.open(str(path), "w", format="mp4", options={"fflags": "+bitexact"}) as out:
        video = out.add_stream(
            "libx264",
            rate=config.frame_rate,
            options={"preset": "veryfast", "crf": str(crf), "threads": "1"},
        )
        video.width, video.height, video.pix_fmt = config.width, config.height, "yuv420p"
        video.codec_context.gop_size = max(1, round(1.25 * config.frame_rate))
        video.codec_context.flags |= Flags.bitexact
        audio = out.add_stream("aac", rate=config.sample_rate_hz)
        audio.layout = "stereo"
        audio.bit_rate = 256_000
        audio.codec_context.flags |= Flags.bitexact
        for frame in clip.iter_media():
            if isinstance(frame, av.VideoFrame):
                out.mux(video.encode(frame))
            else:
                out.mux(audio.encode(frame))
        out.mux(video.encode(None))
        out.mux(audio.encode(None))
