"""A live channel: a packaged title looped forever, published on the wall clock.

Segment `n` (1-based, `$Number$`) covers media [(n-1)*D, n*D) after `availability_start_s`; it is
source segment `(n-1) % S` of loop `(n-1) // S`, re-timed so that timestamps run on across the loop
point (server.live.rewrite). Without low latency a segment is available once complete, at
AST + n*D; with it, chunk c (of K = D / chunk_s) is available at AST + (n-1)*D + (c+1)*chunk_s and
a segment from its first chunk on. It stays available for `time_shift_buffer_s` after it ended
(ISO/IEC 23009-1 section 5.3.9.5.3, the segment availability window).
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

from server.formats.boxes import Mp4FormatError
from server.formats.hls import MASTER_PLAYLIST_NAME
from server.formats.names import MANIFEST_NAME, SEGMENTS_NAME, check_title
from server.formats.segments import load_segments_json
from server.live.chunkcache import ChunkCache, Chunks
from server.live.rewrite import FragmentTable, build_fragment, chunk_ranges, parse_fragment
from server.packaging.mp4split import InitInfo, parse_init

MAX_SEGMENT_NUMBER = 999_999_999  # the title layout's segment names have at most 9 digits


def check_speed(speed: float) -> None:
    """A channel clock's speed-up K must be in [0.01, 1000] (ValueError naming it otherwise)."""
    if not (math.isfinite(speed) and 0.01 <= speed <= 1000):
        raise ValueError(f"the live channel's speed must be in [0.01, 1000], got {speed}")


def warped_clock(speed: float, origin_s: float) -> Callable[[], float]:
    """A clock (unix seconds) that runs `speed` times faster than the wall clock from wall time
    `origin_s` on: the time of a sped-up channel, at its origin and at every edge's `/time`."""
    if speed == 1.0:
        return time.time
    return lambda: origin_s + (time.time() - origin_s) * speed


@dataclass(frozen=True, kw_only=True, slots=True)
class LiveConfig:
    """One live channel: `channel` is its name in URLs (a title name), `source_title` the packaged
    title it loops. Times in seconds; `availability_start_s` is unix time (the MPD's
    availabilityStartTime)."""

    channel: str = "live"
    source_title: str
    availability_start_s: float
    low_latency: bool = False
    chunk_s: float = 0.5
    time_shift_buffer_s: float = 30.0
    target_latency_s: float | None = None  # None: 3 chunks + 0.5 s at low latency, else 2 segments
    time_url: str | None = None  # the UTCTiming URL; None: the edge fills in its own /time
    # The channel's clock runs this many times faster than the wall clock from when it is served
    # (`LiveChannel.clock`, the origin's `/time` too): a sped-up player (`abrkit play --speed K`)
    # plays a channel at the same K. 1: the wall clock.
    speed: float = 1.0
    # The wall time (unix s) the sped-up clock starts from (channel time = wall time there); None:
    # when the channel object is made. A stack sets its availability start, so its origin and every
    # edge's `/time` (other processes) run one clock.
    clock_origin_s: float | None = None
    # Emulation only: honour `X-Abrkit-Channel-Lag` (server.formats.names.CHANNEL_LAG_HEADER), so that a
    # player whose clock leaves out the stack's time sees the channel on that clock (docs/LIVE-EMULATION.md,
    # "The stack's time in live emulation"). Off: the header is ignored.
    player_clocks: bool = False
    # Keep each segment's built chunks for the time-shift window (server.live.chunkcache), so that
    # its LL-HLS parts and whole-segment requests after the first are served without rebuilding it.
    # Off: every request re-times and cuts the source fragment again (the reference bench/live_origin_cpu.py
    # measures the cache against).
    chunk_cache: bool = True

    def __post_init__(self) -> None:
        check_title(self.channel, hint="the live channel name")
        check_title(self.source_title, hint="--live-title")
        if self.channel == self.source_title:
            raise ValueError(f"the live channel {self.channel!r} must not have its source title's name")
        if not math.isfinite(self.availability_start_s) or self.availability_start_s < 0:
            raise ValueError("availability_start_s must be a unix time >= 0")
        if not 0.1 <= self.chunk_s <= 10:
            raise ValueError(f"chunk_s must be in [0.1, 10], got {self.chunk_s}")
        if not 1 <= self.time_shift_buffer_s <= 24 * 3600:
            raise ValueError(f"time_shift_buffer_s must be in [1, 86400], got {self.time_shift_buffer_s}")
        check_speed(self.speed)
        if self.clock_origin_s is not None and not (math.isfinite(self.clock_origin_s) and self.clock_origin_s >= 0):
            raise ValueError(f"clock_origin_s must be a unix time >= 0, got {self.clock_origin_s}")
        if self.target_latency_s is not None and not 0.1 <= self.target_latency_s <= 600:
            raise ValueError(f"target_latency_s must be in [0.1, 600], got {self.target_latency_s}")


