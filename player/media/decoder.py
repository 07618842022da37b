"""Segment decoding with PyAV: one long-lived decoder per rendition, one container per segment.

A segment is demuxed from memory (`init + segment`, CENC-decrypted by FFmpeg's mp4 demuxer when a
key is given) and its packets go to a codec context that lives as long as the rendition. Failed,
corrupt and missing frames are counted; a segment of which nothing decodes raises a `DecodeError`.
Not thread-safe: use each decoder from one thread (FFmpeg's own decoding threads are internal).
"""

from __future__ import annotations

import io
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from fractions import Fraction
from typing import Any, Literal

import av
import numpy as np
from av.audio.resampler import AudioResampler
from av.video.reformatter import Interpolation, VideoReformatter

from player.media.h264 import SliceHeaderCheck
from player.media.modes import DECODE_MODES, DecodeMode
from server.formats.boxes import Mp4FormatError, iter_boxes

ThreadType = Literal["AUTO", "FRAME", "SLICE", "NONE"]
RgbFormat = Literal["rgba", "bgra", "rgb24", "bgr24"]

_BYTES_PER_PIXEL: dict[str, int] = {"rgba": 4, "bgra": 4, "rgb24": 3, "bgr24": 3}
_NUMPY_SAMPLE_TYPES: dict[str, str] = {"u8": "u1", "s16": "<i2", "s32": "<i4", "flt": "<f4", "dbl": "<f8", "s64": "<i8"}
_KEY_RE = re.compile(r"[0-9a-fA-F]{32}")
# Probing a segment would decode its first frame (to learn the pixel format) with a throw-away
# decoder: ~3 ms per 540p segment. Our own decoder does that work, so the probe reads 32 bytes and
# discards every frame; the mov demuxer still reads all the samples.
_PROBE_OPTIONS = {"probesize": "32", "analyzeduration": "0"}
_PROBE_STREAM_OPTIONS = {"skip_frame": "all"}
# A segment of which fewer frames than this decode cleanly raises: a wrong key still lets a random
# sample through now and then (one AAC frame in about 190 measured), so "none at all" is too strict.
_UNDECODABLE_FRACTION = 0.1
_SLICE_CHECK_SAMPLES = 8  # samples whose first slice header is checked (player/media/h264.py) ...
_SLICE_CHECK_FAILURES = 3  # ... and how many failures among them blame the key even past a good IDR header


# --------------------------------------------------------------------------- errors
class DecodeError(Exception):
    """Nothing usable came out of a segment (under 10% of its frames), or an init segment is unusable.
    `result` holds the segment's counts, if there was a segment."""

    def __init__(self, message: str, *, rendition: str, segment_number: int | None,
                 result: DecodeResult | None = None) -> None:
        super().__init__(message)
        self.rendition = rendition
        self.segment_number = segment_number
        self.result = result


class FrameRejected(Exception):
    """A decoded frame that cannot be used (an `on_frame` callback refuses it): counted as failed."""


class DemuxError(DecodeError):
    """The container could not be opened or held no samples of the track."""


class CorruptSegmentError(DecodeError):
    """A segment demuxed but (almost) no frame decoded cleanly, and the key is not to blame."""


class DecryptionError(DecodeError):
    """An encrypted segment did not decrypt: no key, the wrong key, or broken encryption data."""


# --------------------------------------------------------------------------- config and results
@dataclass(frozen=True, kw_only=True, slots=True)
class DecoderConfig:
    """Decoder threading and timing. `presentation_time_offset_s` (the MPD's presentationTimeOffset
    / timescale) is subtracted from every pts, so pts are presentation times."""

    thread_type: ThreadType = "AUTO"
    thread_count: int = 0  # 0: FFmpeg picks (cores + 1 for frame threading)
    presentation_time_offset_s: float = 0.0

    def __post_init__(self) -> None:
        if self.thread_type not in ("AUTO", "FRAME", "SLICE", "NONE"):
            raise ValueError(f"thread_type must be AUTO, FRAME, SLICE or NONE, got {self.thread_type!r}")
        if self.thread_count < 0:
            raise ValueError(f"thread_count must be >= 0, got {self.thread_count}")


