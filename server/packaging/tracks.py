"""Encoding one rendition into fragmented MP4 and splitting it into init + numbered segments.

Video: scale, x264 with a closed GOP of exactly one segment (keyframes forced on segment starts,
scene-cut off), muxed by FFmpeg's mp4 muxer with one fragment per keyframe. Audio: AAC, muxed one
segment at a time so each audio segment ends on the AAC frame nearest the video segment boundary.
Encryption (CENC `cenc`, AES-CTR) is done by the muxer; `pssh` boxes are added to the init here.
"""

from __future__ import annotations

import bisect
import functools
import io
import mmap
import queue
import subprocess
import sys
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np
from av.video.frame import PictureType
from av.video.reformatter import Interpolation, VideoReformatter

from server.formats.boxes import Mp4FormatError
from server.packaging.mp4split import (
    Fragment,
    InitInfo,
    append_to_moov,
    parse_init,
    shift_decode_times,
    split_fragmented_mp4,
)
from server.packaging.planes import ColorTags, copy_frame

FRAGMENT_FLAGS = "frag_keyframe+empty_moov+default_base_moof"
_QUEUE_FRAMES = 6


@dataclass(frozen=True, slots=True)
class TrackKey:
    """A content key and its key ID, 16 bytes each."""

    kid: bytes
    key: bytes

    def __post_init__(self) -> None:
        if len(self.kid) != 16 or len(self.key) != 16:
            raise ValueError("kid and key must be 16 bytes each")

    def muxer_options(self) -> dict[str, str]:
        return {
            "encryption_scheme": "cenc-aes-ctr",
            "encryption_key": self.key.hex(),
            "encryption_kid": self.kid.hex(),
        }


@dataclass(frozen=True, slots=True)
class PackagedTrack:
    """A track written as OUT/<init.mp4, 1.m4s, 2.m4s, ...>, with what its boxes say."""

    directory: Path
    init: InitInfo
    fragments: tuple[Fragment, ...]
    segment_sizes_bytes: tuple[int, ...]

    def shifted(self, ticks: int) -> PackagedTrack:
        """Moves the track `ticks` (its timescale) later on the media timeline: rewrites every
        segment's tfdt in place and returns the track with its fragments' times moved."""
        if ticks == 0:
            return self
        for number in range(1, len(self.fragments) + 1):
            path = self.directory / f"{number}.m4s"
            path.write_bytes(shift_decode_times(path.read_bytes(), ticks))
        fragments = tuple(
            replace(f, base_media_decode_time=f.base_media_decode_time + ticks,
                    earliest_presentation_time=f.earliest_presentation_time + ticks)
            for f in self.fragments
        )
        return replace(self, fragments=fragments)


def _write_segments(
    data: bytes | mmap.mmap, directory: Path, pssh: bytes
) -> tuple[InitInfo, tuple[Fragment, ...], tuple[int, ...]]:
    """Splits a fragmented MP4 into directory/init.mp4 (+pssh in moov) and numbered .m4s files."""
    split = split_fragmented_mp4(data)
    init_bytes = bytes(data[: split.init_end])
    if pssh:
        init_bytes = append_to_moov(init_bytes, pssh)
    (directory / "init.mp4").write_bytes(init_bytes)
    sizes = []
    for number, fragment in enumerate(split.fragments, start=1):
        chunk = data[fragment.offset : fragment.end]
        (directory / f"{number}.m4s").write_bytes(chunk)
        sizes.append(len(chunk))
    return parse_init(init_bytes), split.fragments, tuple(sizes)


@functools.cache
def x264_asm_cap() -> str | None:
    """The x264 `asm` set to encode with on this machine: "avx2" where the CPU has AVX-512, else
    None (x264's own choice).

    x264's AVX-512 code reads memory it never wrote for widths whose chroma is not a multiple of
    64 pixels (192, 320, 448, 480 and 960 wide gave different bytes; 256, 384, 640 and 1280 did not),
    so the same frames encoded twice in one process could give different bytes: what it read is
    whatever the heap held before, which depends on earlier encodes and on thread timing. Found in
    the 108p rung of a 384x216 clip; asm=avx2 (or mbtree=0, or glibc's MALLOC_PERTURB_) made it
    repeatable, padding our input frames did not. The CPU's flags come from /proc/cpuinfo (Linux),
    `sysctl machdep.cpu.leaf7_features` (macOS on Intel) or IsProcessorFeaturePresent (Windows);
    where none answers, x264 chooses.
    """
    return "avx2" if _has_avx512() else None


