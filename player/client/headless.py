"""The headless player: drives `PlaybackSession` with real HTTP fetches on a real (or sped-up) clock.

One pipeline per media type, as real players run them: the video pipeline fetches the segments
the ABR decides, the audio pipeline the audio rendition the session's audio rule picks, each on its
own connection with one request in flight (with failover across edges and BaseURLs), each on its
own segment timeline. Arrivals go to the session; the bytes go to the decoder off the event loop.
The ABR object is the registry's, unchanged, so what runs here is what runs in the simulator.

Time: session time = seconds of the fetcher's clock since start x `speed`. The clock is the event
loop's, or in an emulated session the shaper's `netsim.clock.WarpClock`: loop time that stands
still while a request is at the server, so the stack's own time is not trace time at any K. With a
shaper at the same speed (trace K times faster), every duration the ABR sees is in trace seconds,
and the HTTP timeouts run in them too (`player.client.fetch`), so QoE is comparable across K.
On a shaper that holds for its client (`exclude_client_time`), a pipeline tells the clock when it
acts (`Fetcher.acting`/`acted`): deciding and asking take no session time, as in the simulator.
"""

from __future__ import annotations

import asyncio
import contextvars
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from abr.estimators import throughput_bps
from abr.qoe import SessionMetrics, session_metrics
from abr.registry import make
from abr.types import Abandoning, AbrAlgorithm, Ladder
from netsim.clock import sleep_on
from player.client.bootstrap import PlaybackSource, failover_urls, range_header
from player.client.decoding import Decoder
from player.client.eventlog import EventLog
from player.client.fetch import ABANDONED, Abandoned, Fetcher, FetchError
from player.client.mpd import Representation
from player.errors import CliError
from player.events import EventSink, emit_event
from player.media.modes import DECODE_MODES
from player.session import Fetch, Finished, Hold, PlaybackSession, SegmentRecord, SessionConfig, Wait
from player.timeline import MediaType, Timeline
from server.formats.cmcd import cmcd_headers

MAX_REPORTED_ERRORS = 20  # decode errors listed in the JSON report (all go to the event log)
DECODE_ERROR_POLL_S = 0.05  # wall seconds between looks for new decode errors (logged as they happen)


def log_decode_errors(decoder: Decoder | None, events: EventSink, now: Callable[[], float]) -> None:
    """A `decode_error` event for each error the decoder found since the last look (`Decoder.new_errors`)."""
    if decoder is not None:
        for message in decoder.new_errors():
            emit_event(events, now(), "decode_error", message=message)


async def watch_decode_errors(decoder: Decoder | None, events: EventSink, now: Callable[[], float]) -> None:
    """`decode_error` events as the decoder's worker finds them (within `DECODE_ERROR_POLL_S`), until
    cancelled; the player looks once more (`log_decode_errors`) when its session is over. Shared by
    the VOD player and the live ones (`player.client.liveplay`, HLS too), so the log is the same."""
    while decoder is not None:
        log_decode_errors(decoder, events, now)
        await asyncio.sleep(DECODE_ERROR_POLL_S)


class PlaybackError(CliError):
    """Playback stopped for good; the message says which segment and why."""


# Which pipeline a fetch belongs to, for the request counts (each pipeline is its own task; init
# segments and anything else fetched through the player's fetcher count as "other").
_MEDIA: contextvars.ContextVar[str] = contextvars.ContextVar("abrkit_media", default="other")


@dataclass(frozen=True, kw_only=True, slots=True)
class PlayerConfig:
    """Player policy. `speed` scales the clock; decoding never holds up fetching."""

    abr: str = "bba"
    abr_params: Mapping[str, Any] = field(default_factory=dict)
    session: SessionConfig = field(default_factory=SessionConfig)
    speed: float = 1.0
    decode: str = "all"
    audio: bool = True
    max_segments: int | None = None  # stop after this many segments (tests, quick checks)
    max_segment_failures: int = 3  # failed fetches of one segment before playback gives up
    buffer_sample_s: float = 0.5  # session seconds between buffer samples in the event log
    cmcd: bool = True
    abandonment: bool = True  # offer video downloads in flight to an ABR with `should_abandon`

    def __post_init__(self) -> None:
        if not self.speed > 0:
            raise ValueError(f"speed must be > 0, got {self.speed}")
        if self.decode not in DECODE_MODES:
            raise ValueError(f"decode must be one of {', '.join(DECODE_MODES)}, got {self.decode!r}")
        if self.max_segments is not None and self.max_segments < 1:
            raise ValueError("max_segments must be >= 1")
        if self.max_segment_failures < 1 or not self.buffer_sample_s > 0:
            raise ValueError("max_segment_failures must be >= 1 and buffer_sample_s > 0")


