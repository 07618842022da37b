"""What the client needs from a decoder: the `Decoder` protocol and the summary it ends with.

Imports no PyAV: the headless player and its harness name the protocol even with `--decode none`.
Implementations: `player.media.pipeline.DecodePipeline` (headless) and `player.media.avsync.DesktopDecoder`.
"""

from __future__ import annotations

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
    errors: tuple[str, ...] = field(default_factory=tuple)


@dataclass(frozen=True, kw_only=True, slots=True)
class SegmentFailure:
    """A segment of which nothing could be used (`DecodeSummary.errors` has the same as text)."""

    media: TrackKind
    rendition: str  # as `rendition_key` names it
    segment_index: int  # 0-based, as the session's events count segments
    reason: str


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

    async def finish(self) -> DecodeSummary:
        """Wait for every submitted segment, then report (a VOD session; a live one never finishes)."""
        ...

    def close(self) -> None:
        """The session is over (finished or not): stop and join any worker threads. Idempotent; may
        block for one segment's decode, so the harness calls it off the event loop."""
        ...
