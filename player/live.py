"""Live playback in the sans-I/O session: availability, the latency target, rate control, seek to live.

`LiveSession` is a `PlaybackSession` that plays a live channel. Its driver (the simulator, later the
headless player) only has to tell it what the channel publishes (`LiveSchedule`: when segment k, or
chunk c of it, becomes available on the session clock; `update_schedule` when a manifest refresh or a
clock sync says otherwise), advance the clock, report chunks and downloads as they arrive, and play
at `playback_rate`. The session joins at the live edge minus the target latency, never asks for a
segment (or, in low-latency mode, its first chunk) before it exists (it answers `Wait` until then),
drains the buffer at the playback rate, steers latency toward the target with dash.js's catch-up
rule within [min_rate, max_rate], and jumps back to the live edge when latency drifts too far.
Latency is wall-clock latency as dash.js reports it: session time since the channel started minus
the media time being shown.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Literal

from abr.estimators import sample_bps
from abr.types import AbrAlgorithm, Observation, Progress
from player.events import EventSink
from player.session import Action, PlaybackSession, SegmentRecord, SegmentSource, SessionConfig, Wait
from player.timeline import MediaType

__all__ = ["ABANDON_CHECK_BYTES", "ABANDON_CHECK_S", "LiveConfig", "LiveSchedule", "LiveSession", "LiveStats",
           "catchup_rate"]

# How often a driver offers an abandonable download to the ABR: Sabre's NetworkModel checks, as the
# VOD simulator's defaults (SimProfile.abandon_check_s / abandon_check_bytes).
ABANDON_CHECK_S = 0.05
ABANDON_CHECK_BYTES = 1500


@dataclass(frozen=True, kw_only=True, slots=True)
class LiveConfig:
    """Live player policy (seconds of session or media time). The defaults are dash.js's low-latency
    settings: `liveCatchup.minDrift` 0.02 s and a rate change applied only when it moves by at least
    0.02 x (max_rate - 1) / 0.5 (`CatchupController`); the rate bounds are the issue's 0.95x-1.05x."""

    target_latency_s: float = 3.0
    min_rate: float = 0.95
    max_rate: float = 1.05
    # Latency beyond target + this: seek back to the live edge (dash.js liveCatchup.maxDrift; inf: never).
    max_drift_s: float = 6.0
    min_drift_s: float = 0.02  # within this of the target, play at 1x
    # "default": dash.js's latency-based sigmoid; "lolp": LoL+'s hybrid (slow down first when the
    # buffer is under `playback_buffer_min_s`, else latency-based; dash.js LIVE_CATCHUP_MODE_LOLP)
    catchup: Literal["default", "lolp"] = "default"
    playback_buffer_min_s: float = 0.5

    def __post_init__(self) -> None:
        if not self.target_latency_s > 0:
            raise ValueError(f"target latency must be > 0 s, got {self.target_latency_s}")
        if not 0 < self.min_rate <= 1 <= self.max_rate < 2:
            raise ValueError(f"playback rates need 0 < min_rate <= 1 <= max_rate < 2, got "
                             f"{self.min_rate}..{self.max_rate}")
        if not self.max_drift_s > 0 or self.min_drift_s < 0 or self.playback_buffer_min_s < 0:
            raise ValueError("max drift must be > 0 s; min drift and playback buffer min >= 0 s")
        if self.catchup not in ("default", "lolp"):
            raise ValueError(f"catch-up mode must be 'default' or 'lolp', got {self.catchup!r}")


