"""The desktop player's background thread: the headless player on its own asyncio loop, with
thread-safe controls (seek, pause, quality lock, stop) and a snapshot of the session the window reads.
"""

from __future__ import annotations

import asyncio
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from abr.audio import AudioAware
from abr.estimators import harmonic_mean, throughput_bps
from abr.registry import make
from abr.types import Abandoning, AbrAlgorithm, Decision, Observation, Progress
from player.client.bootstrap import PlaybackSource
from player.client.decoding import Decoder, ErrorLog
from player.client.fetch import Fetcher
from player.client.harness import DemoTarget, LinkConfig, PlayTarget, TitleTarget, play_headless
from player.client.headless import HeadlessPlayer, PlaybackReport, PlayerConfig
from player.client.hlslive import live_player_class
from player.client.liveplay import LivePlayConfig, LivePlayer
from player.client.streamkind import StreamOptions
from player.desktop.config import DesktopConfig
from player.desktop.demostack import DemoStackProcess
from player.errors import CliError
from player.events import EventSink, emit_event
from player.media.avsync import DesktopDecoder, FrameQueue, PcmBuffer, VideoFrame
from player.session import PlaybackSession

# A window plays a live channel until the user quits; the session still needs an end (its segment
# count): four hours.
WINDOW_LIVE_DURATION_S = 4 * 3600.0


@dataclass(frozen=True, kw_only=True, slots=True)
class Rendition:
    id: str
    width: int
    height: int
    bandwidth_bps: int


@dataclass(frozen=True, kw_only=True, slots=True)
class MediaInfo:
    """What the window needs from the manifest."""

    title: str
    renditions: tuple[Rendition, ...]  # video, ascending by bitrate (= quality index)
    texture_size_px: tuple[int, int]
    end_s: float  # media time where playback ends (last fetched segment's end; inf for a live channel)
    has_audio: bool
    live: bool = False  # a live channel: the window's clock follows the live session (its sound follows it)

    def rendition(self, rep_id: str) -> Rendition | None:
        return next((r for r in self.renditions if r.id == rep_id), None)


@dataclass(frozen=True, kw_only=True, slots=True)
class PlayerSnapshot:
    """The session as the player thread last saw it (published every `snapshot_interval_s`)."""

    time_s: float
    playhead_s: float
    buffer_s: float
    started: bool
    stalled: bool
    paused: bool
    finished: bool  # every segment fetched
    quality: int | None  # of the last segment fetched
    throughput_bps: float | None  # harmonic mean of the last 5 downloads
    abr: str
    decision: str  # the last decision, with its reason
    locked_quality: int | None
    segments_fetched: int
    segment_count: int
    rebuffer_s: float
    stall_count: int
    qoe: dict[str, float] | None = None  # QoE so far (lin/log/hd), refreshed about once a second
    # Each media type's own buffer (`buffer_s` is the playable one, their minimum); audio is None
    # without an audio pipeline.
    video_buffer_s: float = 0.0
    audio_buffer_s: float | None = None
    audio_segments_fetched: int = 0
    wall_s: float = 0.0  # time.monotonic() when taken (a live window's clock runs on from here)
    live: LiveState | None = None  # a live channel's latency and rate


@dataclass(frozen=True, kw_only=True, slots=True)
class LiveState:
    """A live session's steering, as the overlay shows it."""

    latency_s: float  # wall-clock latency: media the channel made since it started minus the playhead
    target_latency_s: float
    playback_rate: float
    behind_edge_s: float  # the live edge (newest published media) minus the playhead
    rate_changes: int
    seeks_to_live: int


@dataclass(kw_only=True, slots=True)
class StartupMarks:
    """When the player thread reached each step of a cold start (unix seconds; None: not yet)."""

    stack_ready_unix_s: float | None = None  # the gateway is known (the demo stack serves)
    bootstrapped_unix_s: float | None = None  # logged in, playback API, manifest and keys done
    first_segment_unix_s: float | None = None  # the first media segment downloaded
    first_decoded_unix_s: float | None = None  # the first video frame decoded and converted


class LockableAbr:
    """The registry's ABR object with a user override: while `locked_quality` is set every decision is
    that quality ("locked by user"); otherwise the wrapped algorithm decides, unchanged."""

    def __init__(self, inner: AbrAlgorithm) -> None:
        self.inner = inner
        self.name = inner.name
        self.locked_quality: int | None = None
        self.last_decision: Decision | None = None
        if isinstance(inner, AudioAware):  # the algorithm's own audio choice stays its own
            self.decide_audio = inner.decide_audio

    def lock(self, quality: int | None) -> None:
        self.locked_quality = quality

    def decide(self, obs: Observation) -> Decision:
        if self.locked_quality is not None:
            decision = Decision(quality=min(self.locked_quality, obs.ladder.top), reason="locked by user")
        else:
            decision = self.inner.decide(obs)
        self.last_decision = decision
        return decision

    def should_abandon(self, progress: Progress) -> Decision | None:
        if self.locked_quality is not None or not isinstance(self.inner, Abandoning):
            return None
        return self.inner.should_abandon(progress)


