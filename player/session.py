"""The playback state machine shared by the simulator, the headless player and the desktop player.

Sans-I/O: `PlaybackSession` never touches a socket or a clock. A driver asks it what to do next
(`next_action`), performs the fetch or the wait on its own clock (virtual or real), and reports back
(`on_download`, `advance`). The session owns the buffers, the playhead, the ABR calls and the QoE
accounting, so a session behaves the same whoever drives it.

Content with audio has two pipelines, one per media type, each with its own buffer, segment
timeline and at most one fetch in flight; a driver runs them side by side (`next_action(media)`;
`Hold` keeps audio within a segment of the video's download frontier).
Playback advances only while every media type still to come has data: the playable buffer is the
minimum over them, and stalls and QoE are accounted on it. The ABR decides video quality as it
always did; the audio rendition comes from `abr.audio` (the ABR's `decide_audio` if it has one).
"""

from __future__ import annotations

import math
import operator
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Literal, Protocol

from abr.audio import AudioAware, choose_audio, throughput_estimate_bps
from abr.types import AbrAlgorithm, Decision, Download, Ladder, Observation, Progress, check_ladder, positional_maker
from player.events import EventList, EventSink, LiveEventKind, SessionEvent, SessionEventKind
from player.timeline import MediaSource, MediaType, Timeline

__all__ = ["Action", "Fetch", "Finished", "Hold", "MediaSource", "MediaType", "PlaybackSession", "SegmentRecord",
           "SegmentSource", "SessionConfig", "SessionEvent", "Timeline", "Wait"]


# Audio segments start up to an audio frame off the video's boundaries (1024 AAC samples: 21-23 ms;
# HE-AAC twice that), and where a title's audio starts depends on whether its priming samples are
# counted: an audio segment starting within this of the video's frontier is not ahead of it.
ALIGNMENT_TOLERANCE_S = 0.1


class SegmentSource(Protocol):
    """What the session needs to know about the content: a ladder, a count and (optional) sizes.

    This is the video. A content object may also have `timeline` (a `Timeline` of the video segments;
    default: every segment `ladder.segment_duration_s` long) and `audio` (a `MediaSource`, or None for
    a title without audio); the session reads both with `getattr`.
    """

    @property
    def ladder(self) -> Ladder: ...

    @property
    def segment_count(self) -> int: ...

    def upcoming(self, segment_index: int, count: int) -> tuple[tuple[int, ...], ...]: ...


@dataclass(frozen=True, kw_only=True, slots=True)
class SessionConfig:
    """Player policy. Times in seconds of media or session time."""

    startup_threshold_s: float = 0.0  # start playing once this much is buffered (and >= 1 segment)
    buffer_cap_s: float = 60.0  # do not fetch while the buffer holds more than this (per media type; see `cap_rule`)
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
    """Download segment `segment_index` of `media` at `quality` (a video quality, or an audio rendition
    index into the audio ladder)."""

    segment_index: int
    quality: int
    decision: Decision
    media: MediaType = "video"


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
    """Every segment (of the media type asked about) is fetched; with nothing left to fetch anywhere,
    playback ends `remaining_s` after now (the buffer plays out)."""

    remaining_s: float


@dataclass(frozen=True, kw_only=True, slots=True)
class Hold:
    """Nothing to fetch for this media type until another pipeline moves on: audio keeps within one
    segment of the video's download frontier (as hls.js's audio stream controller does), so it never
    takes the link from the video to fill a buffer of its own far ahead; and a pipeline over its cap
    while nothing plays (before startup, in a stall, paused) waits for the other pipeline's download
    instead of polling. Ask again once another pipeline's fetch begins or completes. A video-only
    session never holds."""

    reason: str


Action = Fetch | Wait | Finished | Hold


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
    # Stall time since this media type's previous segment arrived (after startup; the stalls of
    # abandoned or failed attempts stay with the segment that finally arrives).
    rebuffer_s: float
    buffer_before_s: float  # this media type's buffer when the request was made
    buffer_after_s: float  # after the segment was added
    wait_s: float  # time waited before the request (buffer cap or ABR delay)
    reason: str
    media: MediaType = "video"