@dataclass(frozen=True, kw_only=True, slots=True)
class LiveSchedule:
    """When a live channel's media becomes available, on the session clock.

    Segment k (media time [k*D, (k+1)*D)) is produced from `availability_start_s` + k*D on; without
    chunks it is available once complete, at ast + (k+1)*D (DASH `availabilityStartTime` plus the
    segment's end); in low-latency mode (`chunk_duration_s`) chunk c of it is available as soon as it
    is made, at ast + k*D + (c+1)*d (`availabilityTimeOffset` = D - d, `availabilityTimeComplete=false`).
    """

    availability_start_s: float
    segment_duration_s: float
    chunk_duration_s: float | None = None

    def __post_init__(self) -> None:
        if not math.isfinite(self.availability_start_s):
            raise ValueError("the availability start must be a finite time")
        if not self.segment_duration_s > 0:
            raise ValueError(f"segment duration must be > 0 s, got {self.segment_duration_s}")
        d = self.chunk_duration_s
        if d is not None:
            count = self.segment_duration_s / d if d > 0 else 0.0
            if not d > 0 or abs(count - round(count)) > 1e-9 or round(count) < 1:
                raise ValueError(f"chunks of {d} s must divide segments of {self.segment_duration_s} s")

    @classmethod
    def from_availability(cls, *, segment: int, chunk: int | None = None, available_at_s: float,
                          segment_duration_s: float, chunk_duration_s: float | None = None) -> LiveSchedule:
        """The schedule in which `segment` (its chunk `chunk` in low-latency mode; the whole segment
        without chunks) became available at `available_at_s` on the session clock: what a driver
        learns from a manifest (DASH: `availabilityStartTime` + the segment's end, less
        `availabilityTimeOffset`; HLS: a segment's `EXT-X-PROGRAM-DATE-TIME` plus its duration)."""
        if segment < 0:
            raise ValueError(f"segment index must be >= 0, got {segment}")
        probe = cls(availability_start_s=0.0, segment_duration_s=segment_duration_s, chunk_duration_s=chunk_duration_s)
        if chunk is not None and not 0 <= chunk < probe.chunks_per_segment:
            raise ValueError(f"chunk {chunk} outside 0..{probe.chunks_per_segment - 1}")
        made_s = probe.chunk_available_s(segment, probe.chunks_per_segment - 1 if chunk is None else chunk)
        return cls(availability_start_s=available_at_s - made_s, segment_duration_s=segment_duration_s,
                   chunk_duration_s=chunk_duration_s)

    @property
    def chunks_per_segment(self) -> int:
        return 1 if self.chunk_duration_s is None else round(self.segment_duration_s / self.chunk_duration_s)

    @property
    def chunk_s(self) -> float:
        return self.segment_duration_s / self.chunks_per_segment

    def chunk_available_s(self, segment: int, chunk: int) -> float:
        """When chunk `chunk` of segment `segment` can be fetched (the whole segment without chunks)."""
        if self.chunk_duration_s is None:
            return self.availability_start_s + (segment + 1) * self.segment_duration_s
        return self.availability_start_s + segment * self.segment_duration_s + (chunk + 1) * self.chunk_s

    def first_available_s(self, segment: int) -> float:
        """When a request for `segment` can first be answered (its first chunk, or the whole of it)."""
        return self.chunk_available_s(segment, 0)

    def complete_s(self, segment: int) -> float:
        return self.availability_start_s + (segment + 1) * self.segment_duration_s

    def edge_s(self, now_s: float) -> float:
        """The live edge: media time up to which the channel has published by `now_s` (whole chunks,
        or whole segments without chunks)."""
        produced = max(0.0, now_s - self.availability_start_s)
        unit = self.chunk_s if self.chunk_duration_s is not None else self.segment_duration_s
        return math.floor(produced / unit + 1e-9) * unit


def catchup_rate(config: LiveConfig, *, latency_s: float, buffer_s: float) -> float:
    """dash.js's catch-up playback rate (`CatchupController._calculateNewPlaybackRateDefault` and
    `_calculateNewPlaybackRateLolP`): a sigmoid of the latency drift, 1 - cpr + 2 cpr / (1 + e^(-5 drift)),
    with cpr the room below 1x (drift < 0) or above it (drift > 0); LoL+ first slows down on a buffer
    under `playback_buffer_min_s`."""
    if config.catchup == "lolp" and buffer_s < config.playback_buffer_min_s:
        cpr = 1.0 - config.min_rate
        return 1.0 - cpr + 2 * cpr / (1 + math.exp(-5 * (buffer_s - config.playback_buffer_min_s)))
    drift = latency_s - config.target_latency_s
    if abs(drift) <= config.min_drift_s:
        return 1.0
    cpr = (1.0 - config.min_rate) if drift < 0 else (config.max_rate - 1.0)
    return 1.0 - cpr + 2 * cpr / (1 + math.exp(-5 * drift))


