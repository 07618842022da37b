"""The desktop player: the headless player plus decoding to a pyglet window.

Threads: the `HeadlessPlayer` (fetching, the session, the ABR) runs on its own asyncio loop in a
background thread; `DesktopDecoder`'s workers decode and convert off both; pyglet's main thread only
uploads textures, draws and plays audio. Controls cross to the player thread with
`call_soon_threadsafe`. The clock is pyglet's `Player.time`, the master clock its audio output is held
to; a frame is presented when its pts <= that clock, frames overtaken before a flip are dropped and
counted, and each presented frame's offset (pts - clock at the flip) is recorded.
"""

from __future__ import annotations

import ctypes
import os
import sys
import time
from pathlib import Path
from typing import Any

import pyglet

from player.client.harness import DemoTarget, LinkConfig, PlayTarget
from player.client.headless import PlayerConfig
from player.client.liveplay import LivePlayConfig
from player.client.streamkind import StreamOptions
from player.desktop import DesktopUnavailable
from player.desktop.config import DesktopConfig
from player.desktop.demostack import DemoStackProcess
from player.desktop.liveclock import SessionClock
from player.desktop.livejoin import LiveJoin
from player.desktop.livesound import LiveSound, sound_lines, sound_summary
from player.desktop.overlay import History, HistoryPoint, Spinner, StatsPanel, SummaryPanel
from player.desktop.player_thread import (
    LiveState,
    MarkedFrameQueue,
    MediaInfo,
    PlayerSnapshot,
    PlayerThread,
    StartupMarks,
    fit_size,
)
from player.desktop.summary import (
    DesktopResult,
    PresentedFrame,
    SeekRecord,
    StartupTimes,
    presentation_lines,
    print_summary,
    report_lines,
)
from player.errors import CliError
from player.media.avsync import PcmBuffer, SyncStats, VideoFrame
from player.media.stretch import StretchReader

# Tried in order; 'silent' keeps the clock running where there is no sound device (CI, Xvfb).
AUDIO_DRIVERS = ("openal", "pulse", "xaudio2", "directsound", "silent")
# pyglet's own media decoders, which we never use (PyAV decodes): see configure_pyglet.
PYGLET_DECODER_MODULES = ("pyglet.media.codecs.ffmpeg_lib", "pyglet.media.codecs.ffmpeg",
                          "pyglet.media.codecs.gstreamer", "pyglet.media.codecs.pyogg")
SEEK_STEP_S = 10.0
DOUBLE_CLICK_S = 0.3
AUDIO_READY_S = 1.0  # PCM wanted ahead of the clock before audio starts (pyglet reads ~0.9 s ahead)
# A live frame later than this behind the clock (and the sound) is dropped, not shown: ITU-R
# BT.1359's detectability threshold for audio ahead of video is about 125 ms.
LIVE_LATE_DROP_S = 0.125
LIVE_AUDIO_BUFFER_S = 0.3  # a live window's audio output reads this far ahead (pyglet's default: 0.9 s)
AUDIO_WAIT_S = 1.5  # start without that PCM after waiting this long (a failed audio segment must not hang)


def letterbox(window_w: int, window_h: int, video_w: int, video_h: int) -> tuple[int, int, int, int]:
    """The largest rectangle with the video's aspect ratio centred in the window: (x, y, w, h) px."""
    scale = min(window_w / video_w, window_h / video_h)
    w, h = max(1, round(video_w * scale)), max(1, round(video_h * scale))
    return (window_w - w) // 2, (window_h - h) // 2, w, h


def configure_pyglet() -> None:
    """pyglet's module options, set before its media and window modules are first used."""
    pyglet.options["audio"] = AUDIO_DRIVERS
    pyglet.options["debug_gl"] = False  # a glGetError after every GL call costs frames under llvmpipe
    # pyglet.media registers its own decoders on import, loading the system's FFmpeg libraries
    # through ctypes (about 0.45 s, a third of the window's start) and GStreamer/PyOgg if present.
    # PyAV decodes here and pyglet only plays our PCM, so they are marked absent (a None entry in
    # sys.modules makes their import fail, which pyglet treats as "not installed").
    for name in PYGLET_DECODER_MODULES:
        if name not in sys.modules:
            sys.modules[name] = None  # type: ignore[assignment]