def _timeline(rep: Representation, origin_s: float, count: int) -> Timeline:
    """`rep`'s first `count` segments, in seconds from `origin_s` (the first video segment's start)."""
    segments = rep.segments[:count]
    return Timeline([seg.start_s - origin_s for seg in segments], [seg.duration_s for seg in segments])


def distinct_bitrates(reps: Sequence[Representation]) -> list[Representation]:
    """Representations ascending by bandwidth, one per bandwidth (the ladder's steps)."""
    out: dict[int, Representation] = {}
    for rep in sorted(reps, key=lambda r: r.bandwidth_bps):
        out.setdefault(rep.bandwidth_bps, rep)
    return list(out.values())


class AudioContent:
    """The session's view of the audio: renditions, their timeline, sizes from segments.json when
    the server has them (else estimated from the bandwidths)."""

    def __init__(self, source: PlaybackSource, reps: list[Representation], origin_s: float, end_s: float) -> None:
        self.ladder = Ladder(bitrates_bps=tuple(r.bandwidth_bps for r in reps),
                             segment_duration_s=reps[0].segment_duration_s or reps[0].segments[0].duration_s)
        full = _timeline(reps[0], origin_s, min(r.segment_count for r in reps))
        self.segment_count = max(1, full.count_before(end_s))
        self.timeline = _timeline(reps[0], origin_s, self.segment_count)
        known = source.sizes.audio if source.sizes is not None else None
        self._sizes: np.ndarray | None = None
        if known is not None and len(known.ladder) == len(reps) and known.segment_count >= self.segment_count:
            self._sizes = known.sizes_bytes

    def upcoming(self, segment_index: int, count: int) -> tuple[tuple[int, ...], ...]:
        end = min(segment_index + count, self.segment_count)
        if self._sizes is not None:
            return tuple(tuple(row) for row in self._sizes[segment_index:end].tolist())
        return tuple(tuple(int(b * self.timeline.duration_s(i) / 8) for b in self.ladder.bitrates_bps)
                     for i in range(segment_index, end))


class ManifestContent:
    """The session's view of the stream: ladder and sizes from segments.json when the server has
    one (so the ABR sees what the simulator sees), else from the MPD's bandwidths; the video
    segments' timeline; and the audio (`audio`, None without one)."""

    def __init__(self, source: PlaybackSource, video_reps: list[Representation], max_segments: int | None,
                 audio_reps: Sequence[Representation] = ()) -> None:
        count = min(r.segment_count for r in video_reps)
        if count == 0:
            raise PlaybackError("the manifest lists no segments for its video representations")
        sizes = source.sizes
        if sizes is not None and len(sizes.ladder) == len(video_reps) and sizes.segment_count == count:
            self.ladder = sizes.ladder
            self._sizes: np.ndarray | None = sizes.sizes_bytes
        else:
            self.ladder = Ladder(bitrates_bps=tuple(r.bandwidth_bps for r in video_reps),
                                 segment_duration_s=video_reps[0].segment_duration_s or video_reps[0].segments[0].duration_s)
            self._sizes = None
        self.segment_count = min(count, max_segments) if max_segments else count
        origin_s = video_reps[0].segments[0].start_s
        self.timeline = _timeline(video_reps[0], origin_s, self.segment_count)
        playable = [r for r in audio_reps if r.segment_count]
        self.audio = AudioContent(source, list(playable), origin_s, self.timeline.end_s) if playable else None

    def upcoming(self, segment_index: int, count: int) -> tuple[tuple[int, ...], ...]:
        end = min(segment_index + count, self.segment_count)
        if self._sizes is not None:
            return tuple(tuple(row) for row in self._sizes[segment_index:end].tolist())
        estimate = tuple(int(b * self.ladder.segment_duration_s / 8) for b in self.ladder.bitrates_bps)
        return tuple(estimate for _ in range(segment_index, end))