# The per-segment records, built without the frozen __init__'s keyword parsing (`positional_maker`):
# the simulator makes an observation, a fetch, a download and a record per segment of every session.
_observation = positional_maker(Observation, "time_s", "buffer_s", "segment_index", "segment_count", "ladder",
                                "last_quality", "downloads", "next_sizes_bytes", "rebuffering", "buffer_cap_s",
                                "next_quality")
_fetch = positional_maker(Fetch, "segment_index", "quality", "decision", "media")
_download = positional_maker(Download, "segment_index", "quality", "size_bytes", "duration_s", "ttfb_s",
                             "start_time_s")
_record = positional_maker(SegmentRecord, "segment_index", "quality", "bitrate_bps", "size_bytes", "request_time_s",
                           "download_s", "ttfb_s", "rebuffer_s", "buffer_before_s", "buffer_after_s", "wait_s",
                           "reason", "media")


class _Pipeline:
    """One media type's state: its buffer level, its next segment and its one fetch in flight."""

    __slots__ = ("media", "ladder", "segment_count", "timeline", "upcoming", "level_s", "next_segment",
                 "last_quality", "decided_quality", "pending", "in_flight", "request_time_s",
                 "buffer_at_request_s", "rebuffer_since_request_s", "waited_s", "downloads", "records")

    def __init__(self, media: MediaType, ladder: Ladder, segment_count: int, timeline: Timeline,
                 upcoming: Callable[[int, int], tuple[tuple[int, ...], ...]], history_len: int) -> None:
        if segment_count < 1:
            raise ValueError(f"the {media} has no segments")
        if len(timeline) < segment_count:
            raise ValueError(f"the {media} timeline has {len(timeline)} segments, fewer than its {segment_count}")
        self.media: MediaType = media
        self.ladder = ladder
        self.segment_count = segment_count
        self.timeline = timeline
        self.upcoming = upcoming
        self.level_s = 0.0  # media buffered ahead of the playhead (<= 0 right after a seek: see seek())
        self.next_segment = 0
        self.last_quality: int | None = None
        self.decided_quality: int | None = None  # of the latest decision (the audio rule reads the video's)
        self.pending: Fetch | None = None  # decided but delayed fetch
        self.in_flight: Fetch | None = None
        self.request_time_s = 0.0
        self.buffer_at_request_s = 0.0
        self.rebuffer_since_request_s = 0.0
        self.waited_s = 0.0
        self.downloads: deque[Download] = deque(maxlen=history_len)
        self.records: list[SegmentRecord] = []

    @property
    def ended(self) -> bool:
        """Every segment of this media type is in: it no longer limits playback."""
        return self.next_segment >= self.segment_count and self.in_flight is None

    def require_in_flight(self) -> Fetch:
        if self.in_flight is None:
            raise RuntimeError(f"no fetch in flight ({self.media})")
        return self.in_flight


def cap_excess_s(buffer_s: float, config: SessionConfig, segment_duration_s: float) -> float:
    """How far the buffer is past the point where the cap rule lets the next request go (<= 0: go now).

    Under "room" the excess is at most the buffer itself: a cap shorter than a segment never waits on
    an empty buffer."""
    if config.cap_rule == "room":
        return min(buffer_s + segment_duration_s - config.buffer_cap_s, buffer_s)
    return buffer_s - config.buffer_cap_s