def _pcm_source(pcm: PcmBuffer, reader: StretchReader | None = None) -> Any:
    """A pyglet audio source reading the PCM buffer (through `reader`, a live window's time-stretcher,
    if given), never exhausted (pyglet.media needs a display to import, hence the class is made here)."""
    import pyglet.media
    from pyglet.media.codecs import AudioData, AudioFormat

    class PcmSource(pyglet.media.StreamingSource):
        def __init__(self) -> None:
            output = pcm.output
            self.audio_format = AudioFormat(
                channels=output.channels, sample_size=8 * output.bytes_per_sample, sample_rate=output.sample_rate_hz)
            self._duration = None

        def is_precise(self) -> bool:
            return True  # exactly the bytes asked for, always

        def get_audio_data(self, num_bytes: int, compensation_time: float = 0.0) -> AudioData:
            data = pcm.read(num_bytes) if reader is None else reader.read(num_bytes)
            return AudioData(data, len(data))

        def seek(self, timestamp: float) -> None:
            if reader is None:
                pcm.seek(timestamp)
            else:
                reader.reset(timestamp)

    return PcmSource()


def _window_class() -> type:
    """A pyglet window that reports each flip, so a frame's A/V offset is measured when it goes on screen."""
    import pyglet.window

    class FlipReportingWindow(pyglet.window.Window):  # type: ignore[misc]
        def __init__(self, *args: Any, on_flip: Any, **kwargs: Any) -> None:
            self._on_flip = on_flip
            super().__init__(*args, **kwargs)

        def flip(self) -> None:
            super().flip()
            self._on_flip()

    return FlipReportingWindow