@dataclass(frozen=True, kw_only=True, slots=True)
class PlaybackReport:
    """What happened in one session: QoE metrics, per-segment records, decoding and request counts."""

    title: str
    abr: str
    metrics: SessionMetrics
    records: tuple[SegmentRecord, ...]
    frames_decoded: int
    frames_failed: int
    requests: int
    failed_requests: int
    abandoned: int
    duration_s: float  # session time until the last segment arrived
    first_frame_s: float | None  # session time of the first decoded video frame (None: not decoded)
    bootstrap_s: Mapping[str, float]
    error: str | None = None
    http_counts: Mapping[str, int] = field(default_factory=dict)  # `Fetcher.counts`: redirects, ranges cut...
    decode_errors: tuple[str, ...] = ()  # why segments failed to decode, one line each (the first and last kept)
    decode_error_count: int = 0  # how many failed (more than `decode_errors` lists on a stream that keeps failing)
    periods: int = 1  # DASH Periods played (records and frames cover them all)
    audio_records: tuple[SegmentRecord, ...] = ()  # the audio pipeline's segments (`records` are the video's)
    requests_by_media: Mapping[str, int] = field(default_factory=dict)  # video, audio, other (init segments)
    live: Mapping[str, Any] | None = None  # a live session's figures (player/client/liveplay.py)
    # Wall seconds of the pre-roll (`bootstrap.PREROLL_STEPS`: indexes, license, keys, init segments)
    # and whether `startup_s` counts them (False: session time 0 is the first media request, as in
    # the simulator, for sim comparisons whose pre-roll goes unshaped: `LinkConfig.shape_bootstrap`).
    preroll_s: float = 0.0
    preroll_in_startup: bool = True

    @property
    def qualities(self) -> list[int]:
        return [r.quality for r in self.records]

    def media_summary(self) -> dict[str, dict[str, Any]]:
        """Per media type: segments, bytes, requests, renditions and the buffer after each segment."""
        out: dict[str, dict[str, Any]] = {}
        for media, records in (("video", self.records), ("audio", self.audio_records)):
            if media == "audio" and not records and not self.requests_by_media.get("audio"):
                continue
            out[media] = {
                "segments": len(records), "bytes": sum(r.size_bytes for r in records),
                "requests": self.requests_by_media.get(media, 0), "qualities": [r.quality for r in records],
                "buffer_after_s": [round(r.buffer_after_s, 3) for r in records],
            }
        return out

    def as_dict(self) -> dict[str, Any]:
        out = self.metrics.as_dict()
        out.update({
            "title": self.title, "abr": self.abr, "frames_decoded": self.frames_decoded, "frames_failed": self.frames_failed,
            "requests": self.requests, "failed_requests": self.failed_requests, "abandoned": self.abandoned,
            "duration_s": round(self.duration_s, 4), "first_frame_s": self.first_frame_s,
            "bootstrap_s": dict(self.bootstrap_s), "preroll_s": self.preroll_s,
            "preroll_in_startup": self.preroll_in_startup, "qualities": self.qualities, "error": self.error,
            "http_counts": dict(self.http_counts), "periods": self.periods,
            "decode_errors": list(self.decode_errors[:MAX_REPORTED_ERRORS]),
            "decode_error_count": max(self.decode_error_count, len(self.decode_errors)),
            "requests_by_media": dict(self.requests_by_media), "media": self.media_summary(),
        })
        if self.live is not None:
            out["live"] = dict(self.live)
        return out

    @classmethod
    def not_started(cls, source: PlaybackSource, config: PlayerConfig, ladder_bps: Sequence[float], *,
                    requests: int, failed_requests: int, error: str) -> PlaybackReport:
        """The report of a session that failed before it started (a live join's clock sync or first
        playlists): nothing played, the error says why."""
        metrics = session_metrics(bitrates_bps=[], rebuffer_s=[], ladder_bps=ladder_bps, segment_duration_s=1.0,
                                  startup_s=0.0, rebuffer_count=0)
        return cls(title=source.title, abr=config.abr, metrics=metrics, records=(), frames_decoded=0, frames_failed=0,
                   requests=requests, failed_requests=failed_requests, abandoned=0, duration_s=0.0,
                   first_frame_s=None, bootstrap_s=dict(source.timings_s), error=error)


