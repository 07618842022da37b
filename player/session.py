"""The playback state machine shared by the simulator, the headless player and the desktop player.

Sans-I/O: `PlaybackSession` never touches a socket or a clock. A driver asks it what to do next
(`next_action`), performs the fetch or the wait on its own clock (virtual or real), and reports back
(`on_download`, `advance`). The session owns the buffer, the playhead, the ABR calls and the QoE
accounting, so a session behaves the same whoever drives it.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass
from typing import Literal, Protocol

from abr.types import AbrAlgorithm, Decision, Download, Ladder, Observation, Progress, check_ladder
from player.events import EventList, EventSink, SessionEvent, SessionEventKind


class SegmentSource(Protocol):
    """What the session needs to know about the content: a ladder, a count and (optional) sizes."""

    @property
    def ladder(self) -> Ladder: ...

    @property
    def segment_count(self) -> int: ...

    def upcoming(self, segment_index: int, count: int) -> tuple[tuple[int, ...], ...]: ...


@dataclass(frozen=True, kw_only=True, slots=True)
class SessionConfig:
    """Player policy. Times in seconds of media or session time."""

    startup_threshold_s: float = 0.0  # start playing once this much is buffered (and >= 1 segment)
    buffer_cap_s: float = 60.0  # do not fetch while the buffer holds more than this (see `cap_rule`)
    # "over": wait while the buffer holds more than the cap (dash.js, Pensieve); "room": wait until a
    # whole segment fits under the cap, i.e. while buffer + segment duration > cap (Sabre's main loop)
    cap_rule: Literal["over", "room"] = "over"
    sleep_quantum_s: float = 0.0  # wait in multiples of this when over the cap (Pensieve: 0.5 s)
    initial_quality: int | None = None  # force the first segment's quality (Pensieve: 1)
    history_len: int = 20  # downloads kept in each Observation
    lookahead_segments: int = 6  # upcoming segment sizes offered in each Observation
    rebuffer_resume_s: float = 0.0  # after a stall, resume once this much is buffered (0: any segment)

    def __post_init__(self) -> None:
        if self.startup_threshold_s < 0 or self.rebuffer_resume_s < 0:
            raise ValueError("startup and resume thresholds must be >= 0 s")
        if not self.buffer_cap_s > 0:
            raise ValueError(f"buffer cap must be > 0 s, got {self.buffer_cap_s}")
        if self.sleep_quantum_s < 0:
            raise ValueError(f"sleep quantum must be >= 0 s, got {self.sleep_quantum_s}")
        if self.cap_rule not in ("over", "room"):
            raise ValueError(f"cap rule must be 'over' or 'room', got {self.cap_rule!r}")
        if self.history_len < 1 or self.lookahead_segments < 0:
            raise ValueError("history_len must be >= 1 and lookahead_segments >= 0")


@dataclass(frozen=True, kw_only=True, slots=True)
class Fetch:
    """Download segment `segment_index` at `quality`."""

    segment_index: int
    quality: int
    decision: Decision


@dataclass(frozen=True, kw_only=True, slots=True)
class Wait:
    """Nothing to fetch for `duration_s` (buffer full, or the ABR asked for a delay); always > 0."""

    duration_s: float
    reason: str

    def __post_init__(self) -> None:
        if not 0 < self.duration_s < math.inf:
            raise ValueError(f"a wait must be a finite time > 0 s, got {self.duration_s!r}")


@dataclass(frozen=True, kw_only=True, slots=True)
class Finished:
    """Every segment is fetched; playback ends `remaining_s` after now (the buffer plays out)."""

    remaining_s: float


Action = Fetch | Wait | Finished


@dataclass(frozen=True, kw_only=True, slots=True)
class SegmentRecord:
    """One played segment, for QoE accounting and the per-segment log."""

    segment_index: int
    quality: int
    bitrate_bps: int
    size_bytes: int
    request_time_s: float
    download_s: float  # whole request time, ttfb included
    ttfb_s: float
    rebuffer_s: float  # stall time since the previous segment arrived (after startup; abandoned attempts included)
    buffer_before_s: float  # when the request was made
    buffer_after_s: float  # after the segment was added
    wait_s: float  # time waited before the request (buffer cap or ABR delay)
    reason: str


def cap_excess_s(buffer_s: float, config: SessionConfig, segment_duration_s: float) -> float:
    """How far the buffer is past the point where the cap rule lets the next request go (<= 0: go now).

    Under "room" the excess is at most the buffer itself: a cap shorter than a segment never waits on
    an empty buffer."""
    if config.cap_rule == "room":
        return min(buffer_s + segment_duration_s - config.buffer_cap_s, buffer_s)
    return buffer_s - config.buffer_cap_s


class PlaybackSession:
    """Buffer, playhead, ABR calls and QoE accounting for one viewing session.

    Events (`player.events`) go to `sink` (a driver passes the sink its own events go to), or with
    `record_events` to an in-memory `EventList` read back as `events`; with neither, none are made.
    """

    def __init__(self, abr: AbrAlgorithm, content: SegmentSource, config: SessionConfig | None = None,
                 *, record_events: bool = False, sink: EventSink | None = None) -> None:
        if record_events and sink is not None:
            raise ValueError("record_events keeps events in memory; a session given a sink emits into it instead")
        self.abr = abr
        self.content = content
        self.ladder = content.ladder
        check_ladder(abr, self.ladder)  # an algorithm that cannot decide on this ladder says so now
        self.config = config or SessionConfig()
        self.segment_count = content.segment_count
        self.recorded: EventList | None = EventList() if record_events else None
        self._sink: EventSink | None = sink if sink is not None else self.recorded
        self.records: list[SegmentRecord] = []
        self.time_s = 0.0
        self.buffer_s = 0.0
        self.playhead_s = 0.0  # media time being shown
        self.started = False  # playback has begun (startup over)
        self.stalled = False
        self.startup_s: float | None = None
        self.total_rebuffer_s = 0.0
        self.stall_count = 0
        self.next_segment = 0
        self.last_quality: int | None = None
        self.paused = False
        self._downloads: deque[Download] = deque(maxlen=self.config.history_len)
        self._pending: Fetch | None = None  # decided but delayed fetch
        self._in_flight: Fetch | None = None
        self._request_time_s = 0.0
        self._buffer_at_request_s = 0.0
        self._rebuffer_since_request_s = 0.0
        self._waited_s = 0.0
        self._resume_threshold_s = 0.0

    # -- time -------------------------------------------------------------------------------------

    def advance(self, now_s: float) -> None:
        """Let time pass up to `now_s`: the buffer drains while playing; a dry buffer is a stall."""
        elapsed = now_s - self.time_s
        if elapsed < 0:
            raise ValueError(f"time went backwards: {now_s} < {self.time_s}")
        self.time_s = now_s
        if elapsed == 0 or not self.started or self.paused:
            return
        if self.stalled:
            self._stall(elapsed)
            return
        if self.buffer_s >= elapsed:
            self.buffer_s -= elapsed
            self.playhead_s += elapsed
        else:
            self.playhead_s += self.buffer_s
            short = elapsed - self.buffer_s
            self.buffer_s = 0.0
            if self.next_segment >= self.segment_count and self._in_flight is None:
                return  # the end of the video, not a stall
            self.stalled = True
            self.stall_count += 1
            self._resume_threshold_s = self.config.rebuffer_resume_s
            self._event("stall", playhead_s=self.playhead_s)
            self._stall(short)

    def _stall(self, seconds: float) -> None:
        self.total_rebuffer_s += seconds
        self._rebuffer_since_request_s += seconds

    # -- decisions ----------------------------------------------------------------------------------

    def observation(self) -> Observation:
        return Observation(
            time_s=self.time_s,
            buffer_s=self.buffer_s,
            segment_index=self.next_segment,
            segment_count=self.segment_count,
            ladder=self.ladder,
            last_quality=self.last_quality,
            downloads=tuple(self._downloads),
            next_sizes_bytes=self.content.upcoming(self.next_segment, self.config.lookahead_segments),
            rebuffering=self.stalled or not self.started,
            buffer_cap_s=self.config.buffer_cap_s,
            next_quality=self._upcoming_quality(),
        )

    def _upcoming_quality(self) -> tuple[tuple[float, ...], ...]:
        """Per-segment quality scores where the content has them (`Video.upcoming_quality`)."""
        upcoming = getattr(self.content, "upcoming_quality", None)
        return upcoming(self.next_segment, self.config.lookahead_segments) if upcoming is not None else ()

    def next_action(self) -> Action:
        """What the driver should do now. Call again after every fetch or wait completes."""
        if self._in_flight is not None:
            raise RuntimeError("a fetch is in flight; report it with on_download() first")
        if self.next_segment >= self.segment_count:
            return Finished(remaining_s=self.buffer_s)
        if self._pending is not None:
            fetch, self._pending = self._pending, None
            return self._begin(fetch)
        duration = self._cap_wait_s()
        if duration > 0:
            self._waited_s += duration
            self._event("wait", duration_s=duration, reason="buffer full")
            return Wait(duration_s=duration, reason="buffer full")
        if self.next_segment == 0 and self.config.initial_quality is not None:
            quality = min(self.config.initial_quality, self.ladder.top)
            decision = Decision(quality=quality, reason="initial quality")
        else:
            decision = self.abr.decide(self.observation())
            if not 0 <= decision.quality <= self.ladder.top:
                raise ValueError(f"{getattr(self.abr, 'name', self.abr)!r} chose quality {decision.quality} "
                                 f"outside 0..{self.ladder.top}")
            if not 0 <= decision.delay_s < math.inf:
                raise ValueError(f"{getattr(self.abr, 'name', self.abr)!r} asked for a delay of {decision.delay_s!r} s "
                                 f"(must be finite and >= 0)")
        fetch = Fetch(segment_index=self.next_segment, quality=decision.quality, decision=decision)
        self._event("decision", segment=fetch.segment_index, quality=fetch.quality, reason=decision.reason,
                    buffer_s=self.buffer_s)
        if decision.delay_s > 0:
            self._pending = fetch
            self._waited_s += decision.delay_s
            self._event("wait", duration_s=decision.delay_s, reason="abr delay")
            return Wait(duration_s=decision.delay_s, reason=decision.reason or "abr delay")
        return self._begin(fetch)

    def _cap_wait_s(self) -> float:
        """How long to wait before the next request under the cap rule (0: fetch now).

        The wait is measured on the session clock: a buffer over the cap by less than the clock can
        represent at this time (60.00000000000003 s at t = 364 s) is at the cap. A wait that cannot
        move the clock would otherwise repeat forever.
        """
        over = cap_excess_s(self.buffer_s, self.config, self.ladder.segment_duration_s)
        if over <= 0:
            return 0.0
        quantum = self.config.sleep_quantum_s
        if quantum > 0:
            return math.ceil(over / quantum) * quantum
        return (self.time_s + over) - self.time_s

    def _begin(self, fetch: Fetch) -> Fetch:
        self._in_flight = fetch
        self._request_time_s = self.time_s
        self._buffer_at_request_s = self.buffer_s
        return fetch

    def progress(self, *, bytes_received: int, size_bytes: int, elapsed_s: float,
                 ttfb_s: float | None = None) -> Progress:
        """An in-flight download's state, for `Abandoning.should_abandon` (`ttfb_s`: once the driver knows it)."""
        fetch = self._require_in_flight()
        return Progress(
            time_s=self.time_s, buffer_s=self.buffer_s, segment_index=fetch.segment_index, quality=fetch.quality,
            bytes_received=bytes_received, size_bytes=size_bytes, elapsed_s=elapsed_s, ladder=self.ladder,
            next_sizes_bytes=self.content.upcoming(fetch.segment_index, self.config.lookahead_segments),
            ttfb_s=ttfb_s,
        )

    def _require_in_flight(self) -> Fetch:
        if self._in_flight is None:
            raise RuntimeError("no fetch in flight")
        return self._in_flight

    # -- completions --------------------------------------------------------------------------------

    def on_download(self, now_s: float, *, size_bytes: int, ttfb_s: float = 0.0,
                    media_duration_s: float | None = None) -> SegmentRecord:
        """The in-flight segment arrived completely at `now_s`."""
        fetch = self._require_in_flight()
        self.advance(now_s)
        duration_s = now_s - self._request_time_s
        download = Download(segment_index=fetch.segment_index, quality=fetch.quality, size_bytes=size_bytes,
                            duration_s=duration_s, ttfb_s=ttfb_s, start_time_s=self._request_time_s)
        self._downloads.append(download)
        self.buffer_s += self.ladder.segment_duration_s if media_duration_s is None else media_duration_s
        record = SegmentRecord(
            segment_index=fetch.segment_index, quality=fetch.quality,
            bitrate_bps=self.ladder.bitrates_bps[fetch.quality], size_bytes=size_bytes,
            request_time_s=self._request_time_s, download_s=duration_s, ttfb_s=ttfb_s,
            rebuffer_s=self._rebuffer_since_request_s, buffer_before_s=self._buffer_at_request_s,
            buffer_after_s=self.buffer_s, wait_s=self._waited_s, reason=fetch.decision.reason,
        )
        self.records.append(record)
        self._waited_s = 0.0
        self._rebuffer_since_request_s = 0.0  # stalls of abandoned or failed attempts stay with their segment
        self._in_flight = None
        self.last_quality = fetch.quality
        self.next_segment = fetch.segment_index + 1
        self._event("download", segment=fetch.segment_index, quality=fetch.quality, size_bytes=size_bytes,
                    download_s=duration_s, ttfb_s=ttfb_s, buffer_s=self.buffer_s, rebuffer_s=record.rebuffer_s)
        if not self.started and self.buffer_s >= self.config.startup_threshold_s:
            self.started = True
            self.startup_s = now_s
            self._event("play", startup_s=now_s)
        elif self.stalled and (self.buffer_s >= self._resume_threshold_s or self.next_segment >= self.segment_count):
            self.stalled = False
            self._event("resume", playhead_s=self.playhead_s)
        return record

    def on_abandon(self, now_s: float, *, bytes_received: int, ttfb_s: float = 0.0) -> None:
        """The in-flight download was given up (too slow); the segment will be decided again."""
        fetch = self._require_in_flight()
        self.advance(now_s)
        self._downloads.append(Download(
            segment_index=fetch.segment_index, quality=fetch.quality, size_bytes=bytes_received,
            duration_s=now_s - self._request_time_s, ttfb_s=ttfb_s, start_time_s=self._request_time_s,
            abandoned=True))
        self._in_flight = None
        self._event("abandon", segment=fetch.segment_index, quality=fetch.quality, bytes_received=bytes_received)

    def on_failure(self, now_s: float, reason: str) -> None:
        """The in-flight fetch failed for good (after the driver's retries); it will be decided again."""
        fetch = self._require_in_flight()
        self.advance(now_s)
        self._in_flight = None
        self._event("failure", segment=fetch.segment_index, quality=fetch.quality, reason=reason)

    def seek(self, now_s: float, position_s: float) -> None:
        """Jump to media time `position_s`: the buffer is flushed and fetching restarts there."""
        if self._in_flight is not None:
            raise RuntimeError("abort the in-flight fetch (on_abandon) before seeking")
        self.advance(now_s)
        duration = self.ladder.segment_duration_s
        segment = max(0, min(int(position_s // duration), self.segment_count - 1))
        self.next_segment = segment
        self.playhead_s = segment * duration
        self.buffer_s = 0.0
        self._pending = None
        if self.started:
            self.stalled = True
            self._resume_threshold_s = max(self.config.startup_threshold_s, self.config.rebuffer_resume_s)
        self._event("seek", position_s=position_s, segment=segment)

    def set_paused(self, now_s: float, paused: bool) -> None:
        self.advance(now_s)
        self.paused = paused

    @property
    def finished(self) -> bool:
        return self.next_segment >= self.segment_count and self._in_flight is None

    @property
    def events(self) -> list[SessionEvent]:
        """The events kept with `record_events` (empty without it)."""
        return self.recorded.events if self.recorded is not None else []

    def _event(self, kind: SessionEventKind, **data: object) -> None:
        if self._sink is not None:
            self._sink.emit(SessionEvent(time_s=self.time_s, kind=kind, data=data))