class DesktopApp:
    """The window: presentation against the audio clock, controls, overlay, automation hooks."""

    def __init__(self, target: PlayTarget, config: PlayerConfig, link: LinkConfig = LinkConfig(),
                 options: DesktopConfig = DesktopConfig(), *, log_path: Path | None = None,
                 exit_after_s: float | None = None, screenshot: Path | None = None,
                 demo_stack: DemoStackProcess | None = None, command_start_unix_s: float | None = None,
                 live: LivePlayConfig | None = None, stream_options: StreamOptions = StreamOptions()) -> None:
        if config.speed != 1.0:
            raise CliError(f"the desktop player plays in real time (speed 1); got --speed {config.speed}")
        if exit_after_s is not None and not exit_after_s > 0:
            raise ValueError(f"exit-after must be > 0 s, got {exit_after_s}")
        self.options = options
        self.exit_after_s = exit_after_s
        self.screenshot = screenshot
        self.marks = StartupMarks()
        self.command_start_unix_s = command_start_unix_s
        self.frames = MarkedFrameQueue(options.frame_queue_frames, self.marks)
        self.pcm = PcmBuffer()
        self.stats = SyncStats()
        self.backend = PlayerThread(target, config, link, frames=self.frames, pcm=self.pcm, options=options,
                                    log_path=log_path, demo_stack=demo_stack, marks=self.marks, live=live,
                                    stream_options=stream_options)
        self.show_stats = options.show_stats
        self.user_paused = False
        self.ended = False
        self.window: Any = None
        self.audio: pyglet.media.Player | SessionClock | None = None  # the clock: audio, or a live session
        self.sound: LiveSound | None = None  # a live window's sound, following the session clock
        self.join: LiveJoin | None = None  # a live window's join: the picture waits for the sound
        self._audio_buffer_s = 0.9  # pyglet's audio read-ahead, put back after a live window's sound
        self._texture: pyglet.image.Texture | None = None
        self._texture_view: pyglet.image.TextureRegion | None = None
        self._epoch = 0
        self._needs_resync = True  # the audio clock must jump to the stream position before playing
        self._clock_started = False  # the presentation clock has run at least once
        self._to_present: VideoFrame | None = None  # uploaded this draw, counted at the flip
        self._update_clock_s = 0.0  # the clock when this draw took its frame
        self._waiting_since: float | None = None  # since when the session plays but the clock waits for data
        self._dirty = True  # the window needs a redraw even without a new frame
        self._summary_up = False
        self._flip_latency_s = 0.0  # moving average of clock advance from taking a frame to its flip
        self._last_frame: VideoFrame | None = None
        self._seeks: list[dict[str, float | None]] = []
        self._opened_wall = 0.0
        self._opened_unix_s = 0.0
        self._first_frame_unix_s: float | None = None
        self._last_tick_wall: float | None = None
        self._ui_max_gap_s = 0.0  # after the first frame
        self._next_history_wall = 0.0
        self._next_stats_wall = 0.0
        self._history = History()
        self._panel: StatsPanel | None = None
        self._spinner: Spinner | None = None
        self._summary: SummaryPanel | None = None
        self._quitting = False
        self._pending_click = False
        self._saved_screenshot: Path | None = None
        self._window_sized = options.window_size_px is not None
        self._steps: list[tuple[float, Any]] = []

    # -- automation (tests, bench) ----------------------------------------------------------------

    def at(self, wall_s: float, action: Any) -> None:
        """Run `action(app)` on the UI thread `wall_s` seconds after the window opens."""
        self._steps.append((wall_s, action))

    @property
    def clock_s(self) -> float:
        """The presentation clock (media seconds): pyglet's master clock, which the audio follows."""
        return self.audio.time if self.audio is not None else 0.0

    def press(self, symbol: int, modifiers: int = 0) -> None:
        """Act as if a key was pressed (what the window's key handler does)."""
        self._on_key_press(symbol, modifiers)

    def save_screenshot(self, path: Path) -> Path:
        """Draw the current state and save the window's colour buffer as PNG."""
        assert self.window is not None
        if self._to_present is not None:  # uploaded but not flipped yet: it is what gets drawn
            self._last_frame, self._to_present = self._to_present, None
        self.window.switch_to()
        self._draw()
        path.parent.mkdir(parents=True, exist_ok=True)
        pyglet.image.get_buffer_manager().get_color_buffer().save(str(path))
        return path

    # -- lifecycle ----------------------------------------------------------------------------------

    def run(self) -> DesktopResult:
        # The player thread first: starting the local stack, logging in and fetching the first
        # segments take longer than opening the window (GL context, fonts, audio), so they overlap.
        # It only fills the frame queue and PCM buffer, which the window reads once it is up.
        self.backend.start()
        try:
            configure_pyglet()
            self.window = self._open_window()
            import pyglet.media

            self.audio = pyglet.media.Player()
            self.audio.queue(_pcm_source(self.pcm))
            self._panel, self._spinner, self._summary = StatsPanel(), Spinner(), SummaryPanel()
        except BaseException:
            self.backend.shutdown()  # no window: stop the stack it may be starting, then say why
            self.backend.join(self.options.join_timeout_s)
            raise
        self._opened_wall = time.monotonic()
        self._opened_unix_s = time.time()
        if self.exit_after_s is not None:
            pyglet.clock.schedule_once(lambda dt: self.quit(), self.exit_after_s)
        for wall_s, action in self._steps:
            pyglet.clock.schedule_once(lambda dt, a=action: a(self), wall_s)
        # We draw ourselves, and only when something changed (a new frame, the overlay, a spinner):
        # a 24 fps stream then costs 24 redraws a second, not 60 (llvmpipe pays per pixel drawn).
        pyglet.clock.schedule_interval(self._tick, 1.0 / self.options.refresh_hz)
        try:
            pyglet.app.run(None)
        finally:
            self.quit()
            self.backend.join(self.options.join_timeout_s)
            window_size = (self.window.width, self.window.height)
            video_rect = self._video_rect()
            self.audio.pause()
            self.audio.delete()
            if self.sound is not None:
                from pyglet.media.drivers.base import AbstractAudioPlayer

                self.sound.delete()
                AbstractAudioPlayer.audio_buffer_length = self._audio_buffer_s
            self.window.close()
        if self.backend.error is not None:
            raise self.backend.error
        from pyglet.media.drivers import get_audio_driver

        driver = get_audio_driver()
        return DesktopResult(
            report=self.backend.report, frames_presented=self.stats.frames_presented,
            frames_dropped=self.stats.frames_dropped, av_offset=self.stats.summary(),
            audio_driver=type(driver).__name__ if driver is not None else "none",
            audio_silence_s=self.pcm.silence_frames / self.pcm.sample_rate_hz,
            last_frame=None if self._last_frame is None else PresentedFrame(pts_s=self._last_frame.pts_s,
                                                                           rendition=self._last_frame.rendition),
            seeks=tuple(SeekRecord(target_s=s["target_s"] or 0.0, landed_s=s["landed_s"],
                                   first_frame_pts_s=s["first_frame_pts_s"]) for s in self._seeks),
            window_size_px=window_size, video_rect_px=video_rect, screenshot=self._saved_screenshot,
            ended=self.ended, live_sound=self.live_sound_summary(),
            startup=StartupTimes(window_open_unix_s=self._opened_unix_s, first_frame_unix_s=self._first_frame_unix_s,
                                 ui_max_gap_after_first_frame_s=self._ui_max_gap_s,
                                 command_start_unix_s=self.command_start_unix_s,
                                 stack_ready_unix_s=self.marks.stack_ready_unix_s,
                                 bootstrapped_unix_s=self.marks.bootstrapped_unix_s,
                                 first_segment_unix_s=self.marks.first_segment_unix_s,
                                 first_decoded_unix_s=self.marks.first_decoded_unix_s),
        )

    def quit(self) -> None:
        if self._quitting:
            return
        self._quitting = True
        if self.screenshot is not None and self.window is not None:
            self._saved_screenshot = self.save_screenshot(self.screenshot)
        if self.audio is not None:
            self.audio.pause()
        self.backend.shutdown()
        pyglet.app.exit()

    def _open_window(self) -> Any:
        display = os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY") or "(default)"
        width, height = self.options.window_size_px or (960, 540)
        try:
            window = _window_class()(width, height, caption="abrkit", resizable=True, vsync=self.options.vsync,
                                     on_flip=self._on_flip)
        except Exception as exc:  # noqa: BLE001 - the boundary: no display, no GL, no libGL; say which
            raise DesktopUnavailable(f"cannot open a window on display {display}: "
                                     f"{type(exc).__name__}: {exc}") from None
        window.push_handlers(on_draw=self._draw, on_key_press=self._on_key_press, on_expose=self._invalidate,
                             on_resize=self._on_resize, on_mouse_press=self._on_mouse_press,
                             on_close=self._on_close)
        return window

    def _invalidate(self) -> None:
        self._dirty = True

    def _on_resize(self, width: int, height: int) -> None:
        self._dirty = True  # pyglet's own handler (viewport, projection) runs after this one

    def _on_close(self) -> bool:
        self.quit()
        return pyglet.event.EVENT_HANDLED

    # -- controls ---------------------------------------------------------------------------------

    def _on_key_press(self, symbol: int, modifiers: int) -> bool:
        key = pyglet.window.key
        if symbol in (key.Q, key.ESCAPE):
            self.quit()
        elif symbol == key.SPACE:
            self.toggle_pause()
        elif symbol in (key.LEFT, key.RIGHT):
            self.seek_by(SEEK_STEP_S if symbol == key.RIGHT else -SEEK_STEP_S)
        elif symbol == key.F:
            self.toggle_fullscreen()
        elif symbol == key.S:
            self.show_stats = not self.show_stats
            self._dirty = True
        elif symbol == key.A:
            self.backend.lock_quality(None)
        elif key._1 <= symbol <= key._9:
            self.backend.lock_quality(symbol - key._1)
        else:
            return False
        return pyglet.event.EVENT_HANDLED

    def _on_mouse_press(self, x: int, y: int, button: int, modifiers: int) -> None:
        if button != pyglet.window.mouse.LEFT:
            return
        if self._pending_click:  # second click in time: a double-click
            self._pending_click = False
            pyglet.clock.unschedule(self._single_click)
            self.toggle_fullscreen()
            return
        self._pending_click = True
        pyglet.clock.schedule_once(self._single_click, DOUBLE_CLICK_S)

    def _single_click(self, dt: float) -> None:
        self._pending_click = False
        self.toggle_pause()

    def toggle_pause(self) -> None:
        self.user_paused = not self.user_paused
        self._dirty = True
        if self.user_paused and self.audio is not None:
            self.audio.pause()
        self.backend.set_paused(self.user_paused)

    def toggle_fullscreen(self) -> None:
        if self.window is not None:
            self.window.set_fullscreen(not self.window.fullscreen)

    def seek_by(self, delta_s: float) -> None:
        media = self.backend.media
        if media is None or self.backend.player is None:
            return
        target = min(max(self.clock_s + delta_s, 0.0), max(media.end_s - 0.001, 0.0))
        self._seeks.append({"target_s": target, "landed_s": None, "first_frame_pts_s": None})
        if self.audio is not None:
            self.audio.pause()
        self.ended = False
        self.backend.seek(target)

    # -- presentation -----------------------------------------------------------------------------

    def _update(self) -> None:
        """Once per redraw: follow seeks, start/stop the clock, take the due frame and upload it."""
        assert self.audio is not None
        media, snap, decoder = self.backend.media, self.backend.snapshot, self.backend.decoder
        now_wall = time.monotonic() - self._opened_wall
        if media is not None and not self._window_sized:
            self._size_window(media)
        if media is not None and media.live and not isinstance(self.audio, SessionClock):
            # A live channel: the clock is the live session's playhead at its playback rate; the
            # sound, if any, follows it (livesound.py).
            self.audio.pause()
            self.audio.delete()
            self.audio = SessionClock()
            self.join = LiveJoin(has_audio=media.has_audio, on_without_audio=self.backend.note_join_without_audio)
            if media.has_audio:
                from pyglet.media import Player
                from pyglet.media.drivers.base import AbstractAudioPlayer

                # pyglet reads 0.9 s ahead; what is read ahead is heard before a rate change or a
                # jump of the clock can be steered: the window's only audio output reads less
                # (pyglet's default is put back when the window closes).
                self._audio_buffer_s = AbstractAudioPlayer.audio_buffer_length
                AbstractAudioPlayer.audio_buffer_length = LIVE_AUDIO_BUFFER_S
                self.sound = LiveSound(self.pcm, self.audio)
                output = Player()
                output.queue(_pcm_source(self.pcm, self.sound.reader))
                self.sound.attach(output)
        if decoder is not None and decoder.last_flush.epoch != self._epoch:
            flush = decoder.last_flush
            self._epoch = flush.epoch
            self.audio.pause()
            self.audio.seek(flush.position_s)
            self._needs_resync = False
            if self._seeks and self._seeks[-1]["landed_s"] is None:
                self._seeks[-1]["landed_s"] = flush.position_s
        # The end: the clock is past the last segment and every frame is out, including those the
        # decoder has yet to make (on a loaded machine it can run a second behind the clock).
        if (media is not None and self.clock_s >= media.end_s and not self.ended and not self.frames
                and not (decoder is not None and decoder.busy)):
            self.ended = True
            self.audio.pause()
            if self.options.exit_at_end:
                pyglet.clock.schedule_once(lambda dt: self.quit(), 0)
        if self.backend.done.is_set() and not self.ended and not self.frames and self._last_frame is not None:
            self.ended = True  # playback stopped early (an error); nothing more will come
            self.audio.pause()
        want = (snap is not None and snap.started and not snap.stalled and not self.user_paused
                and not self.ended and not self._quitting)
        if isinstance(self.audio, SessionClock):
            self._follow_live_session(snap, want)
            if self.sound is not None:
                self.sound.follow()
        elif not want or self.audio.playing:
            self._waiting_since = None
        elif self._waiting_since is None:
            self._waiting_since = now_wall
        if want and not self.audio.playing and self._ready(media, now_wall):
            position = self._start_position()
            if self._needs_resync or position is not None:
                # The clock jumps to where the stream is, dropping what pyglet read ahead.
                self.audio.seek(position if position is not None else self.clock_s)
                self._needs_resync = False
            self.audio.play()
            self._clock_started = True
        elif not want and self.audio.playing:
            self.audio.pause()
            self._needs_resync = True
        # The frame due at the flip: its pts is nearest the clock when it goes on screen (the clock
        # moves on while we draw, and flips come every 1/refresh_hz).
        self._update_clock_s = self.clock_s
        due_s = self._update_clock_s
        if self.audio.playing:
            due_s += self._flip_latency_s + 0.5 / self.options.refresh_hz
        elif self._last_frame is None and self.stats.frames_presented == 0:
            # Nothing on screen yet: show the first decoded frame now, as a still, while the clock
            # waits for the session to start and for PCM (a video element's first frame on load).
            first = self.frames.first_pts_s()
            if first is not None:
                due_s = max(due_s, first)
        frame, dropped = self.frames.take_due(due_s)
        self.stats.frames_dropped += dropped
        if (frame is not None and isinstance(self.audio, SessionClock) and self._last_frame is not None
                and frame.pts_s < due_s - LIVE_LATE_DROP_S):
            # Live: the session's clock does not wait for the decoder (which starts at the joined
            # segment's keyframe, or gets a chunk late): a frame this late behind the sound is dropped.
            frame, self.stats.frames_dropped = None, self.stats.frames_dropped + 1
        if frame is not None:
            self._upload(frame)
            self._to_present = frame
        if now_wall >= self._next_history_wall and snap is not None:
            shown = media.rendition(self._last_frame.rendition) if media and self._last_frame else None
            self._history.add(HistoryPoint(now_wall, shown.bandwidth_bps if shown else 0.0, snap.buffer_s))
            self._next_history_wall = now_wall + self.options.history_interval_s

    def _follow_live_session(self, snap: PlayerSnapshot | None, want: bool) -> None:
        """A live window's clock: the session's playhead, run on at the session's playback rate."""
        assert isinstance(self.audio, SessionClock)
        if snap is None or not snap.started:
            return
        now, rate = time.monotonic(), snap.live.playback_rate if snap.live is not None else 1.0
        # The session's playhead is the master (frames it overtook are dropped and counted); the join
        # waits, bounded, for a frame and the sound at the playhead (livejoin.py).
        running = want and (self.join is None or self.join.ready(
            now, frame=self._last_frame is not None or self.frames.first_pts_s() is not None,
            pcm_s=lambda: self.pcm.available_s(snap.playhead_s + (now - snap.wall_s) * rate)))
        self.audio.follow(playhead_s=snap.playhead_s, at_wall_s=snap.wall_s, rate=rate, running=running)
        self._clock_started = self._clock_started or running

    def _start_position(self) -> float | None:
        """Where the clock should start: the first frame's pts before the clock first ran (that
        frame may already be on screen as a still), else None."""
        if not self._clock_started:
            first = self._last_frame.pts_s if self._last_frame is not None else self.frames.first_pts_s()
            return max(first, 0.0) if first is not None else None
        return None

    def _ready(self, media: MediaInfo | None, now_wall: float) -> bool:
        """Enough decoded to start the clock: a frame of this epoch and ~1 s of PCM ahead (if audio;
        after AUDIO_WAIT_S without it, start anyway: the audio plays silence until PCM arrives)."""
        still = self._last_frame is not None and not self._clock_started  # the first frame, shown as a still
        if media is None or (self.frames.first_pts_s() is None and not still):
            return False
        waited = self._waiting_since is not None and now_wall - self._waiting_since >= AUDIO_WAIT_S
        if not media.has_audio or waited:
            return True
        position = self._start_position()
        position = self.clock_s if position is None else position
        wanted = min(AUDIO_READY_S, max(media.end_s - position - 0.05, 0.0))
        return self.pcm.available_s(position) >= wanted

    def _size_window(self, media: MediaInfo) -> None:
        assert self.window is not None
        self._window_sized = True
        width, height = media.texture_size_px
        screen = self.window.screen
        width, height = fit_size(width, height, int(screen.width * 0.9), int(screen.height * 0.9))
        self.window.set_size(width, height)

    def _upload(self, frame: VideoFrame) -> None:
        from pyglet import gl

        height, width = frame.pixels.shape[:2]
        if self._texture is None or (self._texture.width, self._texture.height) != (width, height):
            self._texture = pyglet.image.Texture.create(width, height)
            view = self._texture.get_transform(flip_y=True)  # rows arrive top first
            view.anchor_y = 0
            self._texture_view = view
        gl.glBindTexture(self._texture.target, self._texture.id)
        gl.glPixelStorei(gl.GL_UNPACK_ALIGNMENT, 4)
        gl.glTexSubImage2D(gl.GL_TEXTURE_2D, 0, 0, 0, width, height, gl.GL_RGBA, gl.GL_UNSIGNED_BYTE,
                           ctypes.c_void_p(frame.pixels.ctypes.data))

    def _on_flip(self) -> None:
        frame, self._to_present = self._to_present, None
        playing = self.audio is not None and self.audio.playing
        if playing:
            latency = self.clock_s - self._update_clock_s
            self._flip_latency_s += 0.1 * (min(latency, 0.1) - self._flip_latency_s)
        if frame is None:
            return
        if self._first_frame_unix_s is None:
            self._first_frame_unix_s = time.time()
        heard = self.sound.heard_media_s() if self.sound is not None else None
        # The A/V offset: against the audio heard (a live window's sound), else the clock audio follows.
        self.stats.presented(frame.pts_s, (heard if heard is not None else self.clock_s) if playing else None)
        if self._seeks and self._seeks[-1]["first_frame_pts_s"] is None and self._seeks[-1]["landed_s"] is not None:
            self._seeks[-1]["first_frame_pts_s"] = frame.pts_s
        self._last_frame = frame

    def _video_rect(self) -> tuple[int, int, int, int]:
        assert self.window is not None
        media = self.backend.media
        if media is None:
            return 0, 0, self.window.width, self.window.height
        return letterbox(self.window.width, self.window.height, *media.texture_size_px)

    def _tick(self, dt: float) -> None:
        """Every 1/refresh_hz: follow the stream; redraw (and flip) only if the picture changed."""
        if self.backend.error is not None:  # no session (bootstrap failed): close now, `run` raises it
            self.quit()
        if self._quitting or self.window is None:
            return
        tick_wall = time.monotonic()
        if self._first_frame_unix_s is not None and self._last_tick_wall is not None:
            self._ui_max_gap_s = max(self._ui_max_gap_s, tick_wall - self._last_tick_wall)
        self._last_tick_wall = tick_wall
        self._update()
        now_wall = time.monotonic() - self._opened_wall
        summary_up = self.ended or self.backend.done.is_set()
        changed = (self._to_present is not None or self._dirty or summary_up != self._summary_up
                   or self._status(self.backend.snapshot) not in (None, "Paused")  # a turning spinner
                   or (self.show_stats and now_wall >= self._next_stats_wall))
        self._summary_up = summary_up
        if changed:
            self.window.draw(dt)

    def _draw(self) -> None:
        assert self.window is not None
        self._dirty = False
        window = self.window
        window.clear()
        if self._texture_view is not None:
            x, y, w, h = self._video_rect()
            self._texture_view.blit(x, y, width=w, height=h)
        snap = self.backend.snapshot
        now_wall = time.monotonic() - self._opened_wall
        if self.show_stats and self._panel is not None:
            if now_wall >= self._next_stats_wall:
                self._panel.update(self._stats_lines(snap), self._history, window.height)
                self._next_stats_wall = now_wall + 0.25
            self._panel.draw()
        status = self._status(snap)
        if status is not None and self._spinner is not None:
            self._spinner.draw(status, turning=status != "Paused", time_s=now_wall, width_px=window.width,
                               height_px=window.height)
        if (self.ended or self.backend.done.is_set()) and self._summary is not None:
            self._summary.draw(self.summary_lines(), width_px=window.width, height_px=window.height)

    def _status(self, snap: PlayerSnapshot | None) -> str | None:
        if self.ended:
            return None
        if self.user_paused:
            return "Paused"
        if self.backend.media is None:
            demo = isinstance(self.backend.target, DemoTarget)
            return "Starting a local stack with the demo title" if demo else "Loading the stream"
        if snap is None or not snap.started:
            return "Loading"
        if snap.stalled:
            return "Seeking" if self._seeks and self._seeks[-1]["first_frame_pts_s"] is None else "Rebuffering"
        return None

    def _stats_lines(self, snap: PlayerSnapshot | None) -> list[str]:
        media = self.backend.media
        shown = media.rendition(self._last_frame.rendition) if media and self._last_frame else None
        lines = [f"{media.title if media else '...'}   clock {self.clock_s:7.2f} s"]
        if shown is not None:
            lines.append(f"playing {shown.width}x{shown.height} ({shown.id}), {shown.bandwidth_bps / 1e6:.2f} Mbit/s")
        if snap is not None:
            throughput = "-" if snap.throughput_bps is None else f"{snap.throughput_bps / 1e6:.2f} Mbit/s"
            lock = "auto" if snap.locked_quality is None else f"locked to q{snap.locked_quality}"
            levels = ("" if snap.audio_buffer_s is None
                      else f" (video {snap.video_buffer_s:.1f}, audio {snap.audio_buffer_s:.1f})")
            segments = (f"{snap.segments_fetched}" if snap.live is not None
                        else f"{snap.segments_fetched}/{snap.segment_count}")
            lines += [
                f"buffer {snap.buffer_s:5.1f} s{levels}   throughput {throughput}",
                f"ABR {snap.abr} ({lock}); last decision {snap.decision or '-'}",
                f"segments {segments}   stalls {snap.stall_count} ({snap.rebuffer_s:.1f} s)",
            ]
            if snap.live is not None:
                lines += live_lines(snap.live)
                sound = self.live_sound_summary()
                lines += sound_lines(sound) if sound is not None else []
        summary = self.stats.summary()
        lines.append(f"frames shown {self.stats.frames_presented}, dropped {self.stats.frames_dropped}; "
                     f"A/V p95 {summary.p95_ms:.0f} ms")
        return lines

    def live_sound_summary(self) -> dict[str, Any] | None:
        """A live window's sound (livesound.sound_summary); None for video on demand."""
        media, decoder = self.backend.media, self.backend.decoder
        if media is None or not media.live:
            return None
        return sound_summary(self.sound, has_audio=media.has_audio, audio_enabled=self.backend.config.audio,
                             errors=decoder.audio_errors() if decoder is not None else (),
                             error_count=decoder.audio_log.count if decoder is not None else 0, join=self.join)

    def summary_lines(self) -> list[str]:
        """The end-of-session summary: QoE and presentation figures."""
        report, snap = self.backend.report, self.backend.snapshot
        lines = ["Session summary"]
        if report is not None:
            lines += report_lines(report)
        elif snap is not None:
            qoe = snap.qoe or {}
            lines.append(f"QoE lin {qoe.get('lin', 0):.2f}  log {qoe.get('log', 0):.2f}  hd {qoe.get('hd', 0):.2f}")
            lines.append(f"stalls {snap.stall_count} ({snap.rebuffer_s:.2f} s), "
                         f"{snap.segments_fetched}/{snap.segment_count} segments")
        lines += presentation_lines(self.stats.frames_presented, self.stats.frames_dropped, self.stats.summary())
        sound = self.live_sound_summary()
        lines += sound_lines(sound) if sound is not None else []
        lines.append("Q quit   left: seek back")
        return lines