class NotAvailable(LookupError):
    """A segment or chunk outside the availability window: `available_at_s` says when it will be
    (None: it has left the window, or never will be)."""

    def __init__(self, message: str, available_at_s: float | None) -> None:
        super().__init__(message)
        self.available_at_s = available_at_s


@dataclass(frozen=True, slots=True)
class _Track:
    media: str  # "video" | "audio"
    rep_id: str
    directory: Path
    init: bytes
    info: InitInfo
    loop_ticks: int  # one loop of the channel, in this track's timescale
    skip_samples: int  # samples of source segment 1 left out after the first loop (encoder priming)
    chunk_ticks: int


class LiveChannel:
    """The schedule and the bytes of one channel (thread-safe; parsed source fragments are kept)."""

    def __init__(self, config: LiveConfig, content_root: Path) -> None:
        self.config = config
        origin_s = config.clock_origin_s if config.clock_origin_s is not None else time.time()
        self.clock: Callable[[], float] = warped_clock(config.speed, origin_s)
        title_dir = Path(content_root) / config.source_title
        if not (title_dir / MANIFEST_NAME).is_file():
            raise ValueError(f"live source title {config.source_title!r} is not packaged under {content_root}")
        self.title_dir = title_dir
        segments = load_segments_json(title_dir / SEGMENTS_NAME)
        self.segments = segments
        self.manifest_bytes = (title_dir / MANIFEST_NAME).read_bytes()
        master = title_dir / MASTER_PLAYLIST_NAME
        self.master_playlist = master.read_bytes() if master.is_file() else None
        if not segments.video:
            raise ValueError(f"live source title {config.source_title!r} has no video")
        nominal = segments.segment_duration_s
        durations = segments.video[0].segment_durations_s
        # Loop over the whole-duration segments (a short last segment would break $Number$ timing).
        loop = 0
        while loop < len(durations) and abs(durations[loop] - nominal) < 1e-3:
            loop += 1
        if loop < 1:
            raise ValueError(f"live source title {config.source_title!r} has no segment of its nominal duration")
        self.loop_segments = loop
        self.segment_s = Fraction(nominal).limit_denominator(1_000_000)
        chunks = self.segment_s / Fraction(config.chunk_s).limit_denominator(1000)
        if config.low_latency and chunks.denominator != 1:
            raise ValueError(f"chunk_s {config.chunk_s} does not divide the {float(self.segment_s):g} s segments "
                             f"of {config.source_title!r}")
        self.chunks_per_segment = int(chunks) if config.low_latency else 1
        self.loop_s = self.segment_s * loop
        self._tracks: dict[tuple[str, str], _Track] = {}
        for media, renditions in (("video", segments.video), ("audio", segments.audio)):
            for rendition in renditions:
                self._tracks[(media, rendition.id)] = self._load_track(media, rendition.id, title_dir)
        self._tables: dict[tuple[str, str, int], FragmentTable] = {}
        self._longest: dict[tuple[str, str], float] = {}
        self._lock = threading.Lock()
        # The window's segments (+2: the one being published and one asked for early) per rendition.
        window = math.ceil(config.time_shift_buffer_s / float(self.segment_s)) + 2
        self.chunk_cache = ChunkCache(max_segments=window * len(self._tracks) if config.chunk_cache else 0)

    def _load_track(self, media: str, rep_id: str, title_dir: Path) -> _Track:
        directory = title_dir / media / rep_id
        init = (directory / "init.mp4").read_bytes()
        info = parse_init(init)
        loop_ticks = self.loop_s * info.timescale
        if loop_ticks.denominator != 1:
            raise ValueError(f"{media}/{rep_id}: a {float(self.loop_s):g} s loop is not a whole number of "
                             f"ticks at timescale {info.timescale}")
        first = parse_fragment((directory / "1.m4s").read_bytes(), info.defaults)
        last = parse_fragment((directory / f"{self.loop_segments}.m4s").read_bytes(), info.defaults)
        actual = last.base_decode_time + last.duration - first.base_decode_time
        excess = actual - int(loop_ticks)
        # Audio cut at video boundaries carries the encoder's priming samples in its first segment:
        # its loop is longer than the video's by them. Leave them out after the first loop, so the
        # next loop's first sample follows the last one exactly.
        skip, dropped = 0, 0
        while dropped < excess and skip < first.sample_count - 1:
            dropped += first.durations[skip]
            skip += 1
        if dropped != excess:
            raise ValueError(f"{media}/{rep_id}: the loop of {self.loop_segments} segments lasts {actual} ticks, "
                             f"not {int(loop_ticks)}; its timestamps cannot run on across the loop point")
        chunk_ticks = Fraction(self.config.chunk_s).limit_denominator(1000) * info.timescale
        return _Track(media=media, rep_id=rep_id, directory=directory, init=init, info=info,
                      loop_ticks=int(loop_ticks), skip_samples=skip, chunk_ticks=max(1, round(chunk_ticks)))

    # -- the schedule --------------------------------------------------------------------------

    @property
    def availability_start_s(self) -> float:
        return self.config.availability_start_s

    @property
    def chunk_duration_s(self) -> float:
        return float(self.segment_s) / self.chunks_per_segment

    @property
    def target_latency_s(self) -> float:
        if self.config.target_latency_s is not None:
            return self.config.target_latency_s
        if self.config.low_latency:
            return round(3 * self.chunk_duration_s + 0.5, 3)
        return 2 * float(self.segment_s)

    def segment_start_s(self, number: int) -> float:
        """Wall-clock (unix) start of segment `number`'s media."""
        return self.availability_start_s + (number - 1) * float(self.segment_s)

    def chunk_available_at_s(self, number: int, chunk: int) -> float:
        """When chunk `chunk` (0-based) of segment `number` is published: when its media has ended."""
        return self.segment_start_s(number) + (chunk + 1) * self.chunk_duration_s

    def segment_available_at_s(self, number: int) -> float:
        """When a request for the segment can be answered: its first chunk (low latency) or all of it."""
        return self.chunk_available_at_s(number, 0 if self.config.low_latency else self.chunks_per_segment - 1)

    def segment_complete_at_s(self, number: int) -> float:
        return self.segment_start_s(number + 1)

    def chunks_available(self, number: int, now_s: float) -> int:
        """How many chunks of segment `number` are published at `now_s` (0..K)."""
        elapsed = now_s - self.segment_start_s(number)
        return max(0, min(self.chunks_per_segment, math.floor(elapsed / self.chunk_duration_s + 1e-9)))

    def newest_complete(self, now_s: float) -> int:
        """The number of the newest complete segment at `now_s` (0: none yet)."""
        return max(0, math.floor((now_s - self.availability_start_s) / float(self.segment_s) + 1e-9))

    def newest_available(self, now_s: float) -> int:
        """The newest segment a request may ask for at `now_s` (0: none); at low latency, the one
        being published."""
        if not self.config.low_latency:
            return self.newest_complete(now_s)
        return max(0, math.floor((now_s - self.availability_start_s - self.chunk_duration_s) / float(self.segment_s)
                                 + 1e-9) + 1)

    def oldest_available(self, now_s: float) -> int:
        """The oldest segment still in the time-shift window (segments that ended within it)."""
        return max(1, math.ceil((now_s - self.config.time_shift_buffer_s - self.availability_start_s)
                                / float(self.segment_s) - 1e-9))

    def check_available(self, number: int, now_s: float) -> None:
        """`NotAvailable` (with when, if ever) unless segment `number` may be requested at `now_s`."""
        if not 1 <= number <= MAX_SEGMENT_NUMBER:
            raise NotAvailable(f"segment {number} is outside 1..{MAX_SEGMENT_NUMBER}", None)
        available_at = self.segment_available_at_s(number)
        if now_s < available_at:
            raise NotAvailable(f"segment {number} is not available yet (in {available_at - now_s:.3f} s)",
                               available_at)
        if number < self.oldest_available(now_s):
            raise NotAvailable(f"segment {number} has left the {self.config.time_shift_buffer_s:g} s "
                               "time-shift window", None)

    # -- the bytes -----------------------------------------------------------------------------

    def track(self, media: str, rep_id: str) -> _Track | None:
        return self._tracks.get((media, rep_id))

    def tracks(self) -> list[_Track]:
        return list(self._tracks.values())

    def _table(self, track: _Track, index: int) -> FragmentTable:
        key = (track.media, track.rep_id, index)
        with self._lock:
            table = self._tables.get(key)
        if table is None:
            try:
                table = parse_fragment((track.directory / f"{index}.m4s").read_bytes(), track.info.defaults)
            except OSError as exc:
                raise Mp4FormatError(f"{track.media}/{track.rep_id}/{index}.m4s: {exc.strerror}") from None
            with self._lock:
                self._tables[key] = table
        return table

    def segment_chunks(self, media: str, rep_id: str, number: int) -> Chunks:
        """Segment `number` of a rendition as its chunks (one element without low latency), each a
        moof+mdat with continuous tfdt and a unique mfhd sequence number. Empty chunks are b"".
        Built once and kept while in the time-shift window (`LiveConfig.chunk_cache`)."""
        if (media, rep_id) not in self._tracks:
            raise KeyError((media, rep_id))
        return self.chunk_cache.get((media, rep_id, number), lambda: self.build_segment_chunks(media, rep_id, number),
                                    oldest=self.oldest_available(self.clock()))

    def kept_chunks(self, media: str, rep_id: str, number: int) -> Chunks | None:
        """`segment_chunks` if the cache holds them (None: they must be built, off the event loop)."""
        return self.chunk_cache.peek((media, rep_id, number))

    def build_segment_chunks(self, media: str, rep_id: str, number: int) -> Chunks:
        """`segment_chunks` built from the source fragment, not looked up."""
        track = self._tracks[(media, rep_id)]
        loop, index = divmod(number - 1, self.loop_segments)
        table = self._table(track, index + 1)
        skip = track.skip_samples if loop and index == 0 else 0
        base = table.base_decode_time + loop * track.loop_ticks
        ranges = chunk_ranges(table.durations, track.chunk_ticks, self.chunks_per_segment, skip=skip)
        out = []
        for c, (first, stop) in enumerate(ranges):
            if first == stop:
                out.append(b"")
                continue
            decode_time = base + sum(table.durations[:first])
            sequence = (number - 1) * self.chunks_per_segment + c + 1
            out.append(build_fragment(table, first, stop, decode_time=decode_time, sequence=sequence % 2**32 or 1))
        return tuple(out)

    def chunk_durations_s(self, media: str, rep_id: str, number: int) -> list[float]:
        """The media duration of each chunk of segment `number` (seconds; LL-HLS part durations):
        what its samples last, which for audio differs a little from `chunk_duration_s`."""
        track = self._tracks[(media, rep_id)]
        loop, index = divmod(number - 1, self.loop_segments)
        table = self._table(track, index + 1)
        skip = track.skip_samples if loop and index == 0 else 0
        ranges = chunk_ranges(table.durations, track.chunk_ticks, self.chunks_per_segment, skip=skip)
        scale = track.info.timescale
        return [sum(table.durations[first:stop]) / scale for first, stop in ranges]

    def longest_chunk_s(self, media: str, rep_id: str) -> float:
        """The longest chunk of a rendition over one loop (an LL-HLS PART-TARGET bounds every part)."""
        key = (media, rep_id)
        with self._lock:
            known = self._longest.get(key)
        if known is None:
            known = max(max(self.chunk_durations_s(media, rep_id, number), default=0.0)
                        for number in range(1, self.loop_segments + 2))  # +1: the loop point's first segment
            with self._lock:
                self._longest[key] = known
        return known

    def kid(self, media: str) -> bytes | None:
        """The default KID of a media type's renditions (None: clear)."""
        for track in self._tracks.values():
            if track.media == media:
                return track.info.default_kid
        return None
