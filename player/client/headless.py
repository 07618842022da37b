"""The headless player: drives `PlaybackSession` with real HTTP fetches on a real (or sped-up) clock.

Per segment the session decides a quality; the player fetches that video segment and the audio
segment of the same index concurrently (with failover across edges and BaseURLs), reports the
arrival to the session, and hands the bytes to the decoder off the event loop. The ABR object is
the registry's, unchanged, so what runs here is what runs in the simulator.

Time: session time = wall time since start x `speed`. With a shaper at the same speed (trace K
times faster), every duration the ABR sees is in trace seconds, so QoE is comparable across K.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from abr.estimators import throughput_bps
from abr.qoe import SessionMetrics, session_metrics
from abr.registry import make
from abr.types import Abandoning, AbrAlgorithm, Ladder
from player.client.bootstrap import PlaybackSource, edge_alternatives, range_header
from player.client.decoding import Decoder
from player.client.eventlog import EventLog
from player.client.fetch import ABANDONED, Abandoned, Fetcher, FetchError, FetchResult
from player.client.mpd import Representation
from player.errors import CliError
from player.events import EventSink, emit_event
from player.media.modes import DECODE_MODES
from player.session import Fetch, Finished, PlaybackSession, SegmentRecord, SessionConfig, Wait
from server.formats.cmcd import cmcd_headers

MAX_REPORTED_ERRORS = 20  # decode errors listed in the JSON report (all go to the event log)


class PlaybackError(CliError):
    """Playback stopped for good; the message says which segment and why."""


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

    def __post_init__(self) -> None:
        if not self.speed > 0:
            raise ValueError(f"speed must be > 0, got {self.speed}")
        if self.decode not in DECODE_MODES:
            raise ValueError(f"decode must be one of {', '.join(DECODE_MODES)}, got {self.decode!r}")
        if self.max_segments is not None and self.max_segments < 1:
            raise ValueError("max_segments must be >= 1")
        if self.max_segment_failures < 1 or not self.buffer_sample_s > 0:
            raise ValueError("max_segment_failures must be >= 1 and buffer_sample_s > 0")


class ManifestContent:
    """The session's view of the stream: ladder and sizes from segments.json when the server has
    one (so the ABR sees what the simulator sees), else from the MPD's bandwidths."""

    def __init__(self, source: PlaybackSource, video_reps: list[Representation], max_segments: int | None) -> None:
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
    decode_errors: tuple[str, ...] = ()  # why segments failed to decode, one line each
    periods: int = 1  # DASH Periods played (records and frames cover them all)

    @property
    def qualities(self) -> list[int]:
        return [r.quality for r in self.records]

    def as_dict(self) -> dict[str, Any]:
        out = self.metrics.as_dict()
        out.update({
            "title": self.title, "abr": self.abr, "frames_decoded": self.frames_decoded, "frames_failed": self.frames_failed,
            "requests": self.requests, "failed_requests": self.failed_requests, "abandoned": self.abandoned,
            "duration_s": round(self.duration_s, 4), "first_frame_s": self.first_frame_s,
            "bootstrap_s": dict(self.bootstrap_s), "qualities": self.qualities, "error": self.error,
            "http_counts": dict(self.http_counts), "periods": self.periods,
            "decode_errors": list(self.decode_errors[:MAX_REPORTED_ERRORS]), "decode_error_count": len(self.decode_errors),
        })
        return out