def _has_avx512() -> bool:
    if sys.platform == "win32":
        return _windows_has_avx512()
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as handle:
            return cpu_flags_have_avx512(line for line in handle if line.startswith("flags"))
    except OSError:
        pass
    try:
        features = subprocess.run(["sysctl", "-n", "machdep.cpu.leaf7_features"], capture_output=True,
                                  text=True, timeout=5, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return False
    return cpu_flags_have_avx512([features])


def cpu_flags_have_avx512(lines: Iterable[str]) -> bool:
    """Whether CPU flag lines (/proc/cpuinfo's `flags`, or macOS's upper-case leaf-7 feature list)
    name any AVX-512 extension."""
    return any(word.lower().startswith("avx512") for line in lines for word in line.split())


def _windows_has_avx512() -> bool:
    pf_avx512f_instructions_available = 41  # winnt.h
    try:
        import ctypes
        return bool(ctypes.windll.kernel32.IsProcessorFeaturePresent(pf_avx512f_instructions_available))  # type: ignore[attr-defined]
    except (AttributeError, OSError):
        return False


@dataclass(frozen=True, kw_only=True, slots=True)
class VideoEncodeSettings:
    """x264 settings of one rendition. GOP = one segment, closed, with no scene-cut keyframes.

    `asm`: the instruction sets x264 may use (its `asm` parameter; None: all it detects). The default
    keeps x264 off the code that does not give the same bytes twice (`x264_asm_cap`).
    """

    width: int
    height: int
    frame_rate: Fraction
    bitrate_bps: int
    gop_frames: int
    preset: str
    threads: int
    maxrate_factor: float = 1.5  # capped VBR: peak rate over the VBV buffer
    bufsize_s: float = 2.0
    asm: str | None = field(default_factory=x264_asm_cap)

    def codec_options(self) -> dict[str, str]:
        gop = self.gop_frames
        asm = f":asm={self.asm}" if self.asm else ""
        return {
            "preset": self.preset,
            "profile": "high",
            "threads": str(self.threads),
            "forced-idr": "1",
            "maxrate": str(int(self.bitrate_bps * self.maxrate_factor)),
            "bufsize": str(int(self.bitrate_bps * self.bufsize_s)),
            "x264-params": f"keyint={gop}:min-keyint={gop}:scenecut=0:open-gop=0{asm}",
        }


class VideoRenditionEncoder:
    """Encodes frames handed over by `put` on its own thread into an fMP4 file at `mux_path`.

    libx264, swscale and the muxer release the GIL, so several renditions encode in parallel.
    """

    def __init__(self, settings: VideoEncodeSettings, mux_path: Path, key: TrackKey | None) -> None:
        self.settings = settings
        self.mux_path = mux_path
        self._key = key
        self._queue: queue.Queue[tuple[av.VideoFrame, int] | None] = queue.Queue(_QUEUE_FRAMES)
        self._error: BaseException | None = None
        self._abort = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"encode-{settings.height}p", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def put(self, frame: av.VideoFrame, index: int, tags: ColorTags) -> None:
        """Queues a source frame (shared: only its pixels are read here) for CFR slot `index`, with
        its colour description taken before any thread saw it; raises a worker error."""
        while True:
            self._raise_if_failed()
            try:
                self._queue.put((frame, index, tags), timeout=0.2)
                return
            except queue.Full:
                continue

    def finish(self) -> None:
        """Flushes the encoder and closes the file; raises what the worker raised."""
        while self._thread.is_alive():
            try:
                self._queue.put(None, timeout=0.2)
                break
            except queue.Full:
                self._raise_if_failed()
        self._thread.join()
        self._raise_if_failed()

    def abort(self) -> None:
        self._abort.set()
        self._thread.join(timeout=30)

    def _raise_if_failed(self) -> None:
        if self._error is not None:
            raise RuntimeError(f"encoding {self.settings.height}p failed: {self._error}") from self._error

    def _run(self) -> None:
        try:
            self._encode()
        except BaseException as exc:  # handed to the producer thread, which raises it
            self._error = exc

    def _encode(self) -> None:
        s = self.settings
        options = {"movflags": FRAGMENT_FLAGS, "use_editlist": "0"}
        if self._key is not None:
            options.update(self._key.muxer_options())
        reformatter = VideoReformatter()
        time_base = Fraction(1, 1) / s.frame_rate
        with av.open(str(self.mux_path), "w", format="mp4", options=options) as out:
            stream = out.add_stream("libx264", rate=s.frame_rate, options=s.codec_options())
            stream.width, stream.height, stream.pix_fmt = s.width, s.height, "yuv420p"
            stream.codec_context.bit_rate = s.bitrate_bps
            stream.codec_context.time_base = time_base
            while not self._abort.is_set():
                try:
                    item = self._queue.get(timeout=0.2)
                except queue.Empty:
                    continue
                if item is None:
                    break
                shared, index, tags = item
                # PyAV's reformat rewrites its source frame's colour tags while it scales (with the
                # GIL released): reformatting the shared frame in several threads at once let one
                # rung read another's temporary tags, and encode different bytes from run to run.
                # Each rung scales its own copy of the pixels, with the tags the producer read.
                source = copy_frame(shared)
                tags.apply(source)
                frame = reformatter.reformat(
                    source, s.width, s.height, "yuv420p", interpolation=Interpolation.AREA
                )
                frame.pts = index
                frame.time_base = time_base
                # Decoded frames keep their source picture type; left as I, x264 would add IDRs
                # mid-segment. Only segment starts are forced (closed GOP, keyint = segment).
                frame.pict_type = PictureType.I if index % s.gop_frames == 0 else PictureType.NONE
                out.mux(stream.encode(frame))
            if self._abort.is_set():
                return
            out.mux(stream.encode(None))

    def write_segments(self, directory: Path, pssh: bytes) -> PackagedTrack:
        """Splits the finished fMP4 into directory/init.mp4 and numbered segments, then deletes it."""
        directory.mkdir(parents=True, exist_ok=True)
        with open(self.mux_path, "rb") as handle, mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as data:
            init, fragments, sizes = _write_segments(data, directory, pssh)
        self.mux_path.unlink()
        for number, fragment in enumerate(fragments, start=1):
            if not fragment.starts_with_sync_sample:
                raise Mp4FormatError(f"{directory.name} segment {number} does not start with a keyframe")
        return PackagedTrack(directory, init, fragments, sizes)


class AudioTrackPackager:
    """Resamples, encodes AAC and writes audio segments cut at the video segment boundaries.

    Samples are placed by their time relative to the first video frame (silence fills a late
    start, early samples are dropped); `finish` pads or cuts the track to the video's length. A
    segment is written once the video is known to continue past it and audio has reached its end.
    """

    FRAME_SAMPLES = 1024  # AAC-LC frame length

    def __init__(
        self,
        *,
        directory: Path,
        sample_rate_hz: int,
        channels: int,
        bitrate_bps: int,
        boundary_samples: Callable[[int], int],
        key: TrackKey | None,
        pssh: bytes,
    ) -> None:
        self.directory = directory
        self.sample_rate_hz = sample_rate_hz
        self._layout = {1: "mono", 2: "stereo"}[channels]
        self._channels = channels
        self._boundary = boundary_samples
        self._key = key
        self._pssh = pssh
        self._resampler = av.AudioResampler(format="fltp", layout=self._layout, rate=sample_rate_hz)
        self._encoder = av.CodecContext.create("aac", "w")
        self._encoder.sample_rate = sample_rate_hz
        self._encoder.layout = self._layout
        self._encoder.format = "fltp"
        self._encoder.bit_rate = bitrate_bps
        self._bitrate_bps = bitrate_bps
        self._encoder.time_base = Fraction(1, sample_rate_hz)
        self._encoder.open()
        self._pending = np.zeros((channels, 0), dtype=np.float32)
        self._placed = False
        self._drop = 0
        self._samples_in = 0  # samples handed to the encoder
        self._priming: int | None = None
        self._packets: list[tuple[int, av.Packet]] = []  # (pts, packet) not yet written, in order
        self._written = 0  # segments written so far
        self._video_done = 0  # segments the video is known to continue past
        self._init: bytes | None = None
        self._fragments: list[Fragment] = []
        self._sizes: list[int] = []
        self._info: InitInfo | None = None
        directory.mkdir(parents=True, exist_ok=True)

    @property
    def priming_samples(self) -> int:
        """Encoder delay: media time of the first presented sample (the MPD presentationTimeOffset)."""
        return self._priming or 0

    def push(self, frame: av.AudioFrame, time_s: float) -> None:
        """Adds decoded audio starting `time_s` seconds after the first video frame."""
        for out in self._resampler.resample(frame):
            self._append(out.to_ndarray(), time_s)

    def video_segments_done(self, count: int) -> None:
        """The video has frames past the end of segments [0, count): those are not the last."""
        self._video_done = max(self._video_done, count)
        self._write_ready()

    def _append(self, samples: np.ndarray, time_s: float) -> None:
        if not self._placed:
            self._placed = True
            lead = round(time_s * self.sample_rate_hz)
            if lead > 0:
                self._pending = np.zeros((self._channels, lead), dtype=np.float32)
            else:
                self._drop = -lead
        if self._drop:
            cut = min(self._drop, samples.shape[1])
            samples = samples[:, cut:]
            self._drop -= cut
        self._pending = np.concatenate([self._pending, samples.astype(np.float32)], axis=1)
        self._encode_pending(final=False)

    def _encode_pending(self, *, final: bool) -> None:
        n = self.FRAME_SAMPLES
        while self._pending.shape[1] >= n or (final and self._pending.shape[1] > 0):
            chunk, self._pending = self._pending[:, :n], self._pending[:, n:]
            frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(chunk), format="fltp", layout=self._layout)
            frame.sample_rate = self.sample_rate_hz
            frame.pts = self._samples_in
            frame.time_base = self._encoder.time_base
            self._samples_in += chunk.shape[1]
            self._collect(self._encoder.encode(frame))

    def _collect(self, packets: list[av.Packet]) -> None:
        for packet in packets:
            if packet.pts is None:
                raise Mp4FormatError("AAC encoder returned a packet without pts")
            if self._priming is None:
                # The first packet carries the encoder delay at negative time: shift media time
                # to start at 0 and signal the delay as presentationTimeOffset instead.
                self._priming = max(0, -packet.pts)
            pts = packet.pts + self._priming
            packet.pts = packet.dts = pts
            self._packets.append((pts, packet))
        self._write_ready()

    def _end_of(self, segment: int) -> int:
        """Media time (samples) where segment `segment` (0-based) ends, unless it is the last."""
        return self.priming_samples + self._boundary(segment + 1)

    def _write_ready(self) -> None:
        # Segment k holds the AAC frames starting before boundary k+1 (presentation time).
        while (
            self._written < self._video_done
            and self._packets
            and self._packets[-1][0] >= self._end_of(self._written)
        ):
            end = self._end_of(self._written)
            cut = next(i for i, (pts, _) in enumerate(self._packets) if pts >= end)
            self._write_segment([packet for _, packet in self._packets[:cut]])
            self._packets = self._packets[cut:]

    def finish(self, segment_count: int, total_samples: int) -> PackagedTrack:
        """Pads or cuts to `total_samples`, flushes the encoder and writes the last segments."""
        missing = total_samples - self._samples_in - self._pending.shape[1]
        if missing > 0:
            self._pending = np.concatenate(
                [self._pending, np.zeros((self._channels, missing), dtype=np.float32)], axis=1
            )
        self._encode_pending(final=True)
        self._collect(self._encoder.encode(None))
        # Audio that runs on after the video is dropped (AAC frames decode independently).
        limit = self.priming_samples + total_samples
        self._packets = [(pts, packet) for pts, packet in self._packets if pts < limit]
        self._video_done = max(self._video_done, segment_count - 1)
        self._write_ready()
        if self._written != segment_count - 1:
            raise Mp4FormatError(
                f"audio: {self._written + 1} segments for {segment_count} video segments"
            )
        self._write_segment([packet for _, packet in self._packets])
        self._packets = []
        if self._info is None:
            raise Mp4FormatError("no audio was packaged")
        return PackagedTrack(self.directory, self._info, tuple(self._fragments), tuple(self._sizes))

    def _write_segment(self, packets: list[av.Packet]) -> None:
        if not packets:
            raise Mp4FormatError(f"audio segment {self._written + 1} would be empty")
        self._written += 1
        data = self._mux(packets, self._written)
        split = split_fragmented_mp4(data)
        init = data[: split.init_end]
        if self._init is None:
            self._init = init
            init_with_pssh = append_to_moov(init, self._pssh) if self._pssh else init
            (self.directory / "init.mp4").write_bytes(init_with_pssh)
            self._info = parse_init(init_with_pssh)
        elif init != self._init:
            raise Mp4FormatError("audio init segments differ between segment muxes")
        if len(split.fragments) != 1:
            raise Mp4FormatError(f"audio segment {self._written} muxed into {len(split.fragments)} fragments")
        fragment = split.fragments[0]
        chunk = data[fragment.offset : fragment.end]
        (self.directory / f"{self._written}.m4s").write_bytes(chunk)
        self._fragments.append(fragment)
        self._sizes.append(len(chunk))

    def _mux(self, packets: list[av.Packet], sequence: int) -> bytes:
        buffer = io.BytesIO()
        options = {
            # frag_discont + no timestamp shifting: tfdt is the packets' own decode time, so each
            # separately muxed segment continues the track's timeline.
            "movflags": FRAGMENT_FLAGS + "+frag_discont",
            "avoid_negative_ts": "disabled",
            "use_editlist": "0",
            "fragment_index": str(sequence),  # mfhd sequence numbers continue across segments
        }
        if self._key is not None:
            options.update(self._key.muxer_options())
        with av.open(buffer, "w", format="mp4", options=options) as out:
            stream = out.add_stream("aac", rate=self.sample_rate_hz)
            stream.layout = self._layout
            stream.bit_rate = self._bitrate_bps
            stream.time_base = self._encoder.time_base
            for packet in packets:
                packet.stream = stream
                out.mux(packet)
        return buffer.getvalue()


