"""What the client needs from a decoder: the `Decoder` protocol and the summary it ends with.

Imports no PyAV: the headless player and its harness name the protocol even with `--decode none`.
Implementations: `player.media.pipeline.DecodePipeline` (headless) and `player.media.avsync.DesktopDecoder`.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal, Protocol

if TYPE_CHECKING:
    from player.client.fetch import Fetcher

TrackKind = Literal["video", "audio"]


def rendition_key(period_index: int, rep_id: str) -> str:
    """The name a decoder knows a rendition by: its id, with the Period after the first (ids are
    unique per Period only; a Representation@id has no whitespace, so the suffix cannot clash)."""
    return rep_id if period_index == 0 else f"{rep_id} (period {period_index + 1})"

# Rendition id -> (failover URLs of its init segment, the Range header to send with them).
InitUrls = Mapping[str, tuple[Sequence[str], Mapping[str, str]]]


@dataclass(frozen=True, kw_only=True, slots=True)
class DecodeSummary:
    frames_decoded: int
    frames_failed: int
    segments: int
    failed_segments: int
    first_frame_wall: float | None  # time.monotonic() of the first decoded video frame
    errors: tuple[str, ...] = field(default_factory=tuple)  # the first and last `KEPT_ERRORS` (`ErrorLog`)
    errors_left_out: int = 0  # errors between those, counted but not kept

    @property
    def error_count(self) -> int:
        return len(self.errors) + self.errors_left_out


@dataclass(frozen=True, kw_only=True, slots=True)
class SegmentFailure:
    """A segment of which nothing could be used (`DecodeSummary.errors` has the same as text)."""

    media: TrackKind
    rendition: str  # as `rendition_key` names it
    segment_index: int  # 0-based, as the session's events count segments
    reason: str


# A decoder keeps this many of its first errors and as many of its last (a stream that keeps failing
# fails once a segment, for hours); the count stays exact.
KEPT_ERRORS = 50


class ErrorLog:
    """A decoder's errors in bounded memory: the exact count, the first `keep` and the last `keep`
    (each a message, and the segment's record when a segment failed), in order. Written by a decode
    worker, read from other threads; `take_new` hands each error to one polling reader once."""

    def __init__(self, keep: int = KEPT_ERRORS) -> None:
        if keep < 1:
            raise ValueError(f"keep must be >= 1, got {keep}")
        self.keep = keep
        self.count = 0
        self._first: list[tuple[str, SegmentFailure | None]] = []
        self._last: deque[tuple[str, SegmentFailure | None]] = deque(maxlen=keep)
        self._lock = threading.Lock()
        self._taken = 0  # `take_new`'s reader has had the first this many

    def add(self, message: str, failure: SegmentFailure | None = None) -> None:
        with self._lock:
            (self._first if len(self._first) < self.keep else self._last).append((message, failure))
            self.count += 1

    def _held(self) -> list[tuple[int, str, SegmentFailure | None]]:
        """(sequence number, message, record) of every error kept, oldest first; call with the lock held."""
        tail_from = self.count - len(self._last)
        return ([(i, m, f) for i, (m, f) in enumerate(self._first)]
                + [(tail_from + i, m, f) for i, (m, f) in enumerate(self._last)])

    def messages(self) -> tuple[str, ...]:
        with self._lock:
            return tuple(m for _, m, _ in self._held())

    def failures(self) -> tuple[SegmentFailure, ...]:
        with self._lock:
            return tuple(f for _, _, f in self._held() if f is not None)

    @property
    def left_out(self) -> int:
        with self._lock:
            return self.count - len(self._first) - len(self._last)

    def since(self, seen: int) -> tuple[list[tuple[str, SegmentFailure | None]], int, int]:
        """The errors after the first `seen` that are still kept, the count now (the next `seen`),
        and how many of those after `seen` are no longer kept (a reader that fell far behind)."""
        with self._lock:
            new = [(m, f) for i, m, f in self._held() if i >= seen]
            return new, self.count, max(0, self.count - seen) - len(new)

    def take_new(self) -> tuple[str, ...]:
        """The messages not taken yet, oldest first (`Decoder.new_errors`); where some are no longer
        kept, a line says how many."""
        with self._lock:
            out: list[str] = []
            expected = self._taken
            for i, message, _ in self._held():
                if i < self._taken:
                    continue
                if i > expected:
                    out.append(f"({i - expected} more decode errors, not kept)")
                out.append(message)
                expected = i + 1
            self._taken = self.count
            return tuple(out)


class Decoder(Protocol):
    """Takes a session's segments as they arrive and decodes them off the event loop; never holds up
    fetching, and counts failures instead of raising them."""

    async def start(self, init_urls: InitUrls, fetcher: Fetcher, *, continuous: bool) -> None:
        """Fetch every rendition's init segment, once, before playback starts. `continuous`: the
        submissions to come are chunks of one stream (a low-latency live schedule's chunks: a DASH
        MPD's `availabilityTimeOffset` chunks, LL-HLS parts), not whole segments, so a video decoder
        keeps the frames it holds back for reordering from one submission to the next instead of
        draining after each (which would drop the reference frames the next chunk needs); the
        player decides it from its schedule (`LiveSchedule.chunks_per_segment` > 1)."""
        ...

    def submit(self, kind: TrackKind, rep_id: str, index: int, data: bytes, *, ends_segment: bool = True) -> None:
        """Queue segment `index` (0-based) of rendition `rep_id` for decoding; returns at once. After a
        `continuous` start `data` may be a chunk of the segment: `ends_segment` says if it is its last
        (the decoder drains there: GOPs are closed and segment-aligned, so nothing is held back past it)."""
        ...

    def new_errors(self) -> tuple[str, ...]:
        """The errors since the last call, oldest first, each returned once (the player logs them
        as they happen); more than `KEPT_ERRORS` between two calls: the newest of them, after a line
        saying how many were left out. Call on the player's event loop."""
        ...

    async def finish(self) -> DecodeSummary:
        """Wait for every submitted segment, then report (a VOD session; a live one never finishes)."""
        ...

    def close(self) -> None:
        """The session is over (finished or not): stop and join any worker threads. Idempotent; may
        block for one segment's decode, so the harness calls it off the event loop."""
        ...