class HeadlessPlayer:
    """One playback session against real HTTP servers."""

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
        self.audio_rep = audio.representations[0] if audio is not None and audio.representations else None
        self.content = ManifestContent(source, self.video_reps, config.max_segments)
        self.abr = abr if abr is not None else make(config.abr, **dict(config.abr_params))
        self.session = PlaybackSession(self.abr, self.content, config.session, sink=self.events)
        self.decoder = decoder
        self._t0 = 0.0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._requests = 0
        self._failed_requests = 0
        self._abandoned = 0
        self._audio_cache: dict[int, FetchResult] = {}
        self._next_sample_s = 0.0
        self._measured_bps = 0.0
        # Interactive (the desktop player): at the end of the stream wait for a seek or stop()
        # instead of returning; `on_seek(position_s)` hears where each seek landed.
        self.interactive = interactive
        self.on_seek = on_seek
        self._seek_to: float | None = None
        self._stopping = False
        self._wake: asyncio.Event | None = None
        self.fetcher.observer = self._on_attempt
        # loop.time() of session time 0 (None: when run() starts); `player.client.periods` sets it so
        # that the pre-roll steps and every Period share one clock.
        self.clock_origin: float | None = None

    # -- clock ------------------------------------------------------------------------------------

    def now(self) -> float:
        """Session time: wall seconds since start, times the speed."""
        assert self._loop is not None
        return (self._loop.time() - self._t0) * self.config.speed

    async def _sleep(self, session_s: float) -> None:
        await asyncio.sleep(max(session_s, 0.0) / self.config.speed)

    async def _wait(self, session_s: float | None) -> None:
        """Sleep `session_s` (None: indefinitely); a seek or stop request cuts it short."""
        assert self._wake is not None
        if self._seek_to is not None or self._stopping:
            return
        timeout = None if session_s is None else max(session_s, 0.0) / self.config.speed
        try:
            await asyncio.wait_for(self._wake.wait(), timeout)
        except TimeoutError:
            pass
        finally:
            self._wake.clear()

    # -- controls (call on the player's event loop) -------------------------------------------------

    def request_seek(self, position_s: float) -> None:
        """Jump to media time `position_s` once the fetch in flight (if any) completes."""
        self._seek_to = position_s
        if self._wake is not None:
            self._wake.set()

    def stop(self) -> None:
        """End the run once the fetch in flight (if any) completes; the report covers what was fetched."""
        self._stopping = True
        if self._wake is not None:
            self._wake.set()

    # -- the loop ---------------------------------------------------------------------------------

    async def run(self) -> PlaybackReport:
        self._loop = asyncio.get_running_loop()
        self._t0 = self._loop.time() if self.clock_origin is None else self.clock_origin
        self._wake = asyncio.Event()
        emit_event(self.events, 0.0, "start", title=self.source.title, abr=self.config.abr, speed=self.config.speed,
                   segments=self.content.segment_count, bootstrap_s=dict(self.source.timings_s))
        sampler = asyncio.create_task(self._sample_buffer())
        error: str | None = None
        try:
            failures: dict[int, int] = {}
            while not self._stopping:
                if self._seek_to is not None:
                    self._apply_seek(self._seek_to)
                action = self.session.next_action()
                if isinstance(action, Finished):
                    if not self.interactive:
                        break
                    await self._wait(None)
                    continue
                if isinstance(action, Wait):
                    await self._wait(action.duration_s)
                    self.session.advance(self.now())
                    continue
                assert isinstance(action, Fetch)
                outcome = await self._fetch_segment(action)
                if outcome is not None:
                    failures[action.segment_index] = failures.get(action.segment_index, 0) + 1
                    self.session.on_failure(self.now(), outcome)
                    if failures[action.segment_index] >= self.config.max_segment_failures:
                        raise PlaybackError(f"segment {action.segment_index} could not be fetched: {outcome}")
                    await self._sleep(min(1.0, 0.25 * failures[action.segment_index]))
        except PlaybackError as exc:
            error = str(exc)
            emit_event(self.events, self.now(), "error", message=error)
        finally:
            sampler.cancel()
        frames_decoded = frames_failed = 0
        first_frame_s = None
        decode_errors: tuple[str, ...] = ()
        if self.decoder is not None:
            summary = await self.decoder.finish()
            frames_decoded, frames_failed = summary.frames_decoded, summary.frames_failed
            decode_errors = summary.errors
            for message in summary.errors:
                emit_event(self.events, self.now(), "decode_error", message=message)
            if summary.first_frame_wall is not None:
                first_frame_s = (summary.first_frame_wall - self._t0) * self.config.speed
        report = self._report(error, frames_decoded, frames_failed, first_frame_s)
        report = replace(report, decode_errors=decode_errors)
        emit_event(self.events, self.now(), "end",
                   **{k: v for k, v in report.as_dict().items() if k != "qualities"})
        return report

    def _apply_seek(self, position_s: float) -> None:
        self._seek_to = None
        self.session.seek(self.now(), position_s)
        if self.on_seek is not None:
            self.on_seek(self.session.playhead_s)

    def init_urls(self) -> dict[str, tuple[list[str], dict[str, str]]]:
        """Each rendition's init segment: failover alternatives and Range header (fetched before playback)."""
        reps = [*self.video_reps, *([self.audio_rep] if self.audio_rep is not None else [])]
        return {rep.id: (self._alternatives(rep.init.urls), range_header(rep.init.byte_range))
                for rep in reps if rep.init is not None}

    def _alternatives(self, urls: tuple[str, ...]) -> list[str]:
        out: list[str] = []
        for url in urls:
            out.extend(edge_alternatives(url, self.source.manifest_urls))
        return list(dict.fromkeys(out))

    async def _fetch_segment(self, action: Fetch) -> str | None:
        """Fetch video (and audio) of one segment; None on success, else why it failed."""
        index, quality = action.segment_index, action.quality
        rep = self.video_reps[quality]
        segment = rep.segments[index]
        audio_task = None
        if self.audio_rep is not None and index < self.audio_rep.segment_count and index not in self._audio_cache:
            audio_task = asyncio.create_task(self._fetch_audio(index))
        progress = self._abandon_check(action) if isinstance(self.abr, Abandoning) else None
        headers = self._cmcd(rep, index, "v", segment.duration_s) | range_header(segment.byte_range)
        try:
            video = await self.fetcher.fetch(self._alternatives(segment.urls), headers=headers, on_progress=progress)
        except Abandoned as exc:
            self._abandoned += 1
            self.session.on_abandon(self.now(), bytes_received=exc.bytes_received)
            if audio_task is not None:
                await self._settle(audio_task)
            return None
        except FetchError as exc:
            if audio_task is not None:
                await self._settle(audio_task)
            return str(exc)
        if audio_task is not None:
            audio_error = await self._settle(audio_task)
            if audio_error is not None:
                return audio_error
        audio = self._audio_cache.pop(index, None)
        now = self.now()
        size = video.size_bytes + (audio.size_bytes if audio is not None else 0)
        record = self.session.on_download(now, size_bytes=size, ttfb_s=video.ttfb_s * self.config.speed,
                                          media_duration_s=segment.duration_s)
        self._measured_bps = throughput_bps(record.size_bytes, max(record.download_s, 1e-6))
        if self.decoder is not None:
            self.decoder.submit("video", rep.id, index, video.body)
            if audio is not None and self.audio_rep is not None:
                self.decoder.submit("audio", self.audio_rep.id, index, audio.body)
        return None

    async def _fetch_audio(self, index: int) -> None:
        assert self.audio_rep is not None
        segment = self.audio_rep.segments[index]
        headers = self._cmcd(self.audio_rep, index, "a", segment.duration_s) | range_header(segment.byte_range)
        self._audio_cache[index] = await self.fetcher.fetch(self._alternatives(segment.urls), headers=headers)

    @staticmethod
    async def _settle(task: asyncio.Task[None]) -> str | None:
        try:
            await task
        except FetchError as exc:
            return f"audio: {exc}"
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

    def _cmcd(self, rep: Representation, index: int, object_type: str, duration_s: float) -> dict[str, str]:
        if not self.config.cmcd:
            return {}
        next_url = None
        if index + 1 < rep.segment_count:
            next_url = rep.segments[index + 1].urls[0]
        return cmcd_headers(
            bitrate_kbps=rep.bandwidth_bps // 1000, buffer_ms=self.session.buffer_s * 1000,
            starved=self.session.stalled, duration_ms=duration_s * 1000, measured_kbps=self._measured_bps / 1000,
            object_type=object_type, session_id=self.source.session_id, content_id=self.source.title,
            startup=not self.session.started, next_url=next_url, base_url=rep.segments[index].urls[0],
        )

    # -- bookkeeping ----------------------------------------------------------------------------

    def _on_attempt(self, attempt: Any) -> None:
        self._requests += 1
        if attempt.error is not None and attempt.error != ABANDONED:  # abandoned: the player's choice
            self._failed_requests += 1
        wall_to_session = self.config.speed
        emit_event(self.events, self.now() if self._loop else 0.0, "request", url=attempt.url,
                   status=attempt.status, error=attempt.error, bytes=attempt.size_bytes, request_id=attempt.request_id,
                   ttfb_s=None if attempt.ttfb_s is None else round(attempt.ttfb_s * wall_to_session, 4),
                   duration_s=round(attempt.duration_s * wall_to_session, 4),
                   **({"note": attempt.note} if attempt.note else {}))

    async def _sample_buffer(self) -> None:
        while True:
            self.session.advance(self.now())
            emit_event(self.events, self.session.time_s, "buffer", buffer_s=round(self.session.buffer_s, 3),
                       playing=self.session.started and not self.session.stalled)
            await self._sleep(self.config.buffer_sample_s)

    def metrics(self) -> SessionMetrics:
        """QoE and session metrics of the segments played so far."""
        records = self.session.records
        ladder = self.content.ladder
        return session_metrics(
            bitrates_bps=[r.bitrate_bps for r in records], rebuffer_s=[r.rebuffer_s for r in records],
            ladder_bps=ladder.bitrates_bps, segment_duration_s=ladder.segment_duration_s,
            startup_s=self.session.startup_s or 0.0, rebuffer_count=self.session.stall_count,
        )

    def _report(self, error: str | None, frames_decoded: int, frames_failed: int,
                first_frame_s: float | None) -> PlaybackReport:
        records = tuple(self.session.records)
        return PlaybackReport(
            title=self.source.title, abr=self.config.abr, metrics=self.metrics(), records=records,
            frames_decoded=frames_decoded, frames_failed=frames_failed, requests=self._requests,
            failed_requests=self._failed_requests, abandoned=self._abandoned,
            duration_s=records[-1].request_time_s + records[-1].download_s if records else 0.0,
            first_frame_s=first_frame_s, bootstrap_s=dict(self.source.timings_s), error=error,
        )


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
        more = f" (and {len(report.decode_errors) - 1} more)" if len(report.decode_errors) > 1 else ""
        print(f"  decoding failed: {report.decode_errors[0]}{more}")
    if report.error:
        print(f"  playback stopped: {report.error}")