def log_audio_failures(failures: ErrorLog, logged: int, sink: EventSink, now_s: Callable[[], float]) -> int:
    """Put the audio segments that failed since the first `logged` into the session's event log (the
    `--log` stream) as `audio_failure` events (rendition, segment, reason), at session time `now_s()`;
    returns how many are logged now. The overlay, summary and JSON say the same (`sound_summary`).
    (Failures the bounded log no longer keeps are not logged: more than `KEPT_ERRORS` between two
    calls 50 ms apart, more than any stream's segments.)"""
    new, count, _ = failures.since(logged)
    for _, failure in new:
        if failure is not None:
            emit_event(sink, now_s(), "audio_failure", rendition=failure.rendition,
                       segment=failure.segment_index, reason=failure.reason)
    return max(logged, count)


class PlayerThread:
    """The headless player on its own event loop in a background thread, with thread-safe controls."""

    def __init__(self, target: PlayTarget, config: PlayerConfig, link: LinkConfig, *, frames: FrameQueue,
                 pcm: PcmBuffer, options: DesktopConfig, log_path: Path | None = None,
                 demo_stack: DemoStackProcess | None = None, marks: StartupMarks | None = None,
                 live: LivePlayConfig | None = None, stream_options: StreamOptions = StreamOptions()) -> None:
        self.target = target
        self.stream_options = stream_options
        self.live = live if live is not None else LivePlayConfig(duration_s=WINDOW_LIVE_DURATION_S)
        # The demo title plays from a stack in its own process (started now if the caller has not
        # already: `abrkit play` starts it before importing the player).
        self.demo_stack = demo_stack
        if isinstance(target, DemoTarget) and demo_stack is None:
            self.demo_stack = DemoStackProcess(protocol=target.protocol).start()
        self.marks = marks if marks is not None else StartupMarks()
        self.config = config
        self.link = link
        self.frames = frames
        self.pcm = pcm
        self.options = options
        self.log_path = log_path
        self.abr = LockableAbr(make(config.abr, **dict(config.abr_params)))
        self.media: MediaInfo | None = None
        self.snapshot: PlayerSnapshot | None = None
        self.report: PlaybackReport | None = None
        self.error: BaseException | None = None
        self.decoder: DesktopDecoder | None = None
        self.player: HeadlessPlayer | None = None
        self.live_player: LivePlayer | None = None  # a live channel's player (then `player` stays None)
        self.done = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._play_task: asyncio.Task[PlaybackReport] | None = None
        self._running = False  # the player's clock has started
        self._stopping = False  # shut down, possibly before the thread's loop existed
        self._audio_failures_logged = 0
        self._audio_failures_lock = threading.Lock()  # the publisher and the decoder's last word (`on_settled`)
        self._thread = threading.Thread(target=self._main, name="abrkit-player", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def join(self, timeout_s: float) -> bool:
        self._thread.join(timeout_s)
        return not self._thread.is_alive()

    # -- controls: any thread ---------------------------------------------------------------------

    def _call(self, fn: Any, *args: Any) -> None:
        loop = self._loop
        if loop is not None and not loop.is_closed():
            try:
                loop.call_soon_threadsafe(fn, *args)
            except RuntimeError:  # the loop closed in between: playback is over anyway
                pass

    def seek(self, position_s: float) -> None:
        self._call(self._seek, position_s)

    def note_join_without_audio(self, waited_s: float) -> None:
        """The live window's join started the picture without sound after `waited_s` (livejoin.py)."""
        self._call(self._join_without_audio, waited_s)

    def set_paused(self, paused: bool) -> None:
        self._call(self._set_paused, paused)

    def lock_quality(self, quality: int | None) -> None:
        self._call(self.abr.lock, quality)

    def shutdown(self) -> None:
        """Stop fetching and decoding; the run ends with a report (or is cancelled during bootstrap)."""
        self._stopping = True
        self.frames.close()
        self._call(self._shutdown)

    # -- on the player thread ---------------------------------------------------------------------

    def _seek(self, position_s: float) -> None:
        if self.player is not None:
            self.player.request_seek(position_s)

    def _set_paused(self, paused: bool) -> None:
        if self.player is not None and self._running:
            self.player.session.set_paused(self.player.now(), paused)
        live = self.live_player
        if live is not None and self._running and getattr(live, "session", None) is not None:
            live.session.set_paused(live.now(), paused)

    def _shutdown(self) -> None:
        if self.decoder is not None:
            self.decoder.stop_presenting()  # the harness joins its workers when the session ends
        if self.player is not None:
            self.player.stop()
        elif self.live_player is not None:
            self.live_player.stop()
        elif self._play_task is not None:
            self._play_task.cancel()

    def _main(self) -> None:
        asyncio.run(self._run())

    async def _run(self) -> None:
        self._loop = asyncio.get_running_loop()
        if self._stopping:  # shut down before this loop could hear it (the window failed to open)
            if self.demo_stack is not None:
                await asyncio.to_thread(self.demo_stack.stop)
            self.done.set()
            return
        publisher = asyncio.create_task(self._publish())
        self._play_task = asyncio.create_task(self._play())
        try:
            self.report = await self._play_task
        except asyncio.CancelledError:
            pass  # closed during bootstrap
        except BaseException as exc:  # noqa: BLE001 - handed to the UI thread, which re-raises it
            self.error = exc
        finally:
            publisher.cancel()
            if self.demo_stack is not None:
                await asyncio.to_thread(self.demo_stack.stop)
            self.done.set()

    async def _play(self) -> PlaybackReport:
        target = self.target
        if isinstance(target, DemoTarget):
            assert self.demo_stack is not None
            address = await asyncio.to_thread(self.demo_stack.ready)
            target = TitleTarget(title="demo", gateway_url=address.gateway_url, username=address.username,
                                 password=address.password, protocol=target.protocol)
        self.marks.stack_ready_unix_s = time.time()
        return await play_headless(target, self.config, link=self.link, log_path=self.log_path,
                                   decoder_factory=self._make_decoder, player_factory=self._make_player,
                                   live=self.live, on_live_player=self._set_live_player,
                                   stream_options=self.stream_options)

    def _set_live_player(self, player: LivePlayer) -> None:
        self.live_player = player

    def _make_decoder(self, source: PlaybackSource) -> DesktopDecoder:
        self.marks.bootstrapped_unix_s = time.time()
        manifest = source.manifest
        video = manifest.video
        if video is None or not video.representations:
            raise CliError("the manifest has no video representations")
        reps = sorted(video.representations, key=lambda r: r.bandwidth_bps)
        renditions = tuple(Rendition(id=r.id, width=r.width or 0, height=r.height or 0, bandwidth_bps=r.bandwidth_bps)
                           for r in reps)
        top = max(renditions, key=lambda r: r.width * r.height)
        texture = fit_size(top.width or 640, top.height or 360, *self.options.max_texture_px)
        live_class = live_player_class(manifest)
        if live_class is not None:  # open-ended (MPD or HLS); its audio plays if the live player fetches it
            has_audio = self.config.audio and bool(live_class.audio_representations(manifest))
            self.media = MediaInfo(title=source.title, renditions=renditions, texture_size_px=texture,
                                   end_s=math.inf, has_audio=has_audio, live=True)
            self.decoder = DesktopDecoder(source, self.frames, self.pcm, texture_size_px=texture,
                                          on_started=self._started,  # chunks or not: the live player's `start` says
                                          on_settled=self._log_audio_failures)
            return self.decoder
        count = min(r.segment_count for r in reps)
        if self.config.max_segments is not None:
            count = min(count, self.config.max_segments)
        end_s = reps[0].segments[count - 1].start_s + reps[0].segments[count - 1].duration_s if count else 0.0
        has_audio = self.config.audio and manifest.audio is not None and bool(manifest.audio.representations)
        self.media = MediaInfo(title=source.title, renditions=renditions, texture_size_px=texture, end_s=end_s,
                               has_audio=has_audio)
        self.decoder = DesktopDecoder(source, self.frames, self.pcm, texture_size_px=texture, on_started=self._started,
                                      on_settled=self._log_audio_failures)
        return self.decoder

    def _make_player(self, source: PlaybackSource, config: PlayerConfig, fetcher: Fetcher, *, events: EventSink,
                     decoder: Decoder | None) -> HeadlessPlayer:
        on_seek = decoder.flush if isinstance(decoder, DesktopDecoder) else None
        self.player = HeadlessPlayer(source, config, fetcher, events=events, decoder=decoder, abr=self.abr,
                                     interactive=True, on_seek=on_seek)
        return self.player

    def _started(self) -> None:
        self._running = True

    async def _publish(self) -> None:
        last_qoe_wall = -math.inf
        qoe: dict[str, float] | None = None
        while True:
            self._log_audio_failures()
            live = self.live_player
            if live is not None and getattr(live, "session", None) is not None:
                self._publish_live(live)
                await asyncio.sleep(self.options.snapshot_interval_s)
                continue
            player = self.player
            if player is not None and self.marks.first_segment_unix_s is None and player.session.records:
                self.marks.first_segment_unix_s = time.time()
            if player is not None and self._running and not self.done.is_set():
                session = player.session
                session.advance(player.now())
                if time.monotonic() - last_qoe_wall >= 1.0 and session.records:
                    # The headless report's own QoE computation, on what has been fetched so far.
                    qoe = dict(player.metrics().qoe)
                    last_qoe_wall = time.monotonic()
                self.snapshot = self._snapshot(player, qoe)
            await asyncio.sleep(self.options.snapshot_interval_s)

    def _log_audio_failures(self) -> None:
        # Every 50 ms (the publisher), and once the decoder has settled (VOD: finished, live: closed by
        # the session's end; both before the player's `end` event), so the log misses none.
        # At the session's time (its clock as last advanced, <= 50 ms ago): a Period's player that has
        # not started yet has no clock to read.
        player = self.live_player if self.live_player is not None else self.player
        session = getattr(player, "session", None)
        if self.decoder is not None and player is not None and session is not None:
            with self._audio_failures_lock:
                self._audio_failures_logged = log_audio_failures(
                    self.decoder.audio_log, self._audio_failures_logged, player.events, lambda: session.time_s)

    def _join_without_audio(self, waited_s: float) -> None:
        player = self.live_player
        session = getattr(player, "session", None)
        if player is not None and session is not None:
            emit_event(player.events, session.time_s, "audio_missing", waited_s=round(waited_s, 3),
                       reason=f"no audio decoded at the join within {waited_s:.1f} s: the picture started without sound")

    def _publish_live(self, player: LivePlayer) -> None:
        session = player.session
        if self.marks.first_segment_unix_s is None and session.records:
            self.marks.first_segment_unix_s = time.time()
        if not self._running or self.done.is_set():
            return
        session.advance(max(player.now(), session.time_s))
        base = self._snapshot_of(session, None, wall_s=time.monotonic())
        live = LiveState(latency_s=session.latency_s, target_latency_s=session.live.target_latency_s,
                         playback_rate=session.playback_rate,
                         behind_edge_s=session.schedule.edge_s(session.time_s) - session.playhead_s,
                         rate_changes=session.rate_changes, seeks_to_live=session.seeks_to_live)
        self.snapshot = replace(base, live=live)

    def _snapshot(self, player: HeadlessPlayer, qoe: dict[str, float] | None) -> PlayerSnapshot:
        return self._snapshot_of(player.session, qoe, wall_s=time.monotonic())

    def _snapshot_of(self, session: PlaybackSession, qoe: dict[str, float] | None, *,
                     wall_s: float) -> PlayerSnapshot:
        recent = session.records[-5:]
        rates = [throughput_bps(r.size_bytes, r.download_s) for r in recent if r.download_s > 0]
        throughput = harmonic_mean(rates) if rates else None
        decision = self.abr.last_decision
        return PlayerSnapshot(
            time_s=session.time_s, playhead_s=session.playhead_s, buffer_s=session.buffer_s,
            started=session.started, stalled=session.stalled, paused=session.paused, finished=session.finished,
            quality=session.last_quality, throughput_bps=throughput, abr=self.abr.name,
            decision="" if decision is None else f"q{decision.quality}: {decision.reason or '-'}",
            locked_quality=self.abr.locked_quality, segments_fetched=len(session.records),
            segment_count=session.segment_count, rebuffer_s=session.total_rebuffer_s,
            stall_count=session.stall_count, qoe=qoe, video_buffer_s=session.buffer_level_s("video"),
            audio_buffer_s=session.buffer_level_s("audio") if "audio" in session.media_types else None,
            audio_segments_fetched=len(session.audio_records), wall_s=wall_s,
        )


class MarkedFrameQueue(FrameQueue):
    """A `FrameQueue` that notes when its first frame arrived (the cold start's "first decode")."""

    def __init__(self, capacity_frames: int, marks: StartupMarks) -> None:
        super().__init__(capacity_frames)
        self._marks = marks

    def put(self, frame: VideoFrame) -> bool:
        if self._marks.first_decoded_unix_s is None:
            self._marks.first_decoded_unix_s = time.time()
        return super().put(frame)


def fit_size(width: int, height: int, max_width: int, max_height: int) -> tuple[int, int]:
    """(width, height) scaled down (never up) to fit, aspect kept, both even."""
    scale = min(1.0, max_width / width, max_height / height)
    return max(2, int(width * scale) // 2 * 2), max(2, int(height * scale) // 2 * 2)