@dataclass(frozen=True, kw_only=True, slots=True)
class AudioOutputFormat:
    """What audio is resampled to: a packed (interleaved) sample format, a rate and a layout."""

    sample_rate_hz: int = 48_000
    layout: str = "stereo"
    sample_format: str = "s16"

    def __post_init__(self) -> None:
        if self.sample_rate_hz <= 0:
            raise ValueError(f"sample_rate_hz must be > 0, got {self.sample_rate_hz}")
        try:
            av.AudioLayout(self.layout)
            sample_format = av.AudioFormat(self.sample_format)
        except (ValueError, av.FFmpegError):
            raise ValueError(f"unknown audio layout or sample format: {self.layout!r}, {self.sample_format!r}") from None
        if not sample_format.is_packed or self.sample_format not in _NUMPY_SAMPLE_TYPES:
            raise ValueError(f"sample_format must be packed (interleaved), e.g. 's16', got {self.sample_format!r}")

    @property
    def channels(self) -> int:
        return len(av.AudioLayout(self.layout).channels)

    @property
    def bytes_per_sample(self) -> int:
        return av.AudioFormat(self.sample_format).bytes

    @property
    def numpy_dtype(self) -> np.dtype:
        return np.dtype(_NUMPY_SAMPLE_TYPES[self.sample_format])


@dataclass(frozen=True, kw_only=True, slots=True)
class TrackInfo:
    """What the init segment says about the track."""

    codec: str
    kind: Literal["video", "audio"]
    encrypted: bool
    time_base: Fraction
    width: int = 0
    height: int = 0
    sample_rate_hz: int = 0
    channels: int = 0


@dataclass(frozen=True, slots=True)
class DecodedFrame:
    """A decoded video frame and its presentation time (s). `frame.time_base` is set too."""

    pts_s: float
    frame: av.VideoFrame


@dataclass(frozen=True, kw_only=True, slots=True)
class DecodeResult:
    """Counts for one segment. `frames_failed` = `frames_expected` - `frames_decoded`: decode errors,
    frames flagged corrupt and samples lost to truncation all land there. With mode "none" nothing
    is decoded: `frames_expected` is the samples declared, `frames_failed` those missing or truncated."""

    rendition: str
    segment_number: int | None
    mode: DecodeMode
    packets: int  # samples demuxed
    frames_expected: int  # frames this mode should produce (from the fragments' trun boxes)
    frames_decoded: int  # decoded and not flagged corrupt
    frames_failed: int
    frames_corrupt: int  # output by the decoder but flagged corrupt (counted in frames_failed)
    decode_errors: int  # errors raised by the demuxer or the decoder
    pts_first_s: float | None  # of the first and last clean frame (of packets with mode "none")
    pts_last_s: float | None
    decode_s: float  # wall time of the call, container opening included
    first_frame_s: float | None  # wall time from the call to the first frame out
    first_error: str = ""  # the first FFmpeg error message, for logs
    frames: tuple[DecodedFrame, ...] = ()  # only with keep_frames=True

    @property
    def ok(self) -> bool:
        return self.frames_failed == 0 and self.decode_errors == 0


@dataclass(frozen=True, kw_only=True, slots=True)
class AudioDecodeResult(DecodeResult):
    """Audio counts plus the resampled PCM (interleaved, in `output`'s format; only with keep_pcm=True)."""

    output: AudioOutputFormat
    samples_decoded: int = 0  # per channel, at the source rate
    samples_out: int = 0  # per channel, at the output rate
    pcm: bytes = b""

    def pcm_array(self) -> np.ndarray:
        """The PCM as a (samples, channels) array (a read-only view of `pcm`)."""
        samples = np.frombuffer(self.pcm, dtype=self.output.numpy_dtype)
        return samples.reshape(-1, self.output.channels)