def live_lines(live: LiveState) -> list[str]:
    """The overlay's live lines: latency against its target, the playback rate, distance to the edge."""
    return [f"LIVE  latency {live.latency_s:.2f} s (target {live.target_latency_s:.2f} s)   "
            f"rate {live.playback_rate:.3f}x",
            f"{live.behind_edge_s:.2f} s behind the live edge   rate changes {live.rate_changes}, "
            f"seeks to live {live.seeks_to_live}"]


def run_desktop(target: PlayTarget, config: PlayerConfig, link: LinkConfig = LinkConfig(), *,
                exit_after_s: float | None = None, screenshot: Path | None = None, as_json: bool = False,
                log_path: Path | None = None, options: DesktopConfig = DesktopConfig(),
                demo_stack: DemoStackProcess | None = None, command_start_unix_s: float | None = None,
                live: LivePlayConfig | None = None, stream_options: StreamOptions = StreamOptions()) -> int:
    """Play in a window until the user quits (or `exit_after_s`), print the summary; the exit code.
    Raises `DesktopUnavailable` (a `CliError`) when no window can be opened: play headless instead."""
    app = DesktopApp(target, config, link, options, log_path=log_path, exit_after_s=exit_after_s,
                     screenshot=screenshot, demo_stack=demo_stack, command_start_unix_s=command_start_unix_s,
                     live=live, stream_options=stream_options)
    result = app.run()
    print_summary(result, as_json=as_json)
    sys.stdout.flush()
    error = result.report.error if result.report is not None else None
    return 0 if error is None else 1