class HeadlessPlayer:
    """One playback session against real HTTP servers: a pipeline task per media type."""

    def __init__(self, source: PlaybackSource, config: PlayerConfig, fetcher: Fetcher, *,
                 events: EventSink | None = None, decoder: Decoder | None = None,
                 abr: AbrAlgorithm | None = None, interactive: bool = False,
                 on_seek: Callable[[float], object] | None = None) -> None:
        self.source = source
        self.config = config
        self.fetcher = fetcher
        self.events: EventSink = events if events is not None else EventLog()  # session and driver emit here
        manifest = source.manifest
        video = manifest.video
        if video is None or not video.representations:
            raise PlaybackError("the manifest has no video representations")
        self.video_reps = list(video.representations)
        audio = manifest.audio if config.audio else None
        self.audio_reps = distinct_bitrates(audio.representations) if audio is not None else []
        self.content = ManifestContent(source, self.video_reps, config.max_segments, self.audio_reps)
        self.abr = abr if abr is not None else make(config.abr, **dict(config.abr_params))
        self.session = PlaybackSession(self.abr, self.content, config.session, sink=self.events)
        self.decoder = decoder
        self._t0 = 0.0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._requests: dict[str, int] = {}
        self._failed_requests = 0
        self._abandoned = 0
        self._failures: dict[tuple[MediaType, int], int] = {}
        self._ports: dict[MediaType, int | None] = {}  # the connection each pipeline's last answer came on
        self._next_sample_s = 0.0
        self._measured_bps = 0.0
        # Interactive (the desktop player): at the end of the stream wait for a seek or stop()
        # instead of returning; `on_seek(position_s)` hears where each seek landed.
        self.interactive = interactive
        self.on_seek = on_seek
        self._seek_to: float | None = None
        self._stopping = False
        self._wake: asyncio.Event | None = None  # a seek or stop cuts waits short
        self._progress: asyncio.Event | None = None  # a fetch began or ended: a held pipeline may go on
        self.fetcher.observer = self._on_attempt
        # loop.time() of session time 0 (None: when run() starts); `player.client.periods` sets it so
        # that the pre-roll steps and every Period share one clock.
        self.clock_origin: float | None = None

    # -- clock ------------------------------------------------------------------------------------

    def now(self) -> float:
        """Session time: seconds of the fetcher's clock since start, times the speed."""
        assert self._loop is not None
        return (self.fetcher.clock() - self._t0) * self.config.speed

    async def _sleep(self, session_s: float, *, acts: bool = True) -> None:
        await sleep_on(self.fetcher.clock, max(session_s, 0.0) / self.config.speed, acts=acts)

    async def _wait(self, session_s: float | None) -> None:
        """Sleep `session_s` (None: indefinitely); a seek or stop request cuts it short."""
        assert self._wake is not None
        self.fetcher.acted()
        if self._seek_to is not None or self._stopping:
            return
        try:
            if session_s is None:
                await self._wake.wait()
                return
            # The sleep is on the fetcher's clock (exact on a bounded warp clock); a wake cuts it short.
            sleeper = asyncio.ensure_future(self._sleep(session_s))
            waker = asyncio.ensure_future(self._wake.wait())
            try:
                await asyncio.wait((sleeper, waker), return_when=asyncio.FIRST_COMPLETED)
            finally:
                for task in (sleeper, waker):
                    task.cancel()
                await asyncio.gather(sleeper, waker, return_exceptions=True)
        finally:
            self._wake.clear()

    async def _await_progress(self) -> None:
        """Until another pipeline's fetch begins or ends (or a seek or stop is asked for)."""
        assert self._progress is not None
        if self._seek_to is not None or self._stopping:
            return
        self._progress.clear()  # no await since the session said Hold: nothing was missed
        await self._progress.wait()

    def _progressed(self) -> None:
        if self._progress is not None:
            self._progress.set()

    # -- controls (call on the player's event loop) -------------------------------------------------

    def request_seek(self, position_s: float) -> None:
        """Jump to media time `position_s` once the fetches in flight (if any) complete."""
        self._seek_to = position_s
        self._interrupt()

    def stop(self) -> None:
        """End the run once the fetches in flight (if any) complete; the report covers what was fetched."""
        self._stopping = True
        self._interrupt()

    def _interrupt(self) -> None:
        if self._wake is not None:
            self._wake.set()
        self._progressed()

    # -- the loop ---------------------------------------------------------------------------------

    async def run(self) -> PlaybackReport:
        self._loop = asyncio.get_running_loop()
        self._t0 = self.fetcher.clock() if self.clock_origin is None else self.clock_origin
        self._wake = asyncio.Event()
        self._progress = asyncio.Event()
        audio = self.content.audio
        emit_event(self.events, 0.0, "start", title=self.source.title, abr=self.config.abr, speed=self.config.speed,
                   segments=self.content.segment_count, bootstrap_s=dict(self.source.timings_s),
                   **({"audio_segments": audio.segment_count} if audio is not None else {}))
        sampler = asyncio.create_task(self._sample_buffer())
        watcher = asyncio.create_task(watch_decode_errors(self.decoder, self.events, self.now))
        error: str | None = None
        try:
            await self._play()
        except PlaybackError as exc:
            error = str(exc)
            emit_event(self.events, self.now(), "error", message=error)
        finally:
            sampler.cancel()
            watcher.cancel()
        frames_decoded = frames_failed = error_count = 0
        first_frame_s = None
        decode_errors: tuple[str, ...] = ()
        if self.decoder is not None:
            summary = await self.decoder.finish()
            # the last segments' (the watcher logged the others as they happened)
            log_decode_errors(self.decoder, self.events, self.now)
            frames_decoded, frames_failed = summary.frames_decoded, summary.frames_failed
            decode_errors, error_count = summary.errors, summary.error_count
            if summary.first_frame_wall is not None:
                first_frame_s = (summary.first_frame_wall - self._t0) * self.config.speed
        report = self._report(error, frames_decoded, frames_failed, first_frame_s)
        report = replace(report, decode_errors=decode_errors, decode_error_count=error_count)
        emit_event(self.events, self.now(), "end",
                   **{k: v for k, v in report.as_dict().items() if k not in ("qualities", "media")})
        return report

    async def _play(self) -> None:
        """Run the pipelines until every segment is in (interactive: until stop), restarting them at seeks."""
        while not self._stopping:
            if self._seek_to is not None:
                self._apply_seek(self._seek_to)
            await _all_or_first_error([asyncio.create_task(self._pipeline(media))
                                       for media in self.session.media_types])
            if self._stopping or self._seek_to is not None:
                continue
            if not self.interactive:
                return
            await self._wait(None)

    async def _pipeline(self, media: MediaType) -> None:
        """Fetch `media` as the session says, until it has nothing left or a seek or stop is asked for."""
        _MEDIA.set(media)  # this task's own context: the request counts know which pipeline asked
        session = self.session
        while not self._stopping and self._seek_to is None:
            self.fetcher.acting()  # deciding and asking take no session time, as in the simulator
            action = session.next_action(media)
            if isinstance(action, Finished):
                self.fetcher.acted(self._ports.pop(media, None))  # nothing more to ask for: the world goes on
                self._progressed()
                return
            if isinstance(action, Hold):
                self.fetcher.acted(self._ports.pop(media, None))
                await self._await_progress()
                continue
            if isinstance(action, Wait):
                self.fetcher.acted(self._ports.pop(media, None))
                await self._wait(action.duration_s)
                session.advance(self.now())
                continue
            assert isinstance(action, Fetch)
            self._progressed()
            outcome = await self._fetch_segment(action)
            self._progressed()
            if outcome is not None:
                key = (media, action.segment_index)
                self._failures[key] = failures = self._failures.get(key, 0) + 1
                session.on_failure(self.now(), outcome, media=media)
                if failures >= self.config.max_segment_failures:
                    what = "segment" if media == "video" else f"{media} segment"
                    raise PlaybackError(f"{what} {action.segment_index} could not be fetched: {outcome}")
                await self._sleep(min(1.0, 0.25 * failures))

    def _apply_seek(self, position_s: float) -> None:
        self._seek_to = None
        self.session.seek(self.now(), position_s)
        if self.on_seek is not None:
            self.on_seek(self.session.playhead_s)

    def init_urls(self) -> dict[str, tuple[list[str], dict[str, str]]]:
        """Each rendition's init segment: failover alternatives and Range header (fetched before playback)."""
        reps = [*self.video_reps, *self.audio_reps]
        return {rep.id: (self._alternatives(rep.init.urls), range_header(rep.init.byte_range))
                for rep in reps if rep.init is not None}

    def _alternatives(self, urls: tuple[str, ...]) -> list[str]:
        out: list[str] = []
        for url in urls:
            out.extend(failover_urls(self.source, url))  # the steering's latest ranking (renewal.py)
        return list(dict.fromkeys(out))

    async def _fetch_segment(self, action: Fetch) -> str | None:
        """Fetch one segment of one media type; None on success (or abandonment), else why it failed."""
        media, index = action.media, action.segment_index
        rep = self.video_reps[action.quality] if media == "video" else self.audio_reps[action.quality]
        segment = rep.segments[index]
        progress = (self._abandon_check(action) if media == "video" and self.config.abandonment
                    and isinstance(self.abr, Abandoning) else None)
        headers = self._cmcd(rep, media, index, segment.duration_s) | range_header(segment.byte_range)
        self.fetcher.done_with(self._ports.pop(media, None))  # the request acts once it reaches the shaper
        try:
            result = await self.fetcher.fetch(self._alternatives(segment.urls), headers=headers, on_progress=progress,
                                              keep_hold=True)
        except Abandoned as exc:
            self._abandoned += 1
            self.session.on_abandon(self.now(), bytes_received=exc.bytes_received, ttfb_s=exc.ttfb_s * self.config.speed,
                                    media=media)
            return None
        except FetchError as exc:
            return str(exc) if media == "video" else f"{media}: {exc}"
        self._ports[media] = result.port  # the clock stands still for us until we act again
        record = self.session.on_download(self.now(), size_bytes=result.size_bytes,
                                          ttfb_s=result.ttfb_s * self.config.speed,
                                          media_duration_s=segment.duration_s, media=media)
        self._measured_bps = throughput_bps(record.size_bytes, max(record.download_s, 1e-6))
        if self.decoder is not None:
            self.decoder.submit(media, rep.id, index, result.body)
        return None

    def _abandon_check(self, action: Fetch) -> Callable[[int, int, float], bool]:
        abr: Abandoning = self.abr  # type: ignore[assignment]

        def keep_going(received: int, total: int, elapsed_wall_s: float) -> bool:
            self.session.advance(self.now())
            progress = self.session.progress(bytes_received=received, size_bytes=total,
                                             elapsed_s=elapsed_wall_s * self.config.speed)
            decision = abr.should_abandon(progress)
            if decision is None:
                return True
            emit_event(self.events, self.now(), "abandon", segment=action.segment_index, quality=action.quality,
                       to_quality=decision.quality, reason=decision.reason, bytes=received)
            return False

        return keep_going

    def _cmcd(self, rep: Representation, media: MediaType, index: int, duration_s: float) -> dict[str, str]:
        if not self.config.cmcd:
            return {}
        next_url = None
        if index + 1 < rep.segment_count:
            next_url = rep.segments[index + 1].urls[0]
        return cmcd_headers(  # CTA-5004: bl is the buffer of the object's own media type
            bitrate_kbps=rep.bandwidth_bps // 1000, buffer_ms=self.session.buffer_level_s(media) * 1000,
            starved=self.session.stalled, duration_ms=duration_s * 1000, measured_kbps=self._measured_bps / 1000,
            object_type="v" if media == "video" else "a", session_id=self.source.session_id,
            content_id=self.source.title, startup=not self.session.started, next_url=next_url,
            base_url=rep.segments[index].urls[0],
        )

    # -- bookkeeping ----------------------------------------------------------------------------

    def _on_attempt(self, attempt: Any) -> None:
        media = _MEDIA.get()
        self._requests[media] = self._requests.get(media, 0) + 1
        if attempt.error is not None and attempt.error != ABANDONED:  # abandoned: the player's choice
            self._failed_requests += 1
        wall_to_session = self.config.speed
        extra = {"media": media} if len(self.session.media_types) > 1 else {}
        emit_event(self.events, self.now() if self._loop else 0.0, "request", url=attempt.url,
                   status=attempt.status, error=attempt.error, bytes=attempt.size_bytes, request_id=attempt.request_id,
                   ttfb_s=None if attempt.ttfb_s is None else round(attempt.ttfb_s * wall_to_session, 4),
                   duration_s=round(attempt.duration_s * wall_to_session, 4),
                   **({"note": attempt.note} if attempt.note else {}), **extra)

    async def _sample_buffer(self) -> None:
        session = self.session
        while True:
            session.advance(self.now())
            levels = ({f"{media}_s": round(level, 3) for media, level in session.buffer_levels_s.items()}
                      if len(session.media_types) > 1 else {})
            emit_event(self.events, session.time_s, "buffer", buffer_s=round(session.buffer_s, 3),
                       playing=session.started and not session.stalled, **levels)
            await self._sleep(self.config.buffer_sample_s, acts=False)  # a bystander: holds nothing

    def metrics(self) -> SessionMetrics:
        """QoE and session metrics of the segments played so far (video records, stalls of the playable buffer)."""
        records = self.session.records
        ladder = self.content.ladder
        return session_metrics(
            bitrates_bps=[r.bitrate_bps for r in records], rebuffer_s=self.session.rebuffer_per_segment_s(),
            ladder_bps=ladder.bitrates_bps, segment_duration_s=ladder.segment_duration_s,
            startup_s=self.session.startup_s or 0.0, rebuffer_count=self.session.stall_count,
        )

    def _report(self, error: str | None, frames_decoded: int, frames_failed: int,
                first_frame_s: float | None) -> PlaybackReport:
        records = tuple(self.session.records)
        audio_records = tuple(self.session.audio_records)
        ends = [r.request_time_s + r.download_s for r in (*records, *audio_records)]
        return PlaybackReport(
            title=self.source.title, abr=self.config.abr, metrics=self.metrics(), records=records,
            frames_decoded=frames_decoded, frames_failed=frames_failed, requests=sum(self._requests.values()),
            failed_requests=self._failed_requests, abandoned=self._abandoned,
            duration_s=max(ends, default=0.0), first_frame_s=first_frame_s,
            bootstrap_s=dict(self.source.timings_s), error=error, audio_records=audio_records,
            requests_by_media=dict(self._requests),
        )