# --------------------------------------------------------------------------- decoders
class _TrackDecoder:
    """What video and audio share: the init segment, the long-lived codec context, the demux loop."""

    kind: Literal["video", "audio"]
    drain_each_segment: bool  # video: B-frame reordering holds frames back until drained

    def __init__(self, init: bytes, *, key_hex: str | None, name: str, config: DecoderConfig) -> None:
        if key_hex is not None and not _KEY_RE.fullmatch(key_hex):
            raise ValueError(f"{name}: key_hex must be 32 hex digits (16 bytes)")  # never echo the key
        self.name = name
        self.config = config
        self._init = bytes(init)
        layout = _InitLayout.parse(self._init)
        if layout.encrypted and key_hex is None:
            raise DecryptionError(
                f"{name}: the init segment is CENC-encrypted but no key was given",
                rendition=name, segment_number=None,
            )
        self._key_hex = key_hex if layout.encrypted else None  # FFmpeg would ignore it on a clear track
        try:
            with av.open(io.BytesIO(self._init), "r", format="mp4") as container:
                streams = [s for s in container.streams if s.type == self.kind]
                if not streams or streams[0].codec_context is None:
                    raise DemuxError(f"{name}: the init segment has no decodable {self.kind} track",
                                     rendition=name, segment_number=None)
                stream = streams[0]
                self._stream_index = stream.index
                self._stream_count = len(container.streams)
                self._track_id = stream.id
                self._time_base = Fraction(stream.time_base) if stream.time_base else Fraction(1, 90_000)
                # The context built from the init's codec parameters outlives the container. Any:
                # PyAV's stubs type it as the base CodecContext, without decode() or the media fields.
                self._codec: Any = stream.codec_context
        except av.FFmpegError as error:
            raise DemuxError(f"{name}: the init segment does not parse ({_describe(error)})",
                             rendition=name, segment_number=None) from None
        self._codec.thread_type = config.thread_type
        self._codec.thread_count = config.thread_count
        self.info = self._track_info(layout.encrypted)
        self._slice_check = SliceHeaderCheck.from_avcc(self._codec.extradata) if self._codec.name == "h264" else None

    def _track_info(self, encrypted: bool) -> TrackInfo:
        raise NotImplementedError

    @property
    def encrypted(self) -> bool:
        return self.info.encrypted

    def reset(self) -> None:
        """Forgets decoder state (after a seek or a gap): the next segment must start with a keyframe."""
        self._codec.flush_buffers()

    # -- the shared loop
    def _open(self, segment: bytes) -> av.container.InputContainer:
        options = dict(_PROBE_OPTIONS)
        if self._key_hex is not None:
            options["decryption_key"] = self._key_hex
        return av.open(  # type: ignore[call-overload]  # the stub says list[str]: it is one dict per stream
            io.BytesIO(self._init + segment), "r", format="mp4", container_options=options,
            stream_options=[dict(_PROBE_STREAM_OPTIONS)] * self._stream_count,
        )

    def _run(self, segment: bytes, mode: DecodeMode, segment_number: int | None,
             on_frame: Callable[[av.AudioFrame | av.VideoFrame, float], None], *, drain: bool | None = None) -> _Tally:
        if mode not in DECODE_MODES:
            raise ValueError(f"mode must be one of {', '.join(DECODE_MODES)}, got {mode!r}")
        tally = _Tally(started=time.perf_counter())
        where = _where(self.name, segment_number)
        declared = _InitLayout.trun_samples(segment, self._track_id)
        try:
            container = self._open(segment)
        except av.FFmpegError as error:
            tally.error(error)
            tally.frames_expected = min(declared, 1) if mode == "keyframes" else declared
            raise DemuxError(f"{where}: the segment does not demux ({_describe(error)})", rendition=self.name,
                             segment_number=segment_number, result=self._result(tally, mode, segment_number)) from None
        sent = 0
        payloads: list[bytes] = []  # the first samples, for the slice header check
        packet_pts: list[int] = []
        if self.kind == "video":
            self._codec.skip_frame = "NONKEY" if mode == "keyframes" else "DEFAULT"
        try:
            stream = container.streams[self._stream_index]
            for packet in container.demux(stream):
                if packet.size == 0:
                    continue  # PyAV's end-of-stream marker; we drain ourselves
                tally.packets += 1
                tally.packets_corrupt += packet.is_corrupt
                if tally.packets == 1:
                    tally.first_is_key = packet.is_keyframe
                if self._slice_check is not None and len(payloads) < _SLICE_CHECK_SAMPLES:
                    payloads.append(bytes(packet))
                if mode == "none":
                    if packet.pts is not None:
                        packet_pts.append(packet.pts)
                    continue
                if mode == "keyframes" and not packet.is_keyframe:
                    continue
                sent += 1
                self._decode_into(packet, tally, on_frame)
        except av.FFmpegError as error:  # a demux error ends the segment; what came before counts
            tally.error(error)
        finally:
            container.close()
        if mode != "none" and (self.drain_each_segment if drain is None else drain):
            self._decode_into(None, tally, on_frame)
            self._codec.flush_buffers()
        if mode == "keyframes":
            tally.frames_expected = max(sent, min(declared, 1))
        else:  # every declared sample: decoded ("all"), or demuxed intact ("none")
            tally.frames_expected = max(declared, tally.packets)
        if packet_pts:
            tally.pts_first, tally.pts_last = self._seconds(min(packet_pts)), self._seconds(max(packet_pts))
        self._check(tally, mode, segment_number, payloads)
        return tally

    def _decode_into(self, packet: av.Packet | None, tally: _Tally,
                     on_frame: Callable[[av.AudioFrame | av.VideoFrame, float], None]) -> None:
        try:
            frames = self._codec.decode(packet)
        except av.FFmpegError as error:
            tally.error(error)
            return
        for frame in frames:
            if tally.first_frame_at is None:
                tally.first_frame_at = time.perf_counter()
            if frame.is_corrupt or frame.pts is None:
                tally.frames_corrupt += 1
                continue
            if frame.time_base is None:  # frames drained with a null packet carry none
                frame.time_base = self._time_base
            pts_s = self._seconds(frame.pts)
            try:
                on_frame(frame, pts_s)
            except FrameRejected as rejected:  # e.g. audio the resampler cannot take: a failed frame
                tally.frames_rejected += 1
                tally.note(str(rejected))
                continue
            tally.frames_decoded += 1
            if tally.pts_first is None or pts_s < tally.pts_first:
                tally.pts_first = pts_s
            if tally.pts_last is None or pts_s > tally.pts_last:
                tally.pts_last = pts_s

    def _seconds(self, ticks: int) -> float:
        """Presentation time of a timestamp, to the microsecond (hides float noise like 3.9999999)."""
        return round(float(ticks * self._time_base) - self.config.presentation_time_offset_s, 6)

    def _check(self, tally: _Tally, mode: DecodeMode, segment_number: int | None, payloads: list[bytes]) -> None:
        """Raises when nothing usable came out of the segment; says whether the key looks wrong."""
        where = _where(self.name, segment_number)

        def fail(error_type: type[DecodeError], problem: str) -> DecodeError:
            return error_type(f"{where}: {problem}", rendition=self.name, segment_number=segment_number,
                              result=self._result(tally, mode, segment_number))

        if tally.packets == 0:
            raise fail(DemuxError, f"the segment holds no {self.kind} samples "
                                   f"({tally.first_error or 'no samples of the track'})")
        # For H.264 the slice headers tell a wrong key from damaged data (the IDR's, or three bad
        # ones among the first samples); other codecs (AAC) have no such check, and an encrypted
        # segment that does not decode blames the key.
        header_bad = self._slice_check is not None and (
            not self._slice_check.plausible(payloads[0] if payloads else b"")
            or self._slice_check.implausible(payloads) >= _SLICE_CHECK_FAILURES)
        key_blamed = self.encrypted and (header_bad or self._slice_check is None)
        if mode == "none":
            if not tally.first_is_key:
                raise fail(CorruptSegmentError, "the segment does not start with a keyframe")
            if header_bad:
                raise fail(DecryptionError if self.encrypted else CorruptSegmentError,
                           ("decryption failed or wrong key" if self.encrypted else "the slice headers are invalid")
                           + " (demux only; slice header check)")
            return
        if tally.frames_expected > 0 and tally.frames_decoded < _UNDECODABLE_FRACTION * tally.frames_expected:
            detail = f"{tally.frames_decoded} of {tally.frames_expected} frames decoded"
            if tally.first_error:
                detail += f"; first error: {tally.first_error}"
            if key_blamed:
                raise fail(DecryptionError, f"decryption failed or wrong key ({detail})")
            if self.encrypted:  # packagers that keep slice headers clear (Shaka Packager) leave no proof either way
                detail += "; the track is encrypted: the data is damaged or the key is wrong"
            raise fail(CorruptSegmentError, f"the segment does not decode ({detail})")

    def _result(self, tally: _Tally, mode: DecodeMode, segment_number: int | None) -> DecodeResult:
        return DecodeResult(**self._result_fields(tally, mode, segment_number))

    def _result_fields(self, tally: _Tally, mode: DecodeMode, segment_number: int | None) -> dict[str, Any]:
        good = tally.frames_decoded if mode != "none" else tally.packets - tally.packets_corrupt
        return dict(
            rendition=self.name, segment_number=segment_number, mode=mode, packets=tally.packets,
            frames_expected=tally.frames_expected, frames_decoded=tally.frames_decoded,
            frames_failed=max(0, tally.frames_expected - good),
            frames_corrupt=tally.frames_corrupt, decode_errors=tally.decode_errors,
            pts_first_s=tally.pts_first, pts_last_s=tally.pts_last,
            decode_s=time.perf_counter() - tally.started,
            first_frame_s=None if tally.first_frame_at is None else tally.first_frame_at - tally.started,
            first_error=tally.first_error,
        )


