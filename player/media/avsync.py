"""The desktop player's A/V pipeline below the window: decoded frames and PCM, flushed on seeks.

`DesktopDecoder` is the headless `DecodePipeline` with two outputs: video frames, converted to RGBA
at the texture size by one reused reformatter, go to a bounded `FrameQueue` (a full queue blocks the
decode worker, never the window); audio decodes on a second worker (so audio never waits behind a
blocked video worker) into a `PcmBuffer` that the window's audio source reads. A seek starts a new
epoch: queued frames and PCM of older epochs are dropped wherever they are. `SyncStats` keeps the
presentation tally (A/V offsets, dropped frames). No pyglet here: it is all testable without a display.
"""

from __future__ import annotations

import asyncio
import threading
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from player.client.bootstrap import PlaybackSource
from player.client.decoding import DecodeSummary, ErrorLog, InitUrls, SegmentFailure
from player.client.fetch import Fetcher
from player.media.decoder import (
    AudioDecoder,
    AudioOutputFormat,
    DecodedFrame,
    DecodeResult,
    FrameConverter,
    SegmentDecoder,
)
from player.media.distribution import Distribution
from player.media.pipeline import DecodePipeline, pending

# Issue 6 asks for +-40 ms; ITU-R BT.1359 puts the detectability thresholds at about +45 ms (audio
# early) and -125 ms (audio late), so +-40 ms is inside both.
AV_SYNC_TOLERANCE_MS = 40.0
# PCM written more than this off the contiguous position is placed at its presentation time (PcmBuffer).
REANCHOR_S = 0.1


@dataclass(frozen=True, slots=True)
class VideoFrame:
    """A decoded frame ready for upload: RGBA rows top to bottom at the texture size."""

    epoch: int
    pts_s: float
    rendition: str
    pixels: np.ndarray  # (height, width, 4) uint8


class FrameQueue:
    """Decoded frames waiting for their presentation time, oldest first.

    The decode worker `put`s and blocks while the queue holds `capacity_frames` (backpressure lands
    on decoding, never on the window); the window takes the frames that are due without blocking.
    `flush` starts a new epoch and drops everything older; `close` releases a blocked producer for good.
    """

    def __init__(self, capacity_frames: int) -> None:
        if capacity_frames < 1:
            raise ValueError(f"capacity_frames must be >= 1, got {capacity_frames}")
        self.capacity_frames = capacity_frames
        self._frames: deque[VideoFrame] = deque()
        self._cond = threading.Condition()
        self._epoch = 0
        self._closed = False

    @property
    def epoch(self) -> int:
        return self._epoch

    def put(self, frame: VideoFrame) -> bool:
        """Add a frame, waiting for room; False if it was dropped (older epoch, or closed)."""
        with self._cond:
            while (len(self._frames) >= self.capacity_frames and frame.epoch == self._epoch
                   and not self._closed):
                self._cond.wait()
            if frame.epoch != self._epoch or self._closed:
                return False
            self._frames.append(frame)
            return True

    def take_due(self, clock_s: float) -> tuple[VideoFrame | None, int]:
        """The newest frame whose pts <= `clock_s` and how many older due frames it supersedes
        (dropped: they were never shown). Never blocks."""
        with self._cond:
            due: VideoFrame | None = None
            dropped = 0
            while self._frames and self._frames[0].pts_s <= clock_s:
                if due is not None:
                    dropped += 1
                due = self._frames.popleft()
            if due is not None:
                self._cond.notify_all()
            return due, dropped

    def first_pts_s(self) -> float | None:
        with self._cond:
            return self._frames[0].pts_s if self._frames else None

    def __len__(self) -> int:
        with self._cond:
            return len(self._frames)

    def flush(self) -> int:
        """Drop every queued frame and start a new epoch (a seek); returns the new epoch."""
        with self._cond:
            self._epoch += 1
            self._frames.clear()
            self._cond.notify_all()
            return self._epoch

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._frames.clear()
            self._cond.notify_all()