async def _all_or_first_error(tasks: list[asyncio.Task[None]]) -> None:
    """Wait for every task; the first to raise cancels the others and its error propagates."""
    try:
        done, pending = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
    except asyncio.CancelledError:
        for task in tasks:
            task.cancel()
        raise
    failed = next((t for t in done if t.exception() is not None), None)
    if failed is not None:
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        raise failed.exception()  # type: ignore[misc]


def print_report(report: PlaybackReport, *, as_json: bool) -> None:
    """The session report on stdout: a few readable lines, or one JSON object."""
    if as_json:
        print(json.dumps(report.as_dict()))
        return
    m = report.metrics
    print(f"{report.title}: {m.segments} segments with {report.abr}")
    print(f"  QoE lin {m.qoe['lin']:.2f}  log {m.qoe['log']:.2f}  hd {m.qoe['hd']:.2f}")
    print(f"  startup {m.startup_s:.2f} s, rebuffering {m.rebuffer_s:.2f} s in {m.rebuffer_count} stalls "
          f"({100 * m.rebuffer_ratio:.1f}%), average bitrate {m.avg_bitrate_bps / 1e6:.2f} Mbit/s, "
          f"{m.switches} switches")
    print(f"  frames decoded {report.frames_decoded}, failed {report.frames_failed}; requests {report.requests} "
          f"({report.failed_requests} failed), abandoned downloads {report.abandoned}")
    if report.periods > 1:
        print(f"  {report.periods} periods played")
    if report.http_counts.get("range_ignored"):
        print(f"  the server ignored Range on {report.http_counts['range_ignored']} requests "
              "(the ranges were cut out of whole-object answers)")
    if report.decode_errors:
        count = max(report.decode_error_count, len(report.decode_errors))  # more than those kept, if it kept failing
        more = f" (and {count - 1} more)" if count > 1 else ""
        print(f"  decoding failed: {report.decode_errors[0]}{more}")
    if report.audio_records:
        by_media = report.requests_by_media
        renditions = sorted({r.bitrate_bps // 1000 for r in report.audio_records})
        print(f"  audio {len(report.audio_records)} segments at {', '.join(map(str, renditions))} kbit/s; "
              f"requests video {by_media.get('video', 0)}, audio {by_media.get('audio', 0)}, "
              f"other {by_media.get('other', 0)}")
    if report.live is not None:
        print(format_live(report.live))
    if report.error:
        print(f"  playback stopped: {report.error}")


def format_live(live: Mapping[str, Any]) -> str:
    """The report's live line."""
    join = live.get("join_s")
    join_text = f"{join:.2f} s" if isinstance(join, float) else "-"
    return (f"  live: latency p50 {live['latency_p50_s']} s, p95 {live['latency_p95_s']} s, max "
            f"{live['latency_max_s']} s (target {live['target_latency_s']} s), join {join_text}, drift "
            f"{live['drift_mean_s']} s, {live['rate_changes']} rate changes, {live['stalls']} stalls, "
            f"{live['seeks_to_live']} seeks to live, {live['early_requests']} early requests")