class _ConcatFile(io.RawIOBase):
    """Read-only, seekable view of several files one after another (init + segments)."""

    def __init__(self, paths: Sequence[Path]) -> None:
        super().__init__()
        self._paths = list(paths)
        self._starts: list[int] = []
        total = 0
        for path in self._paths:
            self._starts.append(total)
            total += path.stat().st_size
        self._size = total
        self._pos = 0
        self._open_index = -1
        self._handle: io.BufferedReader | None = None

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self._size}[whence]
        self._pos = max(0, base + offset)
        return self._pos

    def readinto(self, buffer: Any) -> int:
        if self._pos >= self._size:
            return 0
        index = bisect.bisect_right(self._starts, self._pos) - 1
        if index != self._open_index:
            if self._handle is not None:
                self._handle.close()
            self._handle = open(self._paths[index], "rb")
            self._open_index = index
        assert self._handle is not None
        self._handle.seek(self._pos - self._starts[index])
        view = memoryview(buffer).cast("B")
        count = self._handle.readinto(view)
        self._pos += count
        return count

    def close(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None
        super().close()


def concat_reader(directory: Path, segment_count: int) -> io.BufferedReader:
    """A seekable reader of directory/init.mp4 followed by 1.m4s .. <segment_count>.m4s."""
    paths = [directory / "init.mp4"] + [directory / f"{n}.m4s" for n in range(1, segment_count + 1)]
    return io.BufferedReader(_ConcatFile(paths), buffer_size=1 << 20)