class PcmBuffer:
    """Interleaved PCM placed on the media timeline, read sequentially by the audio output.

    Writes of one epoch are contiguous (the audio decoder is gapless across segments in order), so
    the first write of an epoch anchors it at its presentation time and later ones append, unless a
    write's presentation time is more than `REANCHOR_S` off where it would append (a segment that
    did not decode, a live session's seek to the live edge): then it is placed at its time. Reads
    return exactly the bytes asked for, with silence where nothing was decoded yet (counted), and
    may jump back by `seek` (PCM up to `keep_behind_s` behind the read position is kept for that).
    """

    def __init__(self, output: AudioOutputFormat = AudioOutputFormat(), *, keep_behind_s: float = 2.0) -> None:
        self.output = output
        self.bytes_per_frame = output.channels * output.bytes_per_sample
        self._keep_behind_frames = int(keep_behind_s * output.sample_rate_hz)
        self._lock = threading.Lock()
        self._chunks: deque[tuple[int, bytes]] = deque()  # (first sample frame, data), contiguous
        self._write_frame: int | None = None  # where the next write goes (None: next write anchors)
        self._read_frame = 0
        self._epoch = 0
        self.silence_frames = 0  # sample frames read where no PCM was there (late decode, stall)

    @property
    def sample_rate_hz(self) -> int:
        return self.output.sample_rate_hz

    def _frame_at(self, time_s: float) -> int:
        return round(time_s * self.output.sample_rate_hz)

    def reset(self, epoch: int, position_s: float) -> None:
        """Forget all PCM; reads continue at `position_s`; only writes of `epoch` are taken from now on."""
        with self._lock:
            self._epoch = epoch
            self._chunks.clear()
            self._write_frame = None
            self._read_frame = self._frame_at(position_s)

    def write(self, epoch: int, pts_s: float, pcm: bytes) -> bool:
        """Append decoded PCM (its first sample at `pts_s` when it starts an epoch); False if stale."""
        usable = len(pcm) - len(pcm) % self.bytes_per_frame
        with self._lock:
            if epoch != self._epoch:
                return False
            if not usable:
                return True
            start = self._frame_at(pts_s)
            if self._write_frame is not None and abs(start - self._write_frame) <= REANCHOR_S * self.sample_rate_hz:
                start = self._write_frame  # gapless: AAC frames need not start on the segment's boundary
            self._chunks.append((start, pcm[:usable]))
            self._write_frame = start + usable // self.bytes_per_frame
            self._trim()
            return True

    def _trim(self) -> None:
        keep_from = self._read_frame - self._keep_behind_frames
        while self._chunks:
            start, data = self._chunks[0]
            if start + len(data) // self.bytes_per_frame > keep_from:
                break
            self._chunks.popleft()

    def seek(self, position_s: float) -> None:
        with self._lock:
            self._read_frame = self._frame_at(position_s)

    def _copy(self, begin: int, frames: int) -> tuple[bytearray, int]:
        """Sample frames [begin, begin + frames) as bytes (zeros where none were written) and how
        many were there. Call with the lock held."""
        out = bytearray(frames * self.bytes_per_frame)
        end = begin + frames
        covered = 0
        for start, data in self._chunks:
            stop = start + len(data) // self.bytes_per_frame
            lo, hi = max(start, begin), min(stop, end)
            if lo >= hi:
                continue
            out[(lo - begin) * self.bytes_per_frame:(hi - begin) * self.bytes_per_frame] = \
                data[(lo - start) * self.bytes_per_frame:(hi - start) * self.bytes_per_frame]
            covered += hi - lo
        return out, min(covered, frames)

    def read(self, size_bytes: int) -> bytes:
        """Exactly `size_bytes` (rounded down to whole sample frames) from the read position on."""
        frames = size_bytes // self.bytes_per_frame
        with self._lock:
            out, covered = self._copy(self._read_frame, frames)
            self.silence_frames += frames - covered
            self._read_frame += frames
            self._trim()
        return bytes(out)

    def frames_at(self, begin: int, frames: int) -> tuple[np.ndarray, int]:
        """Sample frames [begin, begin + frames) (in sample frames of the media timeline, as
        `position_s` x the rate) as a (frames, channels) array, zeros where nothing was written, and
        how many were there; the read position does not move (a time-stretcher reads around it)."""
        with self._lock:
            out, covered = self._copy(begin, frames)
        return np.frombuffer(bytes(out), dtype=self.output.numpy_dtype).reshape(-1, self.output.channels), covered

    def release_before(self, frame: int) -> None:
        """A reader by `frames_at` is past sample frame `frame`: that is the read position now
        (PCM up to `keep_behind_s` before it is kept, older PCM is dropped)."""
        with self._lock:
            self._read_frame = frame
            self._trim()

    def note_silence(self, frames: int) -> None:
        """A reader by `frames_at` played `frames` sample frames of silence where no PCM was."""
        with self._lock:
            self.silence_frames += max(0, frames)

    def available_s(self, position_s: float, *, gap_s: float = 0.1) -> float:
        """Seconds of PCM held contiguously from `position_s` on; a leading gap shorter than `gap_s`
        (audio segments start up to an AAC frame off the video's boundaries) counts as held."""
        with self._lock:
            frame = self._frame_at(position_s)
            if self._chunks and 0 < self._chunks[0][0] - frame <= gap_s * self.sample_rate_hz:
                frame = self._chunks[0][0]
            for start, data in self._chunks:
                stop = start + len(data) // self.bytes_per_frame
                if start <= frame < stop:
                    frame = stop
            end = frame
        return max(0.0, (end - self._frame_at(position_s)) / self.sample_rate_hz)


