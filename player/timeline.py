"""Media types and their segment timelines: where each segment of a media type sits in media time.

Audio and video of one title are cut independently (HLS audio renditions, FFmpeg's DASH muxer with
audio frame boundaries, packagers with 2 s audio beside 4 s video), so the session keeps one
timeline per media type. Times are seconds of media time from the start of the video's first segment.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Sequence
from typing import Literal, Protocol

from abr.types import Ladder

MediaType = Literal["video", "audio"]


class Timeline:
    """Segment n of one media type plays from `start_s(n)` for `duration_s(n)` seconds of media time.

    `Timeline.uniform` (every segment the same length, as Pensieve's and Sabre's videos) stores no
    per-segment arrays and computes starts as `n * duration`, the arithmetic the session always used.
    """

    __slots__ = ("_starts_s", "_durations_s", "_uniform_s", "_count")

    def __init__(self, starts_s: Sequence[float], durations_s: Sequence[float]) -> None:
        starts = tuple(float(s) for s in starts_s)
        durations = tuple(float(d) for d in durations_s)
        if len(starts) != len(durations) or not durations:
            raise ValueError(f"a timeline needs one start per duration and at least one segment "
                             f"(got {len(starts)} starts, {len(durations)} durations)")
        for index, (start, duration) in enumerate(zip(starts, durations)):
            if not 0 < duration < math.inf or not math.isfinite(start):
                raise ValueError(f"segment {index}: start {start!r} s and duration {duration!r} s must be finite, "
                                 f"the duration > 0")
        if any(later < earlier for earlier, later in zip(starts, starts[1:])):
            raise ValueError("segment starts must not decrease")
        self._starts_s: tuple[float, ...] | None = starts
        self._durations_s: tuple[float, ...] | None = durations
        self._uniform_s: float | None = None
        self._count = len(durations)

    @classmethod
    def uniform(cls, duration_s: float, count: int) -> Timeline:
        """`count` segments of `duration_s` each, the first at 0."""
        if not 0 < duration_s < math.inf or count < 1:
            raise ValueError(f"a uniform timeline needs a finite duration > 0 s and >= 1 segment, "
                             f"got {duration_s!r} s x {count}")
        timeline = cls.__new__(cls)
        timeline._starts_s = timeline._durations_s = None
        timeline._uniform_s = float(duration_s)
        timeline._count = count
        return timeline

    @classmethod
    def from_durations(cls, durations_s: Sequence[float], start_s: float = 0.0) -> Timeline:
        """Back-to-back segments of these durations, the first starting at `start_s`."""
        starts = []
        position = start_s
        for duration in durations_s:
            starts.append(position)
            position += float(duration)
        return cls(starts, durations_s)

    def __len__(self) -> int:
        return self._count

    def __repr__(self) -> str:
        if self._uniform_s is not None:
            return f"Timeline.uniform({self._uniform_s!r}, {self._count})"
        return f"Timeline({self._count} segments, {self.start_s(0):g}..{self.end_s:g} s)"

    @property
    def uniform_s(self) -> float | None:
        """The one segment duration of a uniform timeline (None otherwise)."""
        return self._uniform_s

    def start_s(self, index: int) -> float:
        if self._uniform_s is not None:
            return index * self._uniform_s
        assert self._starts_s is not None
        return self._starts_s[index]

    def duration_s(self, index: int) -> float:
        if self._uniform_s is not None:
            return self._uniform_s
        assert self._durations_s is not None
        return self._durations_s[index]

    @property
    def end_s(self) -> float:
        last = self._count - 1
        return self.start_s(last) + self.duration_s(last)

    def index_at(self, position_s: float) -> int:
        """The segment that plays at `position_s` (the first before it, the last after it)."""
        if self._uniform_s is not None:
            index = int(position_s // self._uniform_s)
        else:
            assert self._starts_s is not None
            index = bisect.bisect_right(self._starts_s, position_s) - 1
        return max(0, min(index, self._count - 1))

    def count_before(self, end_s: float) -> int:
        """How many segments start before media time `end_s` (those needed to play up to it)."""
        if self._uniform_s is not None:
            return max(0, min(self._count, math.ceil(end_s / self._uniform_s)))
        assert self._starts_s is not None
        return bisect.bisect_left(self._starts_s, end_s)


class MediaSource(Protocol):
    """One media type of the content as the session sees it: renditions (a ladder, ascending by
    bitrate), how many segments, where they sit, and their sizes where known."""

    @property
    def ladder(self) -> Ladder: ...

    @property
    def segment_count(self) -> int: ...

    @property
    def timeline(self) -> Timeline: ...

    def upcoming(self, segment_index: int, count: int) -> tuple[tuple[int, ...], ...]: ...