class PlaybackSession:
    """Buffers, playhead, ABR calls and QoE accounting for one viewing session.

    Events (`player.events`) go to `sink` (a driver passes the sink its own events go to), or with
    `record_events` to an in-memory `EventList` read back as `events`; with neither, none are made.
    In a session with audio, the pipeline events (decision, wait, download, abandon, failure) carry
    `media` ("video" or "audio"); a video-only session's events are as they always were.
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
        timeline = getattr(content, "timeline", None)
        if timeline is None:
            timeline = Timeline.uniform(self.ladder.segment_duration_s, self.segment_count)
        history = self.config.history_len
        self._video = _Pipeline("video", self.ladder, self.segment_count, timeline, content.upcoming, history)
        self._pipes: dict[MediaType, _Pipeline] = {"video": self._video}
        audio: MediaSource | None = getattr(content, "audio", None)
        if audio is not None:
            self._pipes["audio"] = _Pipeline("audio", audio.ladder, audio.segment_count, audio.timeline,
                                             audio.upcoming, history)
        self.media_types: tuple[MediaType, ...] = tuple(self._pipes)
        self._single = audio is None
        self._top = self.ladder.top
        self._upcoming_quality_of = getattr(content, "upcoming_quality", None)
        self.audio_ladder: Ladder | None = audio.ladder if audio is not None else None
        # With audio, stalls may fall while no video request is in flight (audio is what is missing):
        # each video record then carries the stalls since the previous one, so the records add up.
        self._carry_stalls = audio is not None
        self.recorded: EventList | None = EventList() if record_events else None
        self._sink: EventSink | None = sink if sink is not None else self.recorded
        self.records: list[SegmentRecord] = self._video.records  # the video segments: QoE is computed on them
        self.audio_records: list[SegmentRecord] = self._pipes["audio"].records if audio is not None else []
        self.time_s = 0.0
        self.playhead_s = 0.0  # media time being shown
        self.started = False  # playback has begun (startup over)
        self.stalled = False
        self.startup_s: float | None = None
        self.total_rebuffer_s = 0.0
        self.stall_count = 0
        self.paused = False
        self._resume_threshold_s = 0.0

    # -- buffers ----------------------------------------------------------------------------------

    @property
    def buffer_s(self) -> float:
        """The playable buffer: media every media type still to come has ahead of the playhead (the
        minimum over them; a media type whose segments are all in stops limiting it)."""
        if self._single:
            return self._video.level_s
        limiting = [p.level_s for p in self._pipes.values() if not p.ended]
        return min(limiting) if limiting else max(p.level_s for p in self._pipes.values())

    @buffer_s.setter
    def buffer_s(self, value: float) -> None:
        """Set the video buffer (for tests that put a video-only session in a given state)."""
        self._video.level_s = value

    def buffer_level_s(self, media: MediaType) -> float:
        """How much of `media` is buffered ahead of the playhead (s)."""
        return self._pipe(media).level_s

    @property
    def buffer_levels_s(self) -> dict[MediaType, float]:
        return {media: pipe.level_s for media, pipe in self._pipes.items()}

    @property
    def next_segment(self) -> int:
        """The next video segment to fetch."""
        return self._video.next_segment

    @property
    def last_quality(self) -> int | None:
        """The quality of the last video segment fetched."""
        return self._video.last_quality

    def next_segment_of(self, media: MediaType) -> int:
        return self._pipe(media).next_segment

    def segment_count_of(self, media: MediaType) -> int:
        return self._pipe(media).segment_count

    def in_flight(self, media: MediaType) -> Fetch | None:
        return self._pipe(media).in_flight

    def _pipe(self, media: MediaType) -> _Pipeline:
        try:
            return self._pipes[media]
        except KeyError:
            raise ValueError(f"this session has no {media!r} (media types: {', '.join(self._pipes)})") from None

    # -- time -------------------------------------------------------------------------------------

    def advance(self, now_s: float) -> None:
        """Let time pass up to `now_s`: the buffers drain while playing; a dry buffer is a stall."""
        elapsed = now_s - self.time_s
        if elapsed < 0:
            raise ValueError(f"time went backwards: {now_s} < {self.time_s}")
        self.time_s = now_s
        if elapsed == 0 or not self.started or self.paused:
            return
        if self.stalled:
            self._stall(elapsed)
            return
        if self._single:
            video = self._video
            if video.level_s >= elapsed:  # _drain(elapsed), inline: the common case of every step
                video.level_s -= elapsed
                self.playhead_s += elapsed
                return
            playable = video.level_s
        else:
            playable = self.buffer_s
        if playable >= elapsed:
            self._drain(elapsed)
            self.playhead_s += elapsed
        else:
            self.playhead_s += playable
            self._drain(playable)
            short = elapsed - playable
            if self.finished:
                return  # the end of the content, not a stall
            self.stalled = True
            self.stall_count += 1
            self._resume_threshold_s = self.config.rebuffer_resume_s
            self._event("stall", playhead_s=self.playhead_s)
            self._stall(short)

    def _drain(self, seconds: float) -> None:
        if self._single:
            video = self._video
            video.level_s = video.level_s - seconds if video.level_s >= seconds else 0.0
            return
        for pipe in self._pipes.values():
            # A media type that ended may hold less than the others still play (it stops at 0).
            pipe.level_s = pipe.level_s - seconds if pipe.level_s >= seconds else 0.0

    def _stall(self, seconds: float) -> None:
        self.total_rebuffer_s += seconds
        for pipe in self._pipes.values():
            pipe.rebuffer_since_request_s += seconds

    # -- decisions ----------------------------------------------------------------------------------

    def observation(self) -> Observation:
        """What the ABR sees when it chooses the next video segment (its buffer is the video's)."""
        video = self._video
        segment, config = video.next_segment, self.config
        upcoming_quality = self._upcoming_quality_of
        lookahead = config.lookahead_segments
        return _observation(
            self.time_s, video.level_s, segment, self.segment_count, self.ladder, video.last_quality,
            tuple(video.downloads), video.upcoming(segment, lookahead), self.stalled or not self.started,
            config.buffer_cap_s, upcoming_quality(segment, lookahead) if upcoming_quality is not None else (),
        )

    def audio_observation(self) -> Observation:
        """The audio pipeline's observation, as `abr.audio.AudioAware.decide_audio` receives it."""
        audio = self._pipe("audio")
        return Observation(
            time_s=self.time_s, buffer_s=audio.level_s, segment_index=audio.next_segment,
            segment_count=audio.segment_count, ladder=audio.ladder, last_quality=audio.last_quality,
            downloads=tuple(audio.downloads),
            next_sizes_bytes=audio.upcoming(audio.next_segment, self.config.lookahead_segments),
            rebuffering=self.stalled or not self.started, buffer_cap_s=self.config.buffer_cap_s,
        )

    def _upcoming_quality(self) -> tuple[tuple[float, ...], ...]:
        """Per-segment quality scores of the video where the content has them (`Video.upcoming_quality`)."""
        upcoming = self._upcoming_quality_of
        return upcoming(self.next_segment, self.config.lookahead_segments) if upcoming is not None else ()

    def next_action(self, media: MediaType = "video") -> Action:
        """What the driver should do next for `media`. Call again after each of its fetches or waits
        completes; the pipelines of a session with audio run side by side, one fetch in flight each."""
        pipe = self._video if media == "video" else self._pipe(media)
        if pipe.in_flight is not None:
            raise RuntimeError(f"a fetch is in flight ({media}); report it with on_download() first")
        if pipe.next_segment >= pipe.segment_count:
            return Finished(remaining_s=self.buffer_s)
        if pipe.pending is not None:
            fetch, pipe.pending = pipe.pending, None
            return self._begin(pipe, fetch)
        if pipe is not self._video and not self._video.ended:
            frontier_s = self._frontier_s(self._video)
            if pipe.timeline.start_s(pipe.next_segment) > frontier_s + ALIGNMENT_TOLERANCE_S:
                return Hold(reason=f"{media} is a segment ahead of the video (video requested up to {frontier_s:g} s)")
        duration = self._cap_wait_s(pipe)
        if duration > 0 and (not self.started or self.stalled or self.paused):
            # Over the cap while nothing plays: the buffer does not drain, so a timed wait would only
            # poll (once per `duration`, for as long as another pipeline's download takes). What
            # changes it is that download: ask again when another pipeline's fetch ends.
            busy = [p.media for p in self._pipes.values() if p is not pipe and p.in_flight is not None]
            if busy:
                return Hold(reason=f"{media} buffer full and not playing until the {busy[0]} download ends")
        if duration > 0:
            pipe.waited_s += duration
            self._event("wait", pipe=pipe, duration_s=duration, reason="buffer full")
            return Wait(duration_s=duration, reason="buffer full")
        decision = self._decide_video(pipe) if media == "video" else self._decide_audio(pipe)
        pipe.decided_quality = decision.quality
        fetch = _fetch(pipe.next_segment, decision.quality, decision, media)
        if self._sink is not None:  # the event's fields cost time to gather; only a listener pays it
            self._event("decision", pipe=pipe, segment=fetch.segment_index, quality=fetch.quality,
                        reason=decision.reason, buffer_s=pipe.level_s)
        if decision.delay_s > 0:
            pipe.pending = fetch
            pipe.waited_s += decision.delay_s
            self._event("wait", pipe=pipe, duration_s=decision.delay_s, reason="abr delay")
            return Wait(duration_s=decision.delay_s, reason=decision.reason or "abr delay")
        pipe.in_flight = fetch  # _begin(), inline on the path taken once per segment
        pipe.request_time_s = self.time_s
        pipe.buffer_at_request_s = pipe.level_s
        return fetch

    @staticmethod
    def _frontier_s(pipe: _Pipeline) -> float:
        """Media time up to which `pipe` has requested (the end of its segment in flight, else of its
        last segment in)."""
        if pipe.in_flight is not None:
            index = pipe.in_flight.segment_index
            return pipe.timeline.start_s(index) + pipe.timeline.duration_s(index)
        return pipe.timeline.start_s(pipe.next_segment) if pipe.next_segment < len(pipe.timeline) else pipe.timeline.end_s

    def _decide_video(self, pipe: _Pipeline) -> Decision:
        if pipe.next_segment == 0 and self.config.initial_quality is not None:
            quality = min(self.config.initial_quality, self.ladder.top)
            return Decision(quality=quality, reason="initial quality")
        decision = self.abr.decide(self.observation())
        if not 0 <= decision.quality <= self._top:
            raise ValueError(f"{getattr(self.abr, 'name', self.abr)!r} chose quality {decision.quality} "
                             f"outside 0..{self.ladder.top}")
        if not 0 <= decision.delay_s < math.inf:
            raise ValueError(f"{getattr(self.abr, 'name', self.abr)!r} asked for a delay of {decision.delay_s!r} s "
                             f"(must be finite and >= 0)")
        return decision

    def _decide_audio(self, pipe: _Pipeline) -> Decision:
        """The ABR's `decide_audio` if it has one, else `abr.audio.choose_audio` beside the video's choice."""
        if isinstance(self.abr, AudioAware):
            name = getattr(self.abr, "name", self.abr)
            chosen = self.abr.decide_audio(self.audio_observation())
            try:
                quality = operator.index(chosen)
            except TypeError:
                raise ValueError(f"{name!r} decide_audio returned {chosen!r}, not an audio rendition index") from None
            if not 0 <= quality <= pipe.ladder.top:
                raise ValueError(f"{name!r} chose audio rendition {quality} outside 0..{pipe.ladder.top}")
            return Decision(quality=quality, reason=f"audio: chosen by {name}")
        video = self._video
        quality = video.decided_quality
        return choose_audio(pipe.ladder, video_bitrate_bps=None if quality is None else self.ladder.bitrates_bps[quality],
                            estimate_bps=throughput_estimate_bps(video.downloads))

    def _cap_wait_s(self, pipe: _Pipeline) -> float:
        """How long to wait before the next request under the cap rule (0: fetch now).

        The wait is measured on the session clock: a buffer over the cap by less than the clock can
        represent at this time (60.00000000000003 s at t = 364 s) is at the cap. A wait that cannot
        move the clock would otherwise repeat forever.
        """
        config = self.config
        over = (pipe.level_s - config.buffer_cap_s if config.cap_rule == "over"  # cap_excess_s's, inline
                else cap_excess_s(pipe.level_s, config, pipe.ladder.segment_duration_s))
        if over <= 0:
            return 0.0
        quantum = config.sleep_quantum_s
        if quantum > 0:
            return math.ceil(over / quantum) * quantum
        return (self.time_s + over) - self.time_s

    def _begin(self, pipe: _Pipeline, fetch: Fetch) -> Fetch:
        pipe.in_flight = fetch
        pipe.request_time_s = self.time_s
        pipe.buffer_at_request_s = pipe.level_s
        return fetch

    def progress(self, *, bytes_received: int, size_bytes: int, elapsed_s: float,
                 ttfb_s: float | None = None, media: MediaType = "video") -> Progress:
        """An in-flight download's state, for `Abandoning.should_abandon` (`ttfb_s`: once the driver knows it)."""
        pipe = self._pipe(media)
        fetch = pipe.require_in_flight()
        return Progress(
            time_s=self.time_s, buffer_s=pipe.level_s, segment_index=fetch.segment_index, quality=fetch.quality,
            bytes_received=bytes_received, size_bytes=size_bytes, elapsed_s=elapsed_s, ladder=pipe.ladder,
            next_sizes_bytes=pipe.upcoming(fetch.segment_index, self.config.lookahead_segments),
            ttfb_s=ttfb_s,
        )

    # -- completions --------------------------------------------------------------------------------

    def on_download(self, now_s: float, *, size_bytes: int, ttfb_s: float = 0.0,
                    media_duration_s: float | None = None, media: MediaType = "video") -> SegmentRecord:
        """The in-flight `media` segment arrived completely at `now_s` (its duration is the timeline's
        unless the driver knows better: `media_duration_s`)."""
        pipe = self._pipes[media] if media in self._pipes else self._pipe(media)
        fetch = pipe.in_flight
        if fetch is None:
            fetch = pipe.require_in_flight()  # raises
        self.advance(now_s)
        duration_s = now_s - pipe.request_time_s
        index, quality, requested_s = fetch.segment_index, fetch.quality, pipe.request_time_s
        pipe.downloads.append(_download(index, quality, size_bytes, duration_s, ttfb_s, requested_s))
        pipe.level_s += pipe.timeline.duration_s(index) if media_duration_s is None else media_duration_s
        record = _record(index, quality, pipe.ladder.bitrates_bps[quality], size_bytes, requested_s, duration_s, ttfb_s,
                         pipe.rebuffer_since_request_s, pipe.buffer_at_request_s, pipe.level_s, pipe.waited_s,
                         fetch.decision.reason, media)
        pipe.records.append(record)
        pipe.rebuffer_since_request_s = 0.0  # charged; stalls of abandoned or failed attempts stay with their segment
        pipe.waited_s = 0.0
        pipe.in_flight = None
        pipe.last_quality = fetch.quality
        pipe.next_segment = fetch.segment_index + 1
        if self._sink is not None:
            self._event("download", pipe=pipe, segment=fetch.segment_index, quality=fetch.quality,
                        size_bytes=size_bytes, download_s=duration_s, ttfb_s=ttfb_s, buffer_s=pipe.level_s,
                        rebuffer_s=record.rebuffer_s)
        playable = pipe.level_s if self._single else self.buffer_s
        # Every media type still to come must have data (> 0): a video segment alone does not start
        # or resume playback while the audio buffer is dry.
        if not self.started and playable >= self.config.startup_threshold_s and playable > 0:
            self.started = True
            self.startup_s = now_s
            self._event("play", startup_s=now_s)
        elif self.stalled and (playable >= self._resume_threshold_s and playable > 0 or self.finished):
            self.stalled = False
            self._event("resume", playhead_s=self.playhead_s)
        return record

    def on_abandon(self, now_s: float, *, bytes_received: int, ttfb_s: float = 0.0,
                   media: MediaType = "video") -> None:
        """The in-flight download was given up (too slow); the segment will be decided again."""
        pipe = self._pipe(media)
        fetch = pipe.require_in_flight()
        self.advance(now_s)
        pipe.downloads.append(Download(
            segment_index=fetch.segment_index, quality=fetch.quality, size_bytes=bytes_received,
            duration_s=now_s - pipe.request_time_s, ttfb_s=ttfb_s, start_time_s=pipe.request_time_s,
            abandoned=True))
        pipe.in_flight = None
        self._event("abandon", pipe=pipe, segment=fetch.segment_index, quality=fetch.quality,
                         bytes_received=bytes_received)

    def on_failure(self, now_s: float, reason: str, *, media: MediaType = "video") -> None:
        """The in-flight fetch failed for good (after the driver's retries); it will be decided again."""
        pipe = self._pipe(media)
        fetch = pipe.require_in_flight()
        self.advance(now_s)
        pipe.in_flight = None
        self._event("failure", pipe=pipe, segment=fetch.segment_index, quality=fetch.quality, reason=reason)

    def seek(self, now_s: float, position_s: float) -> None:
        """Jump to media time `position_s`: the buffers are flushed and fetching restarts there.

        Playback resumes at the start of the video segment holding `position_s`; each other media
        type restarts at its own segment holding that point, which may start earlier (its level is
        then negative until that segment arrives: the part before the playhead does not count).
        """
        busy = [p.media for p in self._pipes.values() if p.in_flight is not None]
        if busy:
            raise RuntimeError(f"abort the in-flight fetch ({', '.join(busy)}) (on_abandon) before seeking")
        self.advance(now_s)
        video = self._video
        segment = max(0, min(video.timeline.index_at(position_s), self.segment_count - 1))
        self.playhead_s = video.timeline.start_s(segment)
        for pipe in self._pipes.values():
            index = segment if pipe is video else min(pipe.timeline.index_at(self.playhead_s), pipe.segment_count - 1)
            pipe.next_segment = index
            pipe.level_s = 0.0 if pipe is video else min(0.0, pipe.timeline.start_s(index) - self.playhead_s)
            pipe.pending = None
        if self.started:
            self.stalled = True
            self._resume_threshold_s = max(self.config.startup_threshold_s, self.config.rebuffer_resume_s)
        self._event("seek", position_s=position_s, segment=segment)

    def continue_from(self, previous: PlaybackSession) -> None:
        """Go on where `previous` (the session of the preceding DASH Period) ended: its clock, buffer,
        playhead, startup and stall state and download history carry over, so the ABR and the QoE
        accounting see one presentation. Call before this session's first action. Qualities in the
        history become the rungs of this ladder nearest in bitrate; segment indices and records are
        this session's own."""
        if self.records or self.audio_records or self.time_s or any(p.in_flight for p in self._pipes.values()):
            raise RuntimeError("continue_from() must come before the session's first action")
        if not previous.finished:
            raise RuntimeError("the previous session still has segments to fetch")

        def nearest(old: Ladder, new: Ladder, quality: int) -> int:
            bitrate = old.bitrates_bps[quality]
            return min(range(len(new.bitrates_bps)), key=lambda q: abs(new.bitrates_bps[q] - bitrate))

        self.time_s, self.playhead_s = previous.time_s, previous.playhead_s
        self.started, self.stalled, self.paused = previous.started, previous.stalled, previous.paused
        self.startup_s, self.total_rebuffer_s = previous.startup_s, previous.total_rebuffer_s
        self.stall_count, self._resume_threshold_s = previous.stall_count, previous._resume_threshold_s
        for media, pipe in self._pipes.items():
            before = previous._pipes.get(media)
            if before is None:  # a Period that adds audio: its audio starts at the playhead, empty
                continue
            pipe.level_s = before.level_s
            pipe.downloads.extend(replace(d, quality=nearest(before.ladder, pipe.ladder, d.quality))
                                  for d in before.downloads)
            if before.last_quality is not None:
                pipe.last_quality = nearest(before.ladder, pipe.ladder, before.last_quality)

    def set_paused(self, now_s: float, paused: bool) -> None:
        self.advance(now_s)
        self.paused = paused

    def rebuffer_per_segment_s(self) -> list[float]:
        """Each video record's stall time, for QoE. With audio, the stalls since the last video record
        (audio ran dry after the video's last segment arrived) are added to that record, so the list
        adds up to `total_rebuffer_s`; a video-only session's are its records' `rebuffer_s`."""
        out = [r.rebuffer_s for r in self.records]
        if self._carry_stalls and out:
            out[-1] += self._video.rebuffer_since_request_s
        return out

    @property
    def finished(self) -> bool:
        """Every segment of every media type is in."""
        return all(pipe.ended for pipe in self._pipes.values())

    @property
    def events(self) -> list[SessionEvent]:
        """The events kept with `record_events` (empty without it)."""
        return self.recorded.events if self.recorded is not None else []

    def _event(self, kind: SessionEventKind | LiveEventKind, *, pipe: _Pipeline | None = None, **data: object) -> None:
        """Emit `kind`; a pipeline's events name their media type in a session with more than one."""
        if self._sink is not None:
            if pipe is not None and len(self._pipes) > 1:
                data["media"] = pipe.media
            self._sink.emit(SessionEvent(time_s=self.time_s, kind=kind, data=data))
