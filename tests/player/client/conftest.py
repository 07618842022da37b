"""Helpers shared by the HTTP-client tests: DASH content written by FFmpeg's own muxer."""

from __future__ import annotations

import fractions
from pathlib import Path

import av
import numpy as np


def write_ffmpeg_dash(out_dir: Path, **options: str) -> Path:
    """5 s of two H.264 renditions (320x180, 640x360, 24 fps, 2 s GOPs) and AAC through FFmpeg's dash
    muxer (PyAV), with the muxer `options`; returns the MPD path. It wrote tests/player/client/data/ffmpeg_*.mpd."""
    out_dir.mkdir(parents=True, exist_ok=True)
    options = {"seg_duration": "2", "adaptation_sets": "id=0,streams=v id=1,streams=a", **options}
    with av.open(str(out_dir / "manifest.mpd"), "w", format="dash", options=options) as container:
        videos = []
        for width, height, bit_rate in ((320, 180, 200_000), (640, 360, 600_000)):
            stream = container.add_stream(
                "libx264", rate=24, options={"preset": "ultrafast", "g": "48", "keyint_min": "48", "sc_threshold": "0"}
            )
            stream.width, stream.height, stream.pix_fmt, stream.bit_rate = width, height, "yuv420p", bit_rate
            videos.append(stream)
        audio = container.add_stream("aac", rate=48000)
        audio.bit_rate, audio.layout = 96_000, "stereo"
        for index in range(24 * 5):
            for stream in videos:
                picture = np.full((stream.height, stream.width, 3), index, np.uint8)
                frame = av.VideoFrame.from_ndarray(picture, format="rgb24")
                frame.pts, frame.time_base = index, fractions.Fraction(1, 24)
                container.mux(stream.encode(frame))
        for index in range(48000 * 5 // 1024):
            frame = av.AudioFrame.from_ndarray(np.zeros((2, 1024), np.float32), format="fltp", layout="stereo")
            frame.sample_rate, frame.pts, frame.time_base = 48000, index * 1024, fractions.Fraction(1, 48000)
            container.mux(audio.encode(frame))
        for stream in (*videos, audio):
            container.mux(stream.encode(None))
    return out_dir / "manifest.mpd"