class SegmentDecoder(_TrackDecoder):
    """The video decoder of one rendition, built from its init segment (and its CENC key, as hex).

    Each `decode` drains the decoder at the end of the segment (GOPs are closed and segment-aligned,
    so nothing is lost) and keeps it open for the next one: no decoder re-initialisation per segment.
    """

    kind = "video"
    drain_each_segment = True

    def __init__(self, init: bytes, *, key_hex: str | None = None, name: str = "video",
                 config: DecoderConfig = DecoderConfig()) -> None:
        super().__init__(init, key_hex=key_hex, name=name, config=config)

    def _track_info(self, encrypted: bool) -> TrackInfo:
        return TrackInfo(codec=self._codec.name, kind="video", encrypted=encrypted, time_base=self._time_base,
                         width=self._codec.width, height=self._codec.height)

    def decode(self, segment: bytes, *, mode: DecodeMode = "all", keep_frames: bool = False,
               on_frame: Callable[[DecodedFrame], None] | None = None,
               segment_number: int | None = None, drain: bool = True) -> DecodeResult:
        """Decodes one media segment. `on_frame` gets every clean frame as it comes out (e.g. to
        feed a bounded queue); `keep_frames` also returns them all. Raises `DecodeError` when
        nothing decodes; other problems are counted in the result. `drain=False`: `segment` is a
        chunk of a segment that goes on in the next call, so the frames held back for reordering
        stay in the decoder (they come out with the next chunk; the segment's last one drains)."""
        kept: list[DecodedFrame] = []

        def take(frame: av.AudioFrame | av.VideoFrame, pts_s: float) -> None:
            if keep_frames or on_frame is not None:
                decoded = DecodedFrame(pts_s, frame)  # type: ignore[arg-type]
                if keep_frames:
                    kept.append(decoded)
                if on_frame is not None:
                    on_frame(decoded)

        tally = self._run(segment, mode, segment_number, take, drain=drain)
        return DecodeResult(**self._result_fields(tally, mode, segment_number), frames=tuple(kept))


