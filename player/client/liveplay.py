"""The headless live player: drives `LiveSession` against a dynamic MPD with real HTTP on a real
(or sped-up) clock.

What it does, in order: syncs its clock to the MPD's `UTCTiming` (http-xsdate / http-iso: the
server's time at the midpoint of the request), maps `availabilityStartTime` onto the session clock
and builds the `LiveSchedule` (whole segments, or CMAF chunks of `D - availabilityTimeOffset` when
`availabilityTimeComplete="false"`), then lets the session decide: it joins at the live edge minus
the target latency, never asks for a segment before it exists (`Wait`), steers latency with the
playback rate. A low-latency segment is read as its chunked body arrives; each complete
`moof`+`mdat` is handed to `on_chunk` at once. Every `minimumUpdatePeriod` the MPD is fetched again
and the session told where the newest segment is (`on_available`); the clock is synced again on an
update once dash.js's adaptive interval has passed (player/clocksync.py). Playback stops after
`duration_s` of session time from the join.

Time: session time = the fetcher's clock since start x `speed`, as in the VOD player. A live
channel makes media on its own clock, so `--speed K` only makes sense against a channel whose clock
runs K times faster too (`server.live.channel.LiveConfig.speed`; its `/time` says so, and the clock
sync maps it). In emulation the fetcher's clock may leave out the stack's time (the shaper's
`WarpClock`): `clock_lag_s` then says how much it left out, and every segment and `/time` request
tells the channel so (`X-Abrkit-Channel-Lag`), which answers on the player's clock (docs/LIVE-EMULATION.md,
"The stack's time in live emulation").
The first audio adaptation set plays in its own pipeline beside the video (headless, with
`PlayerConfig.audio`). Nothing is decoded unless a `Decoder` is given (the desktop window passes one:
each video and audio segment, or each CMAF chunk in low-latency mode, is handed to it as it completes).
"""

from __future__ import annotations

import asyncio
import math
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Any

from abr.estimators import ChunkArrival
from abr.qoe import LiveQoe, session_metrics
from abr.registry import make
from abr.types import Abandoning, Ladder
from netsim.clock import sleep_on
from player.client import channelclock
from player.client.bootstrap import PlaybackSource
from player.client.channelclock import UTC_TIMING_SCHEMES, parse_server_time
from player.client.chunktimer import ChunkTimer, chunk_ends  # noqa: F401  (chunk_ends: re-exported)
from player.client.decoding import Decoder
from player.client.fetch import Fetcher, FetchError
from player.client.headless import (
    PlaybackError,
    PlaybackReport,
    PlayerConfig,
    distinct_bitrates,
    log_decode_errors,
    watch_decode_errors,
)
from player.client.liveconfig import LivePlayConfig
from player.client.mpd import LiveTemplate, Manifest, MpdError, Representation, parse_mpd
from player.client.openrequests import OpenRequests
from player.client.renewal import manifest_urls_now
from player.clocksync import RESYNC_REQUESTS, ClockSyncSchedule
from player.events import EventSink, emit_event
from player.live import ABANDON_CHECK_BYTES, ABANDON_CHECK_S, LiveConfig, LiveSchedule, LiveSession
from player.session import Fetch, Finished, Hold, Wait
from player.timeline import MediaType, Timeline
from server.formats.names import CHANNEL_LAG_HEADER  # channel seconds the player's clock runs behind

DEFAULT_TARGET_LATENCY_S = 3.0
_EARLY_RETRY_S = 0.1  # session seconds before asking again after a 404 for a segment not there yet
# The most a chunk's late last piece is moved back to when its bytes crossed (ChunkTimer): a paced
# link's timer floor (1 ms) and the loop's wake-up, in wall seconds (session seconds x the speed).
_TAIL_SLACK_WALL_S = 0.002
# The most an early one is moved on: the paced link releases a tail up to half a wall millisecond
# before it is due on live links' loose timers (netsim.pacing._TAIL_LEAD_S).
_TAIL_LEAD_WALL_S = 0.0005
# Pieces read closer together than this (wall seconds) were read back to back by a late loop, not
# handed over apart by the link (ChunkTimer's back_to_back_s): the paced link's ticks are 2 ms or more
# apart (netsim.shaper.pacing_quantum_ms), but a tail may wake sooner after a tick, and an early tail
# is what says a link sped up: above half a millisecond, tests/player/client/test_chunktimer.py's
# 2x faster link is no longer caught up with.
_BACK_TO_BACK_WALL_S = 0.00025
# The other answers on the link kept for ChunkTimer's `others` (LivePlayer.answers_landed): the few that
# can have crossed beside a chunk's first piece (a blocking reload per part, a rung switch's reload)
_ANSWERS_KEPT = 64


def is_live(manifest: Manifest) -> bool:
    """A dynamic MPD whose video is addressed by an open-ended template (what `play_live` plays)."""
    video = manifest.video
    return manifest.type == "dynamic" and video is not None and any(r.live for r in video.representations)


