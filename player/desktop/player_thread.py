"""The desktop player's background thread: the headless player on its own asyncio loop, with
thread-safe controls (seek, pause, quality lock, stop) and a snapshot of the session the window reads.
"""

from __future__ import annotations

import asyncio
import math
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from abr.audio import AudioAware
from abr.estimators import harmonic_mean, throughput_bps
from abr.registry import make
from abr.types import Abandoning, AbrAlgorithm, Decision, Observation, Progress
from player.client.bootstrap import PlaybackSource
from player.client.decoding import Decoder
from player.client.fetch import Fetcher
from player.client.harness import LinkConfig, PlayTarget, play_headless
from player.client.headless import HeadlessPlayer, PlaybackReport, PlayerConfig
from player.desktop.config import DesktopConfig
from player.errors import CliError
from player.events import EventSink
from player.media.avsync import DesktopDecoder, FrameQueue, PcmBuffer


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
    end_s: float  # media time where playback ends (last fetched segment's end)
    has_audio: bool

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


class PlayerThread:
    """The headless player on its own event loop in a background thread, with thread-safe controls."""

    def __init__(self, target: PlayTarget, config: PlayerConfig, link: LinkConfig, *, frames: FrameQueue,
                 pcm: PcmBuffer, options: DesktopConfig, log_path: Path | None = None) -> None:
        self.target = target
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
        self.done = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._play_task: asyncio.Task[PlaybackReport] | None = None
        self._running = False  # the player's clock has started
        self._stopping = False  # shut down, possibly before the thread's loop existed
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

    def _shutdown(self) -> None:
        if self.decoder is not None:
            self.decoder.close()
        if self.player is not None:
            self.player.stop()
        elif self._play_task is not None:
            self._play_task.cancel()

    def _main(self) -> None:
        asyncio.run(self._run())

    async def _run(self) -> None:
        self._loop = asyncio.get_running_loop()
        if self._stopping:  # shut down before this loop could hear it (the window failed to open)
            self.done.set()
            return
        publisher = asyncio.create_task(self._publish())
        self._play_task = asyncio.create_task(play_headless(
            self.target, self.config, link=self.link, log_path=self.log_path,
            decoder_factory=self._make_decoder, player_factory=self._make_player))
        try:
            self.report = await self._play_task
        except asyncio.CancelledError:
            pass  # closed during bootstrap
        except BaseException as exc:  # noqa: BLE001 - handed to the UI thread, which re-raises it
            self.error = exc
        finally:
            publisher.cancel()
            self.done.set()

    def _make_decoder(self, source: PlaybackSource) -> DesktopDecoder:
        manifest = source.manifest
        video = manifest.video
        if video is None or not video.representations:
            raise CliError("the manifest has no video representations")
        reps = sorted(video.representations, key=lambda r: r.bandwidth_bps)
        renditions = tuple(Rendition(id=r.id, width=r.width or 0, height=r.height or 0, bandwidth_bps=r.bandwidth_bps)
                           for r in reps)
        top = max(renditions, key=lambda r: r.width * r.height)
        texture = fit_size(top.width or 640, top.height or 360, *self.options.max_texture_px)
        count = min(r.segment_count for r in reps)
        if self.config.max_segments is not None:
            count = min(count, self.config.max_segments)
        end_s = reps[0].segments[count - 1].start_s + reps[0].segments[count - 1].duration_s if count else 0.0
        has_audio = self.config.audio and manifest.audio is not None and bool(manifest.audio.representations)
        self.media = MediaInfo(title=source.title, renditions=renditions, texture_size_px=texture, end_s=end_s,
                               has_audio=has_audio)
        self.decoder = DesktopDecoder(source, self.frames, self.pcm, texture_size_px=texture, on_started=self._started)
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
            player = self.player
            if player is not None and self._running and not self.done.is_set():
                session = player.session
                session.advance(player.now())
                if time.monotonic() - last_qoe_wall >= 1.0 and session.records:
                    # The headless report's own QoE computation, on what has been fetched so far.
                    qoe = dict(player.metrics().qoe)
                    last_qoe_wall = time.monotonic()
                self.snapshot = self._snapshot(player, qoe)
            await asyncio.sleep(self.options.snapshot_interval_s)

    def _snapshot(self, player: HeadlessPlayer, qoe: dict[str, float] | None) -> PlayerSnapshot:
        session = player.session
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
            audio_segments_fetched=len(session.audio_records),
        )


def fit_size(width: int, height: int, max_width: int, max_height: int) -> tuple[int, int]:
    """(width, height) scaled down (never up) to fit, aspect kept, both even."""
    scale = min(1.0, max_width / width, max_height / height)
    return max(2, int(width * scale) // 2 * 2), max(2, int(height * scale) // 2 * 2)