class AudioDecoder(_TrackDecoder):
    """The audio decoder of one rendition plus a resampler to a fixed output format.

    Decoder and resampler state carry over from segment to segment (AAC overlaps frames), so
    segments decoded in order give gapless PCM; call `reset()` after a seek. Mode "keyframes"
    decodes everything, as every AAC frame is a sync sample.
    """

    kind = "audio"
    drain_each_segment = False

    def __init__(self, init: bytes, *, key_hex: str | None = None, name: str = "audio",
                 config: DecoderConfig = DecoderConfig(), output: AudioOutputFormat = AudioOutputFormat()) -> None:
        super().__init__(init, key_hex=key_hex, name=name, config=config)
        self.output = output
        self._resampler = self._new_resampler()

    def _new_resampler(self) -> AudioResampler:
        return AudioResampler(format=self.output.sample_format, layout=self.output.layout,
                              rate=self.output.sample_rate_hz)

    def _track_info(self, encrypted: bool) -> TrackInfo:
        return TrackInfo(codec=self._codec.name, kind="audio", encrypted=encrypted, time_base=self._time_base,
                         sample_rate_hz=self._codec.sample_rate, channels=self._codec.channels)

    def reset(self) -> None:
        super().reset()
        self._resampler = self._new_resampler()

    def resample(self, frame: av.AudioFrame) -> list[av.AudioFrame]:
        """The frame in the output format. A frame whose sample format, layout or rate differs from
        the ones before it (a stream that changes format mid-way, or garbage from a wrong key) gets
        a new resampler; one that no resampler takes raises `FrameRejected`."""
        try:
            return self._resampler.resample(frame)
        except (ValueError, av.FFmpegError):
            pass  # "Frame does not match AudioResampler setup": the input format changed
        self._resampler = self._new_resampler()
        try:
            return self._resampler.resample(frame)
        except (ValueError, av.FFmpegError) as error:
            self._resampler = self._new_resampler()
            raise FrameRejected(f"audio frame ({frame.format.name}, {frame.layout.name}, {frame.sample_rate} Hz) "
                                f"cannot be resampled: {_describe(error) if isinstance(error, av.FFmpegError) else error}"
                                ) from None

    def decode(self, segment: bytes, *, mode: DecodeMode = "all", keep_pcm: bool = False,
               segment_number: int | None = None) -> AudioDecodeResult:
        """Decodes and resamples one media segment; `keep_pcm` returns the interleaved PCM bytes."""
        chunks: list[memoryview] = []
        counts = {"in": 0, "out": 0}
        frame_bytes = self.output.channels * self.output.bytes_per_sample

        def take(frame: av.AudioFrame | av.VideoFrame, pts_s: float) -> None:
            for out in self.resample(frame):  # type: ignore[arg-type]
                counts["out"] += out.samples
                if keep_pcm:
                    chunks.append(memoryview(out.planes[0])[: out.samples * frame_bytes])
            counts["in"] += frame.samples  # type: ignore[union-attr]

        tally = self._run(segment, mode, segment_number, take)
        return AudioDecodeResult(
            **self._result_fields(tally, mode, segment_number), output=self.output,
            samples_decoded=counts["in"], samples_out=counts["out"], pcm=b"".join(chunks),
        )