@dataclass(frozen=True, slots=True)
class Flush:
    """Where the stream restarted: the epoch it began and the media time it landed at (s)."""

    epoch: int
    position_s: float


class DesktopDecoder(DecodePipeline):
    """`DecodePipeline` feeding a window: RGBA frames into `frames`, PCM into `pcm`.

    Video keeps the pipeline's worker; audio gets its own, so PCM is ready ahead of the frames even
    while the video worker waits for room in the frame queue. Segments of an epoch that a seek made
    stale are skipped unopened; decoders are reset at the start of each new epoch. `on_started` is
    called once the init segments are in (the player's clock starts right after); `on_settled` once
    no failure can come any more (`finish` has waited for every segment, or `close` joined the
    workers), on the thread that called it: the window logs the last audio failures there.
    """

    def __init__(self, source: PlaybackSource, frames: FrameQueue, pcm: PcmBuffer, *,
                 texture_size_px: tuple[int, int], on_started: Callable[[], None] | None = None,
                 on_settled: Callable[[], None] | None = None) -> None:
        super().__init__(source, mode="all")
        self.frames = frames
        self.pcm = pcm
        self.on_started = on_started
        self.on_settled = on_settled
        self._converter = FrameConverter(*texture_size_px, format="rgba")
        self._audio_executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="abrkit-audio")
        self._audio_futures: list[Future[None]] = []
        self._decoding_epoch = {"video": 0, "audio": 0}  # per worker: the epoch being decoded
        self._closed = False
        self.last_flush = Flush(0, 0.0)
        # The audio segments that failed, apart (bounded as `errors`, where video failures could crowd them out)
        self.audio_log = ErrorLog()

    # -- called on the player's event loop -------------------------------------------------------

    async def start(self, init_urls: InitUrls, fetcher: Fetcher, *, continuous: bool) -> None:
        await super().start(init_urls, fetcher, continuous=continuous)
        if self.on_started is not None:
            self.on_started()

    def submit(self, kind: str, rep_id: str, index: int, data: bytes, *, ends_segment: bool = True) -> None:
        epoch = self.frames.epoch
        self._futures, self._audio_futures = pending(self._futures), pending(self._audio_futures)
        job = (self._in_epoch, epoch, kind, rep_id, index, data, ends_segment)
        if kind == "audio":
            self._audio_futures.append(self._audio_executor.submit(*job))
        else:
            self._futures.append(self._executor.submit(*job))

    @property
    def busy(self) -> bool:
        """Video segments are still queued or being decoded (more frames may come)."""
        return not self._closed and any(not f.done() for f in self._futures)

    def flush(self, position_s: float) -> Flush:
        """A seek landed at `position_s`: drop queued frames and PCM, start a new epoch there."""
        epoch = self.frames.flush()
        self.pcm.reset(epoch, position_s)
        self.last_flush = Flush(epoch, position_s)
        return self.last_flush

    def audio_errors(self) -> tuple[str, ...]:
        """Why audio segments could not be used, oldest first (the first and last kept: `audio_log`)."""
        return self.audio_log.messages()

    def stop_presenting(self) -> None:
        """Stop presenting for good (the user quit): release a blocked worker; queued segments are skipped."""
        self._closed = True
        self.frames.close()

    def close(self) -> None:
        """The session is over: skip what is still queued and join both workers. Frames already
        queued stay for the window, unless a video worker is still busy (a live session ends without
        `finish`): it may be waiting for room in the frame queue, so the queue is closed to release it."""
        self._closed = True
        if any(not f.done() for f in self._futures):
            self.frames.close()
        self._audio_executor.shutdown(wait=True, cancel_futures=True)
        super().close()
        self._settled()

    async def finish(self) -> DecodeSummary:
        await asyncio.gather(*(asyncio.wrap_future(f) for f in self._audio_futures))
        self._audio_executor.shutdown(wait=True)
        summary = await super().finish()
        self._settled()
        return summary

    def _settled(self) -> None:
        if self.on_settled is not None:
            self.on_settled()

    # -- on the workers ---------------------------------------------------------------------------

    def _failed(self, message: str, failure: SegmentFailure) -> None:
        super()._failed(message, failure)
        if failure.media == "audio":
            self.audio_log.add(message, failure)

    def _in_epoch(self, epoch: int, kind: str, rep_id: str, index: int, data: bytes, ends_segment: bool) -> None:
        if self._closed or epoch != self.frames.epoch:
            return  # a seek made it stale: not worth decoding
        worker = "audio" if kind == "audio" else "video"
        if self._decoding_epoch[worker] != epoch:
            self._decoding_epoch[worker] = epoch
            for decoder in list(self._decoders.values()):
                if isinstance(decoder, AudioDecoder) == (worker == "audio"):
                    decoder.reset()
            if worker == "video":
                self._held.clear()  # the frames chunks held back went with the reset (a seek, not a failure)
        self._decode(kind, rep_id, index, data, ends_segment)

    def _decode_segment(self, decoder: SegmentDecoder | AudioDecoder, kind: str, rep_id: str, index: int,
                        data: bytes, mode: str, drain: bool) -> DecodeResult:
        epoch = self._decoding_epoch["audio" if kind == "audio" else "video"]
        if isinstance(decoder, AudioDecoder):
            result = decoder.decode(data, mode="all", keep_pcm=True, segment_number=index + 1)
            if result.pts_first_s is not None:
                self.pcm.write(epoch, result.pts_first_s, result.pcm)
            return result

        def on_frame(decoded: DecodedFrame) -> None:
            if epoch != self.frames.epoch or self._closed:
                return  # stale: skip the conversion too
            pixels = self._converter.to_ndarray(decoded.frame)
            self.frames.put(VideoFrame(epoch, decoded.pts_s, rep_id, pixels))

        return decoder.decode(data, mode=mode, on_frame=on_frame, segment_number=index + 1,  # type: ignore[arg-type]
                              drain=drain)