class LiveContent:
    """The channel as the session's content: the ladder from the MPD's bandwidths, `count` uniform
    segments (index k is segment number `start_number + k`), sizes estimated from the bandwidths."""

    def __init__(self, reps: list[Representation], count: int, segment_duration_s: float | None = None) -> None:
        duration_s = _template(reps[0]).duration_s if segment_duration_s is None else segment_duration_s
        self.ladder = Ladder(bitrates_bps=tuple(r.bandwidth_bps for r in reps), segment_duration_s=duration_s)
        self.segment_count = count
        self.timeline = Timeline.uniform(duration_s, count)
        self.audio: LiveContent | None = None  # the audio adaptation set, when played (a `MediaSource`)

    def upcoming(self, segment_index: int, count: int) -> tuple[tuple[int, ...], ...]:
        estimate = tuple(int(b * self.ladder.segment_duration_s / 8) for b in self.ladder.bitrates_bps)
        return tuple(estimate for _ in range(segment_index, min(segment_index + count, self.segment_count)))


def _template(rep: Representation) -> LiveTemplate:
    if rep.live is None:
        raise PlaybackError(f"representation {rep.id!r} is not an open-ended live template")
    return rep.live


class LivePlayer:
    """One live session (module docstring); `run()` returns the report."""

    # Whether every request it makes through its link is counted (`OpenRequests`), so the link's clock
    # may leave a lone one's hops out; a subclass with requests it does not count says False.
    tells_open_requests = True

    def __init__(self, source: PlaybackSource, config: PlayerConfig, fetcher: Fetcher, *,
                 live: LivePlayConfig, events: EventSink, decoder: Decoder | None = None,
                 clock_lag_s: Callable[[], float] | None = None, finish_decoder: bool = False) -> None:
        manifest = source.manifest
        self.reps = self.video_representations(manifest)
        self.source, self.config, self.fetcher, self.live, self.events = source, config, fetcher, live, events
        self.decoder = decoder
        # Headless: the session's end finishes the decoder (the segments downloaded are all decoded) and
        # the report counts its frames, as in VOD. A window's decoder is never finished (it plays on):
        # the session's end closes it, dropping what is still queued.
        self.finish_decoder = finish_decoder
        # Seconds of the fetcher's clock left out so far (the stack's time, the loop's stalls); None:
        # the clock is the wall's (module docstring).
        self.clock_lag_s = clock_lag_s
        self.open_requests = OpenRequests(fetcher.clock, enabled=clock_lag_s is not None and self.tells_open_requests)
        self._stop = asyncio.Event()  # `stop()`: end the session now, with its report
        self.manifest = manifest
        self.early_requests = 0  # 404s for segments not there yet (the session should cause none)
        self.requests = 0
        self.refreshes = 0
        self.clock_offset_s = 0.0  # server unix time - session time
        self.joined_offset_s = 0.0  # what the join's clock sync found (the report's clock_drift_s is from it)
        self._t0 = 0.0
        self._synced_at = 0.0  # session time of the offset read the channel's rate is next measured from
        self._sampled_s: float | None = None  # session time the last clock sync's offset was read (`utc_offset`)
        self._rate_offset_s = 0.0  # and the offset it found
        self.sync_schedule = ClockSyncSchedule(live.clock_sync)
        self.resyncs_s: list[float] = []  # session time each re-sync after the join began
        self._overdue_checked: set[int] = set()  # segments whose lateness had the channel's rate measured (`_overdue`)
        self._overdue_lock = asyncio.Lock()
        self._inits: set[str] = set()
        self.channel_age_s = 0.0  # how long the channel had been live when the session joined (its clock)
        # Live audio: its own pipeline, as in VOD (a window's decoder decodes it too)
        self.audio_reps = self.audio_representations(manifest) if config.audio else []
        self.abandoned = 0  # downloads the ABR gave up (whole segments only: LiveSession.abandonable)
        self._link_rate_Bps: float | None = None  # the last chunked body's link rate (ChunkTimer.rate_Bps)
        # The body sizes of the player's other answers on its link, the latest of each kind (the live
        # simulator's `ControlTraffic` takes them from an emulated twin): MPD, UTCTiming, init segment
        self.control_bytes = {"manifest": 0, "sync": 0, "init": 0}
        # The other answers' (session time landed, bytes) that share the link with media, for ChunkTimer
        # (`others`): the HLS player's playlist reloads (player.client.hlslive); none tracked here. A timer
        # reads back only to its chunk's previous piece, so the latest few are kept, not a live session's
        # every reload (one per part: 7,200 an hour)
        self.answers_landed: deque[tuple[float, int]] = deque(maxlen=_ANSWERS_KEPT)

    @staticmethod
    def video_representations(manifest: Manifest) -> list[Representation]:
        """The ladder this player plays; a manifest it cannot play is refused (a subclass for another
        kind of live manifest overrides this)."""
        if not is_live(manifest) or manifest.availability_start_time is None:
            raise PlaybackError("not a live MPD: a dynamic MPD with an open-ended video SegmentTemplate is needed")
        video = manifest.video
        assert video is not None
        return [r for r in distinct_bitrates(list(video.representations)) if r.live is not None]

    @staticmethod
    def audio_representations(manifest: Manifest) -> list[Representation]:
        """The audio renditions played beside the video (open-ended templates of the first audio set)."""
        audio = manifest.audio
        return [r for r in distinct_bitrates(list(audio.representations)) if r.live is not None] if audio else []

    def now(self) -> float:
        return (self.fetcher.clock() - self._t0) * self.config.speed

    def channel_headers(self) -> dict[str, str]:
        """Request headers for the channel: no caches, and how far the player's clock runs behind."""
        headers = {"Cache-Control": "no-cache"}
        if self.clock_lag_s is not None:
            # Never below 0 (a server refuses a lag from the future with a 400).
            headers[CHANNEL_LAG_HEADER] = f"{max(0.0, self.clock_lag_s() * self.config.speed):.6f}"
        return headers

    def check_channel_lag(self, headers: Mapping[str, str], what: str) -> None:
        """A `PlaybackError` when this player's clock leaves out time and `what`'s answer (its
        `headers`) does not follow it (`CHANNEL_LAG_HEADER` not echoed)."""
        if self.clock_lag_s is not None and CHANNEL_LAG_HEADER.lower() not in {k.lower() for k in headers}:
            raise PlaybackError(
                f"{what} does not answer on the player's clock ({CHANNEL_LAG_HEADER}): this player's clock "
                "leaves out time (the stack's, or the loop's waits for a core), so the channel must follow it "
                "(a stack with live_player_clocks, as `abrkit run --live` starts); or play on a clock that "
                "leaves nothing out")

    def _clock_lag_now(self) -> float:
        """Channel seconds the player's clock has left out so far (0 on a clock that leaves none out)."""
        return self.clock_lag_s() * self.config.speed if self.clock_lag_s is not None else 0.0

    def stop(self) -> None:
        """End the session before `duration_s` (a window closed): `run` returns the report so far.
        Call it on the player's event loop."""
        self._stop.set()

    async def _sleep(self, session_s: float) -> None:
        await sleep_on(self.fetcher.clock, max(session_s, 0.0) / self.config.speed)

    # -- clock and schedule -------------------------------------------------------------------------

    async def sync_clock(self) -> float:
        """The join's clock sync: server time minus session time (`utc_offset`) from the first
        request and the background attempts after it (`ClockSyncConfig.join_requests`)."""
        return await self.utc_offset(self.live.clock_sync.join_requests)

    async def utc_offset(self, requests: int) -> float:
        """Server time minus session time, from the first UTCTiming we understand (our own clock
        when the MPD has none: a warning event says so). The server's time is taken at the midpoint
        of the request, so a request held up on one leg errs by up to half its round trip: of
        `requests` one after another the one with the shortest round trip counts (NTP's clock
        filter, RFC 5905 section 10), which matters most on a sped-up clock."""
        for scheme, value in self.manifest.utc_timing:
            if scheme not in UTC_TIMING_SCHEMES or not value.startswith(("http://", "https://")):
                continue
            best: tuple[float, float, float] | None = None  # (round trip, offset, session time it was read at)
            for _ in range(requests):
                sent = self.now()
                async with self.open_requests.one(lone=False):
                    result = await self.fetcher.fetch([value], headers=self.channel_headers())
                received = self.now()
                self.check_channel_lag(result.headers, value)
                self.control_bytes["sync"] = len(result.body)
                server_s = parse_server_time(result.body.decode("utf-8", "replace"))
                sample = (received - sent, server_s - (sent + received) / 2, (sent + received) / 2)
                if self.clock_lag_s is not None:
                    # The clock stands still while the request is at the server, so every round trip
                    # looks alike; the server's time is read a little into that stand-still, which
                    # only ever overstates the offset: the smallest offset is the best.
                    sample = (sample[1], *sample[1:])
                best = sample if best is None or sample[0] < best[0] else best
            assert best is not None
            emit_event(self.events, self.now(), "clock_sync", url=value, round_trip_s=round(best[0], 4))
            self._sampled_s = best[2]
            return best[1]
        import time

        emit_event(self.events, self.now(), "clock_sync", url=None, reason="no http-xsdate UTCTiming: local clock")
        self._sampled_s = self.now()
        return time.time() - self.now()

    def schedule(self, manifest: Manifest) -> LiveSchedule:
        """The MPD's availability on the session clock."""
        live = _template(self.reps[0])
        assert manifest.availability_start_time is not None
        ast_s = manifest.availability_start_time.timestamp() - self.clock_offset_s + live.period_start_s
        chunk_s = None
        if not live.availability_time_complete and 0 < live.availability_time_offset_s < live.duration_s:
            chunk_s = live.duration_s - live.availability_time_offset_s
        return LiveSchedule(availability_start_s=ast_s, segment_duration_s=live.duration_s, chunk_duration_s=chunk_s)

    def live_config(self, schedule: LiveSchedule) -> LiveConfig:
        m = self.manifest
        target = (self.live.target_latency_s or m.target_latency_s or m.suggested_presentation_delay_s
                  or DEFAULT_TARGET_LATENCY_S)
        low, high = m.playback_rate_range or (0.95, 1.05)
        return LiveConfig(target_latency_s=target, min_rate=low, max_rate=high)

    # -- the session --------------------------------------------------------------------------------

    async def run(self) -> PlaybackReport:
        self._t0 = self.fetcher.clock()
        try:
            await self._join()
        except (FetchError, PlaybackError, MpdError) as exc:
            # Failed before the session started (the clock sync, the first playlists, an init segment):
            # logged and reported as a failure later is, with an `end` event, and no live figures.
            emit_event(self.events, self.now(), "error", message=str(exc))
            report = PlaybackReport.not_started(self.source, self.config, [r.bandwidth_bps for r in self.reps],
                                                requests=self.requests, failed_requests=self.early_requests,
                                                error=str(exc))
            emit_event(self.events, self.now(), "end",
                       **{k: v for k, v in report.as_dict().items() if k not in ("qualities", "media")})
            return report
        return await self._session()

    async def _join(self) -> None:
        """The clock sync, the schedule and the session, and the decoder started: the session can start."""
        self.clock_offset_s = self._rate_offset_s = self.joined_offset_s = await self.sync_clock()
        self.sync_schedule.synced(self.now(), self.clock_offset_s)
        # The channel's rate is measured between the times offsets were read, not those syncs' ends: the
        # join's best read may be its first of three (at 10x, a 1x channel measured 0.5-0.7x over 5 s).
        self._synced_at = self.now() if self._sampled_s is None else self._sampled_s
        schedule = self.schedule(self.manifest)
        self.channel_age_s = -schedule.availability_start_s
        live_config = self.live_config(schedule)
        # Enough segments for the whole run, from the channel's start (index k: media [kD, (k+1)D)).
        horizon_s = self.now() - schedule.availability_start_s + self.live.duration_s + live_config.max_drift_s
        count = math.ceil(horizon_s / schedule.segment_duration_s) + 4
        self.content = LiveContent(self.reps, count, schedule.segment_duration_s)
        if self.audio_reps:
            self.content.audio = LiveContent(self.audio_reps, count, schedule.segment_duration_s)
        self.session = LiveSession(make(self.config.abr, **dict(self.config.abr_params)), self.content,
                                   self.config.session, live=live_config, schedule=schedule, sink=self.events)
        if self.decoder is not None:
            # Chunks (DASH low-latency, LL-HLS parts) are submitted one by one as pieces of one stream
            await self.decoder.start({r.id: (list(r.init.urls), {}) for r in (*self.reps, *self.audio_reps)
                                      if r.init is not None}, self.fetcher, continuous=schedule.chunks_per_segment > 1)

    async def _session(self) -> PlaybackReport:
        """From the `start` event to the `end` event: the session played until its end or an error."""
        error: str | None = None
        schedule, live_config = self.session.schedule, self.session.live
        emit_event(self.events, self.now(), "start", title=self.source.title, abr=self.config.abr, live=True,
                   speed=self.config.speed, target_latency_s=live_config.target_latency_s,
                   chunk_s=schedule.chunk_duration_s, clock_offset_s=round(self.clock_offset_s, 4))
        refresher = asyncio.create_task(self._refresh_loop())
        player = asyncio.create_task(self._play_all())
        stopper = asyncio.create_task(self._stop.wait())
        watcher = asyncio.create_task(watch_decode_errors(self.decoder, self.events, self.now))  # as in VOD
        try:
            done, _ = await asyncio.wait((player, refresher, stopper), return_when=asyncio.FIRST_COMPLETED)
            failed = next((t for t in done if t is not stopper and t.exception() is not None), None)
            if failed is not None:
                raise failed.exception()  # type: ignore[misc]
        except (FetchError, PlaybackError, MpdError) as exc:
            error = str(exc)
            emit_event(self.events, self.now(), "error", message=error)  # as the VOD player logs it
        finally:
            for task in (player, refresher, stopper, watcher):
                task.cancel()
            await asyncio.gather(player, refresher, stopper, watcher, return_exceptions=True)
        report = self._report(error)
        if self.decoder is not None and self.finish_decoder:
            summary = await self.decoder.finish()
            first_frame_s = (None if summary.first_frame_wall is None
                             else (summary.first_frame_wall - self._t0) * self.config.speed)
            report = replace(report, frames_decoded=summary.frames_decoded, frames_failed=summary.frames_failed,
                             first_frame_s=first_frame_s, decode_errors=summary.errors,
                             decode_error_count=summary.error_count)
        elif self.decoder is not None:
            # A window's live decoder is never finished (segments still queued are dropped) but closed
            # here rather than by the harness after the session (a second close does nothing), so what
            # it finds as it closes (the segment it was decoding, the window's audio failures logged as
            # it settles) is in the log before `end`.
            await asyncio.to_thread(self.decoder.close)
        # The errors found since the watcher's last look
        log_decode_errors(self.decoder, self.events, self.now)
        # The session's last event, as the VOD player's: the report, so a log reader sees why it ended.
        emit_event(self.events, self.now(), "end",
                   **{k: v for k, v in report.as_dict().items() if k not in ("qualities", "media")})
        return report

    async def _play_all(self) -> None:
        """One pipeline per media type, side by side (as the VOD player); the first error ends both."""
        tasks = [asyncio.create_task(self._play(media)) for media in ("video", "audio")[:1 + bool(self.audio_reps)]]
        try:
            for task in asyncio.as_completed(tasks):
                await task
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _play(self, media: MediaType = "video") -> None:
        session = self.session
        while True:
            session.advance(max(self.now(), session.time_s))
            if session.joined_at_s is not None and session.time_s - session.joined_at_s >= self.live.duration_s:
                return
            if media != "video" and session.joined_at_s is None:  # the video's first action joins
                await self._sleep(0.01)
                continue
            joined = session.joined_at_s is not None
            action = session.next_action(media)
            if not joined and session.joined_at_s is not None:  # the age a simulated twin joins at
                self.channel_age_s = session.joined_at_s - session.schedule.availability_start_s
            if isinstance(action, Finished):
                return
            if isinstance(action, Wait | Hold):
                wait = action.duration_s if isinstance(action, Wait) else 0.05
                if session.joined_at_s is not None:
                    wait = min(wait, session.joined_at_s + self.live.duration_s - session.time_s)
                await self._sleep(max(wait, 0.0) + 1e-3)
                continue
            assert isinstance(action, Fetch)
            await self._fetch(action)

    async def _fetch(self, action: Fetch) -> None:
        schedule = self.session.schedule
        rep = self.reps[action.quality] if action.media == "video" else self.audio_reps[action.quality]
        await self._init(rep)
        ref = _template(rep).ref(_template(rep).start_number + action.segment_index)
        url = await self._route(ref.url)
        while True:
            requested = self.now()
            self.requests += 1
            async with (self.open_requests.one(),  # sent alone, its hops are no link time (OpenRequests)
                        self.fetcher.session.get(url, headers=self.channel_headers()) as response):
                if response.status == 404:
                    text = (await response.read()).decode("utf-8", "replace")
                    if "not available yet" not in text:
                        raise PlaybackError(f"GET {ref.url}: HTTP 404 ({text.strip()[:200]})")
                    self.early_requests += 1
                    emit_event(self.events, requested, "early_request", segment=action.segment_index,
                               number=ref.number, media=action.media)
                    await self._overdue(action.segment_index, requested)
                    await self._sleep(_EARLY_RETRY_S)
                    continue
                if response.status != 200:
                    raise PlaybackError(f"GET {ref.url}: HTTP {response.status}")
                await self._read(response, action, schedule, requested)
                return

    async def _read(self, response: Any, action: Fetch, schedule: LiveSchedule, requested: float) -> None:
        session = self.session
        n = schedule.chunks_per_segment
        segment = action.segment_index

        def ready_s(index: int) -> float:  # made, and half the request's round trip later
            first = timer.first_byte_s if timer.first_byte_s is not None else requested
            return schedule.chunk_available_s(segment, min(index, n - 1)) + (first - requested) / 2

        # The channel streams this answer on the player's clock as it stood at the first byte (the
        # lag its request said, plus the wait at the origin): what the clock leaves out after that
        # (other requests held at the stack, the loop's stalls) makes the rest come that much early.
        lag_at_answer_s = self._clock_lag_now()
        timer = ChunkTimer(ready_s if n > 1 else None, left_out_s=lambda: self._clock_lag_now() - lag_at_answer_s,
                           rate_hint_Bps=self._link_rate_Bps, requested_s=requested,
                           tail_slack_s=_TAIL_SLACK_WALL_S * self.config.speed,
                           tail_lead_s=_TAIL_LEAD_WALL_S * self.config.speed, others=self.answers_landed,
                           back_to_back_s=_BACK_TO_BACK_WALL_S * self.config.speed)
        chunk_start = 0
        rep_id = (self.reps if action.media == "video" else self.audio_reps)[action.quality].id
        abandon = self._abandon_check(response, action, requested)
        had_s = last_byte_s = -math.inf  # the previous chunk: when it was had (a clock that leaves out the
        # stack's time), when its last byte came
        async for piece in response.content.iter_any():
            t = self.now()
            if abandon is not None and abandon(t, len(timer.body) + len(piece), timer.first_byte_s):
                response.close()
                return
            before = len(timer.arrivals)
            for index, chunk in enumerate(timer.feed(t, piece), before):
                if self.clock_lag_s is not None and n > 1:
                    had_s = await self._not_before_made(schedule, action.segment_index, index, chunk, requested,
                                                        timer, had_s, last_byte_s,
                                                        left_out_s=self._clock_lag_now() - lag_at_answer_s)
                last_byte_s = chunk.last_byte_s
                if self.decoder is not None and n > 1:  # the window decodes each chunk as it comes
                    self.decoder.submit(action.media, rep_id, action.segment_index,
                                        bytes(timer.body[chunk_start:chunk_start + chunk.size_bytes]),
                                        ends_segment=index == n - 1)
                chunk_start += chunk.size_bytes
                if index < n - 1:  # the last chunk completes the segment: on_download
                    # Had when it could have come (`_not_before_made`), not when its early bytes did.
                    session.on_chunk(max(t, had_s, session.time_s), size_bytes=chunk.size_bytes,
                                     media_duration_s=schedule.chunk_s, media=action.media)
        done = max(self.now(), session.time_s)
        ttfb = (timer.first_byte_s if timer.first_byte_s is not None else done) - requested
        # Chunk-aware throughput (dash.js's moof-parsing mode): the idle waits for chunks not yet made
        # are left out, as the simulator does (player/research/live_sim.py).
        active = timer.active_s() if n > 1 else None
        self._link_rate_Bps = timer.rate_Bps
        session.on_download(done, size_bytes=len(timer.body), ttfb_s=ttfb, active_s=active, media=action.media)
        if self.decoder is not None and n == 1:
            self.decoder.submit(action.media, rep_id, action.segment_index, bytes(timer.body))

    def _abandon_check(self, response: Any, action: Fetch, requested: float
                       ) -> Callable[[float, int, float | None], bool] | None:
        """As in VOD and in the simulator (`LiveSession.abandonable`, Sabre's check cadence): offer a
        whole-segment download to the ABR's `should_abandon`; True once it gave it up (the session told)."""
        session = self.session
        abr = session.abr
        if action.media != "video" or not isinstance(abr, Abandoning) or not session.abandonable:
            return None
        size = response.content_length or self.content.upcoming(action.segment_index, 1)[0][action.quality]
        last = [requested, 0]

        def check(t: float, received: int, first_byte_s: float | None) -> bool:
            if t - last[0] < ABANDON_CHECK_S or received - last[1] < ABANDON_CHECK_BYTES or received >= size:
                return False
            last[:] = [t, received]
            session.advance(max(t, session.time_s))
            ttfb = None if first_byte_s is None else first_byte_s - requested
            decision = abr.should_abandon(session.progress(bytes_received=received, size_bytes=size,
                                                           elapsed_s=t - requested, ttfb_s=ttfb))
            if decision is None:
                return False
            self.abandoned += 1
            emit_event(self.events, t, "abandon", segment=action.segment_index, quality=action.quality,
                       to_quality=decision.quality, reason=decision.reason, bytes=received)
            session.on_abandon(max(t, session.time_s), bytes_received=received, ttfb_s=ttfb or 0.0)
            return True

        return check

    async def _not_before_made(self, schedule: LiveSchedule, segment: int, index: int, chunk: ChunkArrival,
                               requested: float, timer: ChunkTimer, previous_s: float, previous_last_s: float, *,
                               left_out_s: float) -> float:
        """With a clock that leaves out the stack's time, the channel follows it from each request on
        (`CHANNEL_LAG_HEADER`), but time this clock leaves out while a segment streams (the player's
        other requests at the stack, its loop's stalls) makes the rest of the segment come early on
        it. A chunk is not had before it could come (the simulator's model, player/research/live_sim.py):
        sent once made and half the request's round trip later, after the previous chunk (done at
        `previous_s`), then its own time on the link (from its first byte, or the previous chunk's last
        byte `previous_last_s` if that came later: one piece may end one chunk and begin the next).
        Held by no more than `left_out_s`, the time the clock has left out since the answer began:
        only that makes a chunk early on it. (The model alone held chunks that came on time: the first
        chunk's own time ran from its first piece counted back at the rate while it was made ready at
        that piece's arrival, so the piece's crossing counted twice, and on a link-bound segment each
        later chunk kept the hold: wave 10, 4x, 12 ms median, 30-90 ms where an MPD answer crossed
        with the first chunk. The cap bounds what is left of that; wave 12 took the double count out,
        which the cap had let through whenever the clock left time out, as a loaded loop's stalls do.)
        Returns when it is had."""
        first_byte_s = timer.first_byte_s if timer.first_byte_s is not None else requested
        ready = max(first_byte_s, schedule.chunk_available_s(segment, index) + (first_byte_s - requested) / 2)
        # Had from the answer's first piece on (made before it came), a chunk's own time runs from
        # that piece's arrival, not from its first byte counted back at the rate: that packet's
        # crossing is in both (each chunk of a link-bound join's first segment held 7 ms at 4x).
        start_s = max(chunk.first_byte_s, previous_last_s, first_byte_s if ready <= first_byte_s else -math.inf)
        due = max(ready, previous_s) + max(0.0, chunk.last_byte_s - start_s)
        due = min(due, max(self.now(), chunk.last_byte_s) + max(0.0, left_out_s))
        if due > self.now():
            await self._sleep(due - self.now())
        return max(due, chunk.last_byte_s)

    async def _overdue(self, segment: int, requested: float) -> None:
        """A segment still missing `OVERDUE_S` after the schedule says it was made: the channel's clock
        may run slower than the player's (a 1x channel at `--speed 10` answered ~280 404s before the
        next re-sync measured it): measure it now, once per segment, after `OVERDUE_WALL_S` of it."""
        if requested - self.session.schedule.first_available_s(segment) < channelclock.OVERDUE_S:
            return
        async with self._overdue_lock:  # the other pipeline waits for a measure under way, not asking again
            if segment not in self._overdue_checked:
                self._overdue_checked.add(segment)
                await self._sleep(self._synced_at + channelclock.OVERDUE_WALL_S * self.config.speed - self.now())
                await self._resync(overdue=True)

    async def _init(self, rep: Representation) -> None:
        if rep.init is None or rep.id in self._inits:
            return
        async with self.open_requests.one():
            result = await self.fetcher.fetch(rep.init.urls)
        self.control_bytes["init"] = len(result.body)
        self.requests += 1
        self._inits.add(rep.id)

    async def _route(self, url: str) -> str:
        return await self.fetcher.route(url) if self.fetcher.route is not None else url

    # -- manifest refresh ---------------------------------------------------------------------------

    async def _refresh_loop(self) -> None:
        """Re-read the MPD every minimumUpdatePeriod (one segment when it is missing or 0) and tell
        the session where the newest segment is."""
        period = self.manifest.minimum_update_period_s or self.session.schedule.segment_duration_s
        loaded = self.now()
        while True:
            # dash.js (ManifestUpdater.update): a period after the last MPD was loaded and parsed; a
            # clock re-sync meanwhile (its background sync) does not push the refresh back.
            await self._sleep(period - (self.now() - loaded))
            urls = manifest_urls_now(self.source.stack, self.source.manifest_urls)  # steering's latest ranking
            async with self.open_requests.one():
                result = await self.fetcher.fetch(urls, headers={"Cache-Control": "no-cache"})
            self.requests += 1
            self.control_bytes["manifest"] = len(result.body)
            manifest = parse_mpd(result.body, result.url)
            loaded = self.now()
            if not is_live(manifest) or manifest.availability_start_time is None:
                raise PlaybackError("the refreshed MPD is no longer live")
            self.manifest = manifest
            self.refreshes += 1
            await self._resync()
            schedule = self.schedule(manifest)
            now = self.now()
            unit = schedule.chunk_s if schedule.chunk_duration_s is not None else schedule.segment_duration_s
            made = math.floor(max(0.0, now - schedule.availability_start_s) / unit + 1e-9)
            if made >= 1:
                per = schedule.chunks_per_segment
                segment, chunk = divmod(made - 1, per)
                at = schedule.chunk_available_s(segment, chunk)
                self.session.on_available(segment=segment, chunk=chunk if schedule.chunk_duration_s else None,
                                          available_at_s=at)
            emit_event(self.events, now, "manifest_refresh", publish_time=str(manifest.publish_time))

    async def _resync(self, *, overdue: bool = False) -> None:
        """Sync the clock again when its schedule says so (dash.js: on an MPD update, once the
        adaptive interval has passed; player/clocksync.py) or a segment is `overdue` (`_overdue`), and
        check the channel's clock runs at the player's speed (player/client/channelclock.py)."""
        if not overdue and not self.sync_schedule.due(self.now()):
            return
        self.resyncs_s.append(self.now())
        offset = await self.utc_offset(RESYNC_REQUESTS)
        at, read_s = self.now(), self._sampled_s if self._sampled_s is not None else self.now()
        elapsed = read_s - self._synced_at
        if elapsed >= self.config.speed * (channelclock.OVERDUE_WALL_S if overdue else channelclock.RESYNC_WALL_S):
            error = channelclock.channel_rate_error(offset_s=offset, base_offset_s=self._rate_offset_s, elapsed_s=elapsed,
                                            speed=self.config.speed,
                                            tolerance=channelclock.OVERDUE_TOLERANCE if overdue else channelclock.RESYNC_TOLERANCE)
            if error is not None:
                raise PlaybackError(error)
            self._rate_offset_s, self._synced_at = offset, read_s
        if self.clock_lag_s is not None:
            # The channel follows this clock (CHANNEL_LAG_HEADER): the offset does not change, and
            # each sample only overstates it (sync_clock), so the smallest so far is the best.
            offset = min(offset, self.clock_offset_s)
        self.clock_offset_s = offset
        self.sync_schedule.synced(at, offset)  # the interval widens while the offset holds

    # -- report -------------------------------------------------------------------------------------

    def live_summary(self) -> dict[str, Any]:
        stats = self.session.stats()
        out: dict[str, Any] = {k: (round(v, 4) if isinstance(v, float) and math.isfinite(v) else v)
                               for k, v in stats.as_dict().items()}
        out.update({"target_latency_s": self.session.live.target_latency_s,
                    "chunk_s": self.session.schedule.chunk_duration_s, "early_requests": self.early_requests,
                    "manifest_refreshes": self.refreshes, "clock_offset_s": round(self.clock_offset_s, 4),
                    # how far the offset moved since the join: a clock that loses time the channel does
                    # not follow (an emulated player's, leaving out time the channel ran) drifts
                    "clock_drift_s": round(self.clock_offset_s - self.joined_offset_s, 4),
                    "played_s": round(self.session.time_s - (self.session.joined_at_s or self.session.time_s), 3),
                    "channel_age_s": round(self.channel_age_s, 3), "control_bytes": dict(self.control_bytes),
                    "resyncs_s": [round(t, 3) for t in self.resyncs_s],
                    # session time of the join: about the link's (trace) time then, as the link starts
                    # with the first shaped request, the clock sync at session time 0
                    "joined_at_s": None if self.session.joined_at_s is None else round(self.session.joined_at_s, 4)})
        p50 = self.session.throughput_p50_bps()
        out["throughput_p50_bps"] = None if p50 is None else round(p50)
        session = self.session
        qoe = LiveQoe.for_ladder(self.content.ladder.bitrates_bps, self.content.ladder.segment_duration_s).terms(
            bitrates_bps=[r.bitrate_bps for r in session.records], rebuffer_s=session.rebuffer_per_segment_s(),
            latency_s=session.record_latency_s, playback_rate=session.record_rate)
        out["qoe_live"] = {k: round(v, 3) for k, v in qoe.items()}
        out["qoe_live_per_segment"] = round(qoe["total"] / max(len(session.records), 1), 3)
        return out

    def _report(self, error: str | None) -> PlaybackReport:
        session = self.session
        records = tuple(session.records)
        ladder = self.content.ladder
        metrics = session_metrics(
            bitrates_bps=[r.bitrate_bps for r in records], rebuffer_s=session.rebuffer_per_segment_s(),
            ladder_bps=ladder.bitrates_bps, segment_duration_s=ladder.segment_duration_s,
            startup_s=session.startup_s or 0.0, rebuffer_count=session.stall_count)
        ends = [r.request_time_s + r.download_s for r in records]
        return PlaybackReport(
            title=self.source.title, abr=self.config.abr, metrics=metrics, records=records, frames_decoded=0,
            frames_failed=0, requests=self.requests, failed_requests=self.early_requests, abandoned=self.abandoned,
            duration_s=max(ends, default=0.0), first_frame_s=None, bootstrap_s=dict(self.source.timings_s),
            error=error, requests_by_media={"video": len(records), "audio": len(session.audio_records)},
            audio_records=tuple(session.audio_records), live=self.live_summary())


async def play_live(source: PlaybackSource, config: PlayerConfig, fetcher: Fetcher, *, live: LivePlayConfig,
                    events: EventSink, before_media: Callable[[], object] | None = None,
                    decoder: Decoder | None = None,
                    on_player: Callable[[LivePlayer], object] | None = None,
                    player_class: type[LivePlayer] | None = None,
                    clock_lag_s: Callable[[], float] | None = None,
                    finish_decoder: bool = False) -> PlaybackReport:
    """Play the live MPD of `source` for `live.duration_s` of session time; the report's `live` has
    latency p50/p95/max, join time, drift, rate changes, stalls and early requests. `decoder` gets
    the media as it arrives (`finish_decoder`: finished at the end, its frames in the report, as the
    headless player does); `on_player(player)` is handed the player before it runs (the desktop
    window reads its session); `player_class` another live player (HLS: `player.client.hlslive`)."""
    if before_media is not None:
        before_media()
    player = (player_class or LivePlayer)(source, config, fetcher, live=live, events=events, decoder=decoder,
                                          clock_lag_s=clock_lag_s, finish_decoder=finish_decoder)
    if on_player is not None:
        on_player(player)
    return await player.run()