# --------------------------------------------------------------------------- video output
class FrameConverter:
    """Decoded frames to packed RGB(A) at a fixed size (the window's texture), with one reused
    `VideoReformatter` (its scaler context is kept between frames). Rows run top to bottom.
    A conversion that fails raises `DecodeError` (with an empty `rendition`)."""

    def __init__(self, width: int, height: int, *, format: RgbFormat = "rgba",
                 interpolation: str = "BILINEAR", threads: int | None = None) -> None:
        if format not in _BYTES_PER_PIXEL:
            raise ValueError(f"format must be one of {', '.join(_BYTES_PER_PIXEL)}, got {format!r}")
        try:
            self._interpolation = Interpolation[interpolation.upper()]
        except KeyError:
            raise ValueError(f"unknown interpolation {interpolation!r}") from None
        self.format = format
        self._threads = threads
        self._reformatter = VideoReformatter()
        self.resize(width, height)

    def resize(self, width: int, height: int) -> None:
        """New output size (the window was resized); the reformatter is kept."""
        if width <= 0 or height <= 0:
            raise ValueError(f"width and height must be > 0, got {width}x{height}")
        self.width, self.height = width, height

    def reformat(self, frame: av.VideoFrame) -> av.VideoFrame:
        try:
            return self._reformatter.reformat(frame, self.width, self.height, self.format,
                                              interpolation=self._interpolation, threads=self._threads)
        except av.FFmpegError as error:
            raise DecodeError(f"cannot convert a {frame.width}x{frame.height} {frame.format.name} frame to "
                              f"{self.width}x{self.height} {self.format} ({_describe(error)})",
                              rendition="", segment_number=None) from None

    def to_ndarray(self, frame: av.VideoFrame) -> np.ndarray:
        """A C-contiguous (height, width, channels) uint8 array."""
        plane = self.reformat(frame).planes[0]
        row_bytes = self.width * _BYTES_PER_PIXEL[self.format]
        rows = np.frombuffer(memoryview(plane), dtype=np.uint8, count=self.height * plane.line_size)
        rows = rows.reshape(self.height, plane.line_size)
        if plane.line_size != row_bytes:
            rows = np.ascontiguousarray(rows[:, :row_bytes])  # drop the scaler's row padding
        return rows.reshape(self.height, self.width, _BYTES_PER_PIXEL[self.format])

    def to_bytes(self, frame: av.VideoFrame) -> bytes:
        """Packed pixel bytes, ready for a texture upload (pyglet: pitch = -width x channels flips)."""
        return self.to_ndarray(frame).tobytes()


