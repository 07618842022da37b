"""Packaging inputs: a media file decoded once with PyAV, or the synthetic demo clip.

A source yields video frames on a constant frame rate (each tagged with its frame index; a frame
may repeat to fill a gap) and audio frames tagged with their start in seconds from the first video
frame, interleaved in decode order.
Bad input (missing, unreadable, no video, corrupt) raises one clear OSError/ValueError.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Protocol

import av

from server.packaging.demo import DemoClip, DemoClipConfig

MAX_FRAME_RATE = 120


@dataclass(frozen=True, kw_only=True, slots=True)
class SourceInfo:
    """Display size (square pixels), frame rate and expected length of a source."""

    width: int
    height: int
    frame_rate: Fraction
    duration_s: float | None
    has_audio: bool
    name: str


@dataclass(frozen=True, slots=True)
class VideoChunk:
    """A decoded picture shown at constant-frame-rate slot `index` (the frame object is shared:
    consumers must not modify it)."""

    frame: av.VideoFrame
    index: int


@dataclass(frozen=True, slots=True)
class AudioChunk:
    """Decoded audio and where it starts, in seconds from the first video frame."""

    frame: av.AudioFrame
    time_s: float


class MediaSource(Protocol):
    info: SourceInfo

    def media(self) -> Iterator[VideoChunk | AudioChunk]:
        """Video frames on CFR slots and audio chunks, in the order they are decoded."""
        ...


class DemoSource:
    """The demo clip as a packaging source (no file in between)."""

    def __init__(self, config: DemoClipConfig) -> None:
        self._clip = DemoClip(config)
        self.info = SourceInfo(
            width=config.width,
            height=config.height,
            frame_rate=Fraction(config.frame_rate),
            duration_s=config.frame_count / config.frame_rate,
            has_audio=True,
            name="demo clip",
        )

    def media(self) -> Iterator[VideoChunk | AudioChunk]:
        rate = self._clip.config.sample_rate_hz
        for frame in self._clip.iter_media():
            if isinstance(frame, av.AudioFrame):
                yield AudioChunk(frame, (frame.pts or 0) / rate)
            else:
                yield VideoChunk(frame, frame.pts or 0)


class FileSource:
    """A media file: probes it on construction (raising on bad input), decodes it in `media()`."""

    def __init__(self, path: Path) -> None:
        self.path = path
        if not path.exists():
            raise FileNotFoundError(f"input file not found: {path}")
        if not path.is_file():
            raise ValueError(f"input is not a regular file: {path}")
        with self._open() as container:
            video = self._video_stream(container)
            ctx = video.codec_context
            width, height = ctx.width, ctx.height
            if not width or not height:
                raise ValueError(f"{path}: video stream has no frame size")
            sar = video.sample_aspect_ratio or ctx.sample_aspect_ratio
            if sar and sar > 0 and sar != 1:
                width = round(width * sar / 2) * 2
            # FFmpeg's guess prefers the timestamp grid (r_frame_rate) unless it is implausible.
            rate = video.guessed_rate or video.average_rate or video.base_rate
            if not rate or rate <= 0 or rate > MAX_FRAME_RATE:
                raise ValueError(f"{path}: cannot determine a usable frame rate (got {rate})")
            duration_s = None
            if video.duration is not None and video.time_base:
                duration_s = float(video.duration * video.time_base)
            elif container.duration:
                duration_s = container.duration / av.time_base
            self.info = SourceInfo(
                width=width,
                height=height,
                frame_rate=Fraction(rate).limit_denominator(1001),
                duration_s=duration_s,
                has_audio=bool(container.streams.audio),
                name=path.name,
            )

    def _open(self) -> av.container.InputContainer:
        try:
            return av.open(str(self.path), "r")
        except av.error.FileNotFoundError as exc:
            raise FileNotFoundError(f"input file not found: {self.path}") from exc
        except av.FFmpegError as exc:
            raise ValueError(f"{self.path}: not a media file FFmpeg can read ({exc.strerror})") from exc

    def _video_stream(self, container: av.container.InputContainer) -> av.VideoStream:
        for stream in container.streams.video:
            if not stream.disposition & av.stream.Disposition.attached_pic:
                return stream
        raise ValueError(f"{self.path}: has no video stream")

    def media(self) -> Iterator[VideoChunk | AudioChunk]:
        rate = self.info.frame_rate
        with self._open() as container:
            video = self._video_stream(container)
            video.thread_type = "AUTO"
            audio = container.streams.audio[0] if container.streams.audio else None
            streams = [video] + ([audio] if audio is not None else [])
            start_s: float | None = None
            pending_audio: list[av.AudioFrame] = []
            next_index = 0
            last: av.VideoFrame | None = None
            try:
                for packet in container.demux(streams):
                    for frame in packet.decode():
                        if isinstance(frame, av.AudioFrame):
                            if start_s is None:
                                pending_audio.append(frame)  # placed once the video start is known
                            elif frame.time is not None:
                                yield AudioChunk(frame, frame.time - start_s)
                            continue
                        if not isinstance(frame, av.VideoFrame) or frame.time is None:
                            continue
                        if start_s is None:
                            start_s = frame.time
                            for early in pending_audio:
                                if early.time is not None:
                                    yield AudioChunk(early, early.time - start_s)
                            pending_audio.clear()
                        # Constant frame rate: the frame covers the slots up to its timestamp;
                        # repeat the previous frame into gaps, drop frames that fall behind.
                        slot = round((frame.time - start_s) * rate)
                        while last is not None and next_index < slot:
                            yield VideoChunk(last, next_index)
                            next_index += 1
                        if slot >= next_index:
                            yield VideoChunk(frame, next_index)
                            next_index += 1
                            last = frame
            except av.FFmpegError as exc:
                raise ValueError(f"{self.path}: cannot decode ({exc.strerror}); the file may be corrupt") from exc
            if next_index == 0:
                raise ValueError(f"{self.path}: no decodable video frames")