@dataclass(frozen=True, kw_only=True, slots=True)
class OffsetSummary:
    """The A/V offset distribution: presented frame pts minus the audio clock at the flip (ms).
    Percentiles and max are of the absolute offset; `mean_ms` keeps the sign (negative: video late)."""

    count: int
    mean_ms: float
    p50_ms: float
    p95_ms: float
    max_ms: float
    within_tolerance: float  # share of frames within +-AV_SYNC_TOLERANCE_MS

    def as_dict(self) -> dict[str, float | int]:
        return {"count": self.count, "mean_ms": round(self.mean_ms, 2), "p50_ms": round(self.p50_ms, 2),
                "p95_ms": round(self.p95_ms, 2), "max_ms": round(self.max_ms, 2),
                "within_40ms": round(self.within_tolerance, 4)}


@dataclass(slots=True)
class SyncStats:
    """What the window presented: frames shown and dropped, and the A/V offsets of shown frames,
    summarised in bounded memory (`Distribution`: exact for the first 4,096 frames, then within 0.5 %)."""

    frames_presented: int = 0
    frames_dropped: int = 0  # decoded but superseded before any flip showed them
    offsets: Distribution = field(default_factory=Distribution)  # |pts - clock| (ms)
    signed_total_ms: float = 0.0  # sum of the signed offsets (the mean keeps the sign)
    within_tolerance: int = 0  # offsets within +-AV_SYNC_TOLERANCE_MS

    def presented(self, pts_s: float, clock_s: float | None) -> None:
        """A frame went on screen; its offset counts only while the clock runs (`clock_s` not None)."""
        self.frames_presented += 1
        if clock_s is not None:
            offset_ms = (pts_s - clock_s) * 1000.0
            self.offsets.add(abs(offset_ms))
            self.signed_total_ms += offset_ms
            self.within_tolerance += abs(offset_ms) <= AV_SYNC_TOLERANCE_MS

    def summary(self) -> OffsetSummary:
        offsets = self.offsets
        if not offsets.count:
            return OffsetSummary(count=0, mean_ms=0.0, p50_ms=0.0, p95_ms=0.0, max_ms=0.0, within_tolerance=0.0)
        return OffsetSummary(
            count=offsets.count, mean_ms=self.signed_total_ms / offsets.count, p50_ms=offsets.percentile(50),
            p95_ms=offsets.percentile(95), max_ms=offsets.max, within_tolerance=self.within_tolerance / offsets.count,
        )