def declared_frames(segment: bytes) -> int:
    """Samples the fragments of a media segment declare (its trun boxes; 0 if they do not parse)."""
    return _InitLayout.trun_samples(segment, None)


# --------------------------------------------------------------------------- helpers
@dataclass(slots=True)
class _Tally:
    started: float
    packets: int = 0
    packets_corrupt: int = 0
    frames_expected: int = 0
    frames_decoded: int = 0
    frames_corrupt: int = 0
    frames_rejected: int = 0  # decoded, but refused by the frame callback (counted in frames_failed)
    decode_errors: int = 0
    first_error: str = ""
    first_is_key: bool = False
    first_frame_at: float | None = None
    pts_first: float | None = None  # presentation times (s)
    pts_last: float | None = None

    def error(self, error: av.FFmpegError) -> None:
        self.decode_errors += 1
        self.note(_describe(error))

    def note(self, message: str) -> None:
        if not self.first_error:
            self.first_error = message


def _describe(error: av.FFmpegError) -> str:
    """FFmpeg's message without the file name (always '<none>' for memory input)."""
    return getattr(error, "strerror", None) or type(error).__name__


def _where(name: str, segment_number: int | None) -> str:
    return f"segment {segment_number} of {name}" if segment_number is not None else f"a segment of {name}"


@dataclass(frozen=True, slots=True)
class _InitLayout:
    """What a byte-level look at ISO-BMFF boxes tells that PyAV does not: encryption, trun counts."""

    encrypted: bool

    @staticmethod
    def parse(init: bytes) -> _InitLayout:
        entries: set[str] = set()
        for stsd_start, stsd_end in _find(init, ("moov", "trak", "mdia", "minf", "stbl", "stsd")):
            # stsd is a full box (4 bytes) with an entry count (4 bytes), then the sample entries.
            entries.update(kind for kind, _, _ in _boxes(init, stsd_start + 8, stsd_end))
        return _InitLayout(encrypted=bool(entries & {"encv", "enca"}))

    @staticmethod
    def trun_samples(segment: bytes, track_id: int | None) -> int:
        """Samples the segment's fragments declare for the track (0 if the boxes do not parse)."""
        total = 0
        for moof_start, moof_end in _find(segment, ("moof",)):
            for kind, start, end in _boxes(segment, moof_start, moof_end):
                if kind != "traf":
                    continue
                track_ok = True
                for inner, s, e in _boxes(segment, start, end):
                    if inner == "tfhd" and e - s >= 8:
                        track_ok = track_id is None or int.from_bytes(segment[s + 4:s + 8], "big") == track_id
                    elif inner == "trun" and e - s >= 8 and track_ok:
                        total += int.from_bytes(segment[s + 4:s + 8], "big")
        return total


def _boxes(data: bytes, start: int, end: int) -> Iterator[tuple[str, int, int]]:
    """(type, payload start, end) of each box in data[start:end]; stops at the first bad header."""
    try:
        for box in iter_boxes(data, start, end):
            yield box.type, box.payload_offset, box.end
    except Mp4FormatError:
        return


def _find(data: bytes, path: tuple[str, ...]) -> Iterator[tuple[int, int]]:
    """Payload spans of every box at `path` (e.g. moov/trak/.../stsd)."""
    spans = [(0, len(data))]
    for kind in path:
        spans = [(s, e) for start, end in spans for k, s, e in _boxes(data, start, end) if k == kind]
    yield from spans