@dataclass(frozen=True, kw_only=True, slots=True)
class LiveStats:
    """What a live session measured. Latency percentiles are over session time while playing."""

    join_s: float | None  # from the first request to the first frame
    latency_p50_s: float
    latency_p95_s: float
    latency_max_s: float
    latency_mean_s: float
    drift_mean_s: float  # mean |latency - target|
    rate_changes: int
    seeks_to_live: int
    stalls: int
    rebuffer_s: float
    time_at_rate_s: dict[str, float]  # seconds below 1x ("slow"), at 1x ("normal") and above ("fast")

    def as_dict(self) -> dict[str, object]:
        return {name: getattr(self, name) for name in self.__slots__}  # type: ignore[attr-defined]


class LiveSession(PlaybackSession):
    """A `PlaybackSession` on a live channel (video, and audio cut at the video's segments: both
    pipelines join, seek and follow the one schedule). Besides the session's calls, a driver
    reports chunks of a low-latency download as they arrive (`on_chunk`, before `on_download` for
    the segment's end) and plays at `playback_rate`."""

    def __init__(self, abr: AbrAlgorithm, content: SegmentSource, config: SessionConfig | None = None, *,
                 live: LiveConfig, schedule: LiveSchedule, record_events: bool = False,
                 sink: EventSink | None = None) -> None:
        super().__init__(abr, content, config, record_events=record_events, sink=sink)
        for media, pipe in self._pipes.items():
            uniform = pipe.timeline.uniform_s
            if uniform is None or abs(uniform - schedule.segment_duration_s) > 1e-9:
                raise ValueError(f"the live schedule's {schedule.segment_duration_s} s segments do not match the "
                                 f"{media} timeline ({uniform} s): live audio must be cut at the video's segments")
        self.live = live
        self.schedule = schedule
        self.playback_rate = 1.0
        self.joined_at_s: float | None = None
        self.seeks_to_live = 0
        self.rate_changes = 0
        # (session time, latency s, playback rate) after each advance while playing
        self.latency_samples: list[tuple[float, float, float]] = []
        # per video record: latency and playback rate when it arrived (for the live QoE)
        self.record_latency_s: list[float] = []
        self.record_rate: list[float] = []
        # per video record: the throughput sample the ABR took from it (`abr.estimators.sample_bps`:
        # over the chunks' active time in low-latency mode, else over the request time)
        self.record_sample_bps: list[float | None] = []
        # per media type: media of the in-flight segment already added by chunks
        self._delivered_s: dict[MediaType, float] = {media: 0.0 for media in self._pipes}
        self._seek_due = False

    # -- the live edge --------------------------------------------------------------------------------

    @property
    def latency_s(self) -> float:
        """Wall-clock latency now: media the channel made since it started minus the media shown."""
        return self.time_s - self.schedule.availability_start_s - self.playhead_s

    def update_schedule(self, schedule: LiveSchedule) -> None:
        """A manifest refresh or a clock sync moved the channel's times (same segment duration)."""
        if abs(schedule.segment_duration_s - self.schedule.segment_duration_s) > 1e-9:
            raise ValueError("a live channel's segment duration cannot change mid-session")
        self.schedule = schedule

    def on_available(self, *, segment: int, chunk: int | None = None, available_at_s: float) -> None:
        """The driver saw `segment` (its chunk `chunk`) become available at `available_at_s` on the
        session clock (a manifest refresh, a playlist part, a 200 where a 404 was): the schedule
        follows it, its segment and chunk durations unchanged."""
        self.update_schedule(LiveSchedule.from_availability(
            segment=segment, chunk=chunk, available_at_s=available_at_s,
            segment_duration_s=self.schedule.segment_duration_s, chunk_duration_s=self.schedule.chunk_duration_s))

    def _live_position_s(self) -> float:
        """Where a join or a seek to live puts the playhead: the channel's time now minus the target
        latency (dash.js: the DVR window's end minus the live delay), at the nearest boundary of what
        the channel publishes (a chunk, or a whole segment). Not the published edge less the target,
        which starts up to a unit over the target (a whole 4 s segment: 2 s on average); not the exact
        point either, which can leave a few tenths of a second of a whole segment to play while the
        next one downloads (a stall at the join). Nor a chunk boundary that leaves only its segment's
        last chunk to play: the next segment's first chunk, which carries its keyframe (1.3-1.4x a
        later chunk), would have to cross in one chunk's time, so a rung chosen at the link's rate
        stalls. That position moves to the next segment's start, a chunk nearer the edge, where that
        chunk is made (docs/LIVE-SIM.md, "The join's last chunk")."""
        schedule = self.schedule
        unit = schedule.chunk_s if schedule.chunk_duration_s is not None else schedule.segment_duration_s
        now = self.time_s - schedule.availability_start_s
        position = max(0.0, math.floor((now - self.live.target_latency_s) / unit + 0.5) * unit)
        if schedule.chunk_duration_s is None:
            return position
        segment_d = schedule.segment_duration_s
        next_start = (math.floor(position / segment_d + 1e-9) + 1) * segment_d
        if next_start - position <= unit + 1e-9 and now - next_start >= unit - 1e-9:
            return next_start
        return position

    def _go_to(self, position_s: float) -> int:
        """Put the playhead at `position_s`, each media type's next fetch at its segment holding it;
        the media of that segment before the playhead does not count (a negative level until it
        arrives). Returns the video segment."""
        self.playhead_s = position_s
        for pipe in self._pipes.values():
            index = max(0, min(pipe.timeline.index_at(position_s), pipe.segment_count - 1))
            pipe.next_segment = index
            pipe.level_s = min(0.0, pipe.timeline.start_s(index) - position_s)
            pipe.pending = None
        return self._video.next_segment

    def _join(self) -> None:
        self.joined_at_s = self.time_s
        position = min(self._live_position_s(), self._video.timeline.start_s(self.segment_count - 1))
        segment = self._go_to(position)
        self._event("seek", position_s=position, segment=segment, reason="join at live edge - target latency")

    def _seek_to_live(self) -> None:
        """Jump to the live edge minus the target: within the buffer by dropping what lies before the
        new position, else by flushing it and fetching from the segment that holds the position. Near
        the end of the content (nothing past it to fetch) the session plays on instead."""
        position = self._live_position_s()
        ahead_s = position - self.playhead_s
        video = self._video
        if ahead_s <= 0 or position >= video.timeline.end_s:
            return
        if ahead_s < self.buffer_s:  # every media type holds the new position
            self._drain(ahead_s)
            self.playhead_s = position
            segment = video.next_segment
        else:
            self.seek(self.time_s, position)  # flushes the buffer, stalls until data comes (a started session)
            segment = self._go_to(position)
        self._seek_due = False  # the seek's own advance saw the latency from before it
        self.seeks_to_live += 1
        self._set_rate(1.0)
        self._event("seek", position_s=position, segment=segment, reason="latency past target + max drift")

    # -- actions --------------------------------------------------------------------------------------

    def next_action(self, media: MediaType = "video") -> Action:
        if self.joined_at_s is None:
            self._join()
        elif self._seek_due and not any(p.in_flight for p in self._pipes.values()):
            self._seek_due = False  # a seek waits for no download in flight (audio's included)
            self._seek_to_live()
        pipe = self._pipe(media)
        if pipe.in_flight is None and pipe.pending is None and pipe.next_segment < pipe.segment_count:
            available = self.schedule.first_available_s(pipe.next_segment)
            if available > self.time_s:
                reason = f"segment {pipe.next_segment} not available yet"
                self._event("wait", pipe=pipe, duration_s=available - self.time_s, reason=reason)
                return Wait(duration_s=available - self.time_s, reason=reason)
        return super().next_action(media)

    def observation(self) -> Observation:
        """The session's observation with the live latency and playback rate. Right after a join or a
        seek to live the video level is negative (the part of the segment before the playhead); the
        ABR sees an empty buffer then."""
        obs = super().observation()
        return replace(obs, buffer_s=max(obs.buffer_s, 0.0), latency_s=self.latency_s, playback_rate=self.playback_rate)

    # -- time -----------------------------------------------------------------------------------------

    def advance(self, now_s: float) -> None:
        """Let time pass: the buffer drains at the playback rate; once dry, the rest is a stall (at 1x)."""
        rate = self.playback_rate
        if rate != 1.0 and self.started and not self.stalled and not self.paused and now_s > self.time_s:
            playable = self.buffer_s
            media_s = (now_s - self.time_s) * rate
            if playable >= media_s:
                self._drain(media_s)
                self.playhead_s += media_s
                self.time_s = now_s
            else:  # plays out what it has at this rate, then stalls (PlaybackSession accounts the stall)
                self._drain(playable)
                self.playhead_s += playable
                self.time_s = min(now_s, self.time_s + playable / rate)
                super().advance(now_s)
        else:
            super().advance(now_s)
        self._control()

    def _control(self) -> None:
        """After time passed: sample latency, pick the playback rate, flag a seek to live if far behind."""
        if not self.started or self.paused:
            return
        latency = self.latency_s
        self.latency_samples.append((self.time_s, latency, self.playback_rate))
        if latency - self.live.target_latency_s > self.live.max_drift_s:
            self._seek_due = True
        if self.stalled:
            self._set_rate(1.0)  # dash.js: no catch-up while the buffer recovers from a stall
            return
        rate = min(self.live.max_rate, max(self.live.min_rate,
                                           catchup_rate(self.live, latency_s=latency, buffer_s=self.buffer_s)))
        min_change = 0.02 * max(self.live.max_rate - 1.0, 1.0 - self.live.min_rate) / 0.5
        if abs(rate - self.playback_rate) >= min_change or (rate == 1.0 and self.playback_rate != 1.0):
            self._set_rate(rate)

    def _set_rate(self, rate: float) -> None:
        if rate != self.playback_rate:
            self.playback_rate = rate
            self.rate_changes += 1
            self._event("rate", playback_rate=rate, latency_s=self.latency_s)

    # -- arrivals -------------------------------------------------------------------------------------

    def on_chunk(self, now_s: float, *, size_bytes: int, media_duration_s: float, media: MediaType = "video") -> None:
        """A chunk of the in-flight segment arrived completely at `now_s`: its media is playable now."""
        pipe = self._pipe(media)
        fetch = pipe.require_in_flight()
        self.advance(now_s)
        if self._delivered_s[media] + media_duration_s > pipe.timeline.duration_s(fetch.segment_index) + 1e-9:
            raise ValueError(f"chunks of segment {fetch.segment_index} add up to more than the segment")
        self._delivered_s[media] += media_duration_s
        pipe.level_s += media_duration_s
        self._event("chunk", segment=fetch.segment_index, size_bytes=size_bytes, buffer_s=pipe.level_s)
        self._playable_now(now_s)

    def on_download(self, now_s: float, *, size_bytes: int, ttfb_s: float = 0.0,
                    media_duration_s: float | None = None, media: MediaType = "video",
                    active_s: float | None = None) -> SegmentRecord:
        """The in-flight segment is complete at `now_s` (`size_bytes` in all, chunks included). With
        chunks reported, the rest of the segment's media is added; `active_s` is the time the network
        was delivering it (`abr.estimators.chunk_active_s`), kept in the download history."""
        pipe = self._pipe(media)
        fetch = pipe.require_in_flight()
        whole = pipe.timeline.duration_s(fetch.segment_index) if media_duration_s is None else media_duration_s
        rest = max(0.0, whole - self._delivered_s[media])
        self._delivered_s[media] = 0.0
        record = super().on_download(now_s, size_bytes=size_bytes, ttfb_s=ttfb_s, media_duration_s=rest, media=media)
        if active_s is not None:
            pipe.downloads[-1] = replace(pipe.downloads[-1], active_s=active_s)
        if media == "video":
            self.record_latency_s.append(self.latency_s)
            self.record_rate.append(self.playback_rate)
            self.record_sample_bps.append(sample_bps(pipe.downloads[-1]))
        self._playable_now(now_s)
        return record

    def throughput_p50_bps(self) -> float | None:
        """The median of the ABR's throughput samples so far (`record_sample_bps`; None: none yet)."""
        samples = sorted(x for x in self.record_sample_bps if x is not None)
        return samples[len(samples) // 2] if samples else None

    @property
    def abandonable(self) -> bool:
        """Whether a driver offers the in-flight download to the ABR's `should_abandon`, as in VOD
        (the simulator and the headless player ask the same, at the same checks): a whole segment
        may be abandoned and fetched again lower; a low-latency segment is not, since its chunks
        play as they arrive and its request waits for chunks not made yet (its bytes over its time
        are not the link's, so the rule would read the encoder as a slow network)."""
        return self.schedule.chunk_duration_s is None and self._delivered_s["video"] == 0

    def progress(self, *, bytes_received: int, size_bytes: int, elapsed_s: float,
                 ttfb_s: float | None = None, media: MediaType = "video") -> Progress:
        """As the VOD session's, with the buffer the ABR sees in `observation` (>= 0 after a join)."""
        progress = super().progress(bytes_received=bytes_received, size_bytes=size_bytes, elapsed_s=elapsed_s,
                                    ttfb_s=ttfb_s, media=media)
        return replace(progress, buffer_s=max(progress.buffer_s, 0.0))

    def on_abandon(self, now_s: float, *, bytes_received: int, ttfb_s: float = 0.0, media: MediaType = "video") -> None:
        if self._delivered_s[media]:
            raise RuntimeError("a low-latency download whose chunks are playing cannot be abandoned")
        super().on_abandon(now_s, bytes_received=bytes_received, ttfb_s=ttfb_s, media=media)

    def _playable_now(self, now_s: float) -> None:
        """Start or resume playback once every media type has data (what `on_download` does per segment)."""
        playable = self.buffer_s
        if not self.started and playable >= self.config.startup_threshold_s and playable > 0:
            self.started = True
            self.startup_s = now_s
            self._event("play", startup_s=now_s)
        elif self.stalled and playable >= self._resume_threshold_s and playable > 0:
            self.stalled = False
            self._event("resume", playhead_s=self.playhead_s)

    # -- report ---------------------------------------------------------------------------------------

    def stats(self) -> LiveStats:
        """Latency, join, drift, rate and stall figures so far."""
        samples = self.latency_samples
        join = None if self.startup_s is None or self.joined_at_s is None else self.startup_s - self.joined_at_s
        if len(samples) < 2:
            nan = math.nan
            return LiveStats(join_s=join, latency_p50_s=nan, latency_p95_s=nan, latency_max_s=nan, latency_mean_s=nan,
                             drift_mean_s=nan, rate_changes=self.rate_changes, seeks_to_live=self.seeks_to_live,
                             stalls=self.stall_count, rebuffer_s=self.total_rebuffer_s, time_at_rate_s={})
        # Time-weighted: each interval between samples counts with the latency at its end (during a
        # stall latency only grows, so the end is the interval's worst).
        weights = [b[0] - a[0] for a, b in zip(samples, samples[1:])]
        values = [s[1] for s in samples[1:]]
        total = sum(weights) or 1.0

        def percentile(q: float) -> float:
            acc = 0.0
            for value, weight in sorted(zip(values, weights)):
                acc += weight
                if acc >= q * total:
                    return value
            return max(values)

        at_rate = {"slow": 0.0, "normal": 0.0, "fast": 0.0}
        for (t0, _, rate), (t1, _, _) in zip(samples, samples[1:]):
            at_rate["slow" if rate < 1 else "fast" if rate > 1 else "normal"] += t1 - t0
        target = self.live.target_latency_s
        return LiveStats(
            join_s=join, latency_p50_s=percentile(0.5), latency_p95_s=percentile(0.95), latency_max_s=max(values),
            latency_mean_s=sum(v * w for v, w in zip(values, weights)) / total,
            drift_mean_s=sum(abs(v - target) * w for v, w in zip(values, weights)) / total,
            rate_changes=self.rate_changes, seeks_to_live=self.seeks_to_live, stalls=self.stall_count,
            rebuffer_s=self.total_rebuffer_s, time_at_rate_s=at_rate)
