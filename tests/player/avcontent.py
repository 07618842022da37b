"""A title whose audio is cut differently from its video, written by FFmpeg's own DASH muxer.

Video GOPs of 4 s with `seg_duration` 2 s: the muxer can cut video only at a keyframe (every 4 s)
but cuts audio every 2 s (at AAC frame boundaries, so the audio segments last 2.005 s, 1.995 s...),
as many packagers and HLS audio renditions do. Two audio renditions (64 and 128 kbit/s) in one
adaptation set give the session's audio rule a choice.
"""

from __future__ import annotations

import fractions
from pathlib import Path

import av
import numpy as np

FRAME_RATE = 24
VIDEO_SEGMENT_S = 4.0
AUDIO_SEGMENT_S = 2.0
AUDIO_BITRATES_BPS = (64_000, 128_000)


def write_split_av_dash(out_dir: Path, *, duration_s: float = 12.0) -> Path:
    """`duration_s` of two H.264 renditions (320x180 200k, 640x360 600k) and two AAC renditions;
    returns the MPD path."""
    out_dir.mkdir(parents=True, exist_ok=True)
    gop = str(int(VIDEO_SEGMENT_S * FRAME_RATE))
    options = {"seg_duration": str(AUDIO_SEGMENT_S), "use_template": "1", "use_timeline": "1",
               "adaptation_sets": "id=0,streams=v id=1,streams=a"}
    with av.open(str(out_dir / "manifest.mpd"), "w", format="dash", options=options) as container:
        videos = []
        for width, height, bit_rate in ((320, 180, 200_000), (640, 360, 600_000)):
            stream = container.add_stream(
                "libx264", rate=FRAME_RATE,
                options={"preset": "ultrafast", "g": gop, "keyint_min": gop, "sc_threshold": "0"})
            stream.width, stream.height, stream.pix_fmt, stream.bit_rate = width, height, "yuv420p", bit_rate
            videos.append(stream)
        audios = []
        for bit_rate in AUDIO_BITRATES_BPS:
            audio = container.add_stream("aac", rate=48000)
            audio.bit_rate, audio.layout = bit_rate, "stereo"
            audios.append(audio)
        rng = np.random.default_rng(7)
        frames = int(duration_s * FRAME_RATE)
        for index in range(frames):
            for stream in videos:
                picture = np.full((stream.height, stream.width, 3), (index * 5) % 256, np.uint8)
                picture[:, : (index * 7) % stream.width] = 255 - picture[:, : (index * 7) % stream.width]
                frame = av.VideoFrame.from_ndarray(picture, format="rgb24")
                frame.pts, frame.time_base = index, fractions.Fraction(1, FRAME_RATE)
                container.mux(stream.encode(frame))
        for index in range(int(48000 * duration_s) // 1024):
            tone = np.sin(2 * np.pi * 440 * (index * 1024 + np.arange(1024)) / 48000) * 0.2
            samples = np.stack([tone, tone]).astype(np.float32) + rng.normal(0, 0.01, (2, 1024)).astype(np.float32)
            for audio in audios:
                frame = av.AudioFrame.from_ndarray(samples, format="fltp", layout="stereo")
                frame.sample_rate, frame.pts, frame.time_base = 48000, index * 1024, fractions.Fraction(1, 48000)
                container.mux(audio.encode(frame))
        for stream in (*videos, *audios):
            container.mux(stream.encode(None))
    return out_dir / "manifest.mpd"
