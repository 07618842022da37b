"""A live window's sound without a window: the time-stretcher (pitch kept, exact at 1x), the sound
following the session clock through a rate change and a seek to live (an audio output that reads
0.9 s ahead, as pyglet's does), and what the window says when there is no audio or it fails; and
in the window, a channel whose audio segments are damaged: the picture plays, the failure is said.
(The window playing a live channel's sound in sync: test_live_window.py.)"""

from __future__ import annotations

import contextlib
import json
import os
import re
import socket
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import numpy as np
import pytest
from aiohttp import web

from player.desktop.liveclock import SessionClock
from player.desktop.livejoin import JOIN_WAIT_S
from player.desktop.livesound import RESYNC_S, LiveSound, sound_lines, sound_summary
from player.media.avsync import PcmBuffer
from player.media.stretch import StretchReader
from tests.conftest import PackagedTitles
from tests.player.desktop.conftest import in_background
from tests.player.desktop.livekit import live_app, live_origin

RATE_HZ = 48_000


def tone_pcm(start_s: float, seconds: float, hz: float = 440.0) -> tuple[PcmBuffer, np.ndarray]:
    """A stereo sine written at media second `start_s`, and its samples."""
    pcm = PcmBuffer(keep_behind_s=30.0)
    t = np.arange(int(seconds * RATE_HZ)) / RATE_HZ
    mono = np.rint(8000 * np.sin(2 * np.pi * hz * t)).astype("<i2")
    stereo = np.stack([mono, mono], axis=1)
    assert pcm.write(0, start_s, stereo.tobytes())
    return pcm, stereo


def peak_hz(samples: np.ndarray) -> float:
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(len(samples))))
    return float(np.argmax(spectrum)) * RATE_HZ / len(samples)


def test_stretch_reader_at_rate_1_is_the_input_sample_for_sample() -> None:
    pcm, stereo = tone_pcm(10.0, 4.0)
    reader = StretchReader(pcm)
    reader.reset(10.5)
    out = np.frombuffer(reader.read(2 * RATE_HZ * 4), dtype="<i2").reshape(-1, 2)
    start = int(0.5 * RATE_HZ)
    assert np.array_equal(out, stereo[start:start + len(out)])
    assert reader.media_s_at(1.0) == pytest.approx(11.5)
    assert pcm.silence_frames == 0


def test_stretch_reader_at_1_05x_keeps_the_pitch_and_consumes_media_at_that_rate() -> None:
    pcm, _ = tone_pcm(10.0, 6.0)
    reader = StretchReader(pcm, target=lambda ahead_s: (10.0 + 1.05 * (reader.frames_out_total / RATE_HZ + ahead_s),
                                                        1.05))
    reader.reset(10.0)
    out = np.frombuffer(reader.read(4 * RATE_HZ * 3), dtype="<i2").reshape(-1, 2)
    # 3 s of output hold 3.15 s of media; the tone is still 440 Hz (resampling by 1.05 would give 462 Hz).
    assert reader.media_s_at(3.0 - 0.01) == pytest.approx(10.0 + 1.05 * 2.99, abs=0.01)
    assert peak_hz(out[RATE_HZ:2 * RATE_HZ, 0].astype(float)) == pytest.approx(440.0, abs=2.0)
    assert max(reader.ratios) <= 1.05 * 1.1 + 1e-9


class FakeWall:
    def __init__(self) -> None:
        self.now_s = 100.0

    def __call__(self) -> float:
        return self.now_s


class FakeOutput:
    """An audio output as pyglet's `Player` over our source: `seek` resets the reader, the play
    cursor runs on the wall clock, and it keeps 0.9 s read ahead of what is heard."""

    def __init__(self, reader: StretchReader, wall: FakeWall) -> None:
        self.reader, self.wall = reader, wall
        self.playing = False
        self.last_seek_time = 0.0
        self._time_s = 0.0
        self._since = 0.0
        self._read_frames = 0

    @property
    def time(self) -> float:
        return self._time_s + (self.wall.now_s - self._since if self.playing else 0.0)

    def seek(self, position_s: float) -> None:
        self.pause()
        self._time_s = self.last_seek_time = position_s
        self.reader.reset(position_s)
        self._read_frames = 0

    def play(self) -> None:
        if not self.playing:
            self._since, self.playing = self.wall.now_s, True
            self.fill()

    def pause(self) -> None:
        self._time_s, self.playing = self.time, False

    def fill(self) -> None:
        heard = (self.time - self.last_seek_time) * RATE_HZ
        while self._read_frames < heard + 0.9 * RATE_HZ:
            self.reader.read(4 * 4800)
            self._read_frames += 4800

    def delete(self) -> None:
        self.playing = False


def test_pcm_after_a_gap_is_placed_at_its_time_and_contiguous_pcm_stays_gapless() -> None:
    pcm = PcmBuffer(keep_behind_s=30.0)
    second = np.full((RATE_HZ, 2), 1000, dtype="<i2").tobytes()
    assert pcm.write(0, 10.0, second)
    assert pcm.write(0, 11.02, second)  # 20 ms off the boundary (an AAC frame): appended at 11.0
    assert pcm.frames_at(12 * RATE_HZ - 10, 10)[1] == 10
    assert pcm.write(0, 18.0, second)  # a live seek to the edge (or a segment that failed): at 18 s
    assert pcm.frames_at(12 * RATE_HZ, 6 * RATE_HZ)[1] == 0
    assert pcm.frames_at(18 * RATE_HZ, RATE_HZ)[1] == RATE_HZ


def test_live_sound_follows_the_session_clock_through_a_rate_change_and_a_seek_to_live() -> None:
    pcm, _ = tone_pcm(95.0, 25.0)
    wall = FakeWall()
    clock = SessionClock(monotonic=wall)
    sound = LiveSound(pcm, clock)
    output = FakeOutput(sound.reader, wall)
    sound.attach(output)
    playhead = 100.0
    drift_ms: list[tuple[float, float]] = []

    def run(seconds: float, rate: float) -> None:
        nonlocal playhead
        for _ in range(round(seconds / 0.02)):
            wall.now_s += 0.02
            playhead += 0.02 * rate
            clock.follow(playhead_s=playhead, at_wall_s=wall.now_s, rate=rate, running=True)
            output.fill()
            before = sound.stats.drift_ms.count
            sound.follow()
            if sound.stats.drift_ms.count > before:
                drift_ms.append((wall.now_s, sound.stats.last_drift_ms))

    clock.follow(playhead_s=playhead, at_wall_s=wall.now_s, rate=1.0, running=True)
    sound.follow()
    assert sound.stats.restarts == 1 and output.playing  # started at the clock
    run(2.0, 1.0)
    assert max(abs(d) for _, d in drift_ms) < 1.0  # at 1x: exact
    # The session speeds up to 1.05x: the 0.9 s already read ahead was made at 1x (45 ms behind at
    # worst), then the stretcher aims at the clock and makes it up.
    step_at = wall.now_s
    run(4.0, 1.05)
    after = [d for t, d in drift_ms if t > step_at]
    assert max(abs(d) for d in after) <= 50.0, after
    assert abs(after[-1]) < 5.0, after[-10:]
    assert max(sound.reader.ratios) > 1.05  # it caught up faster than the clock's rate, pitch kept
    assert sound.stats.restarts == 1
    # A seek to live: the clock jumps 5 s ahead; the sound restarts there instead of steering.
    playhead += 5.0
    jump_at = wall.now_s
    run(1.0, 1.0)
    assert sound.stats.restarts == 2
    assert all(abs(d) < 5.0 for t, d in drift_ms if t > jump_at), drift_ms[-5:]
    assert abs(sound.heard_media_s() - clock.time) < 0.005  # type: ignore[operator]
    assert pcm.silence_frames == 0
    summary = sound_summary(sound, has_audio=True, audio_enabled=True, errors=())
    assert summary["audio"] == "played" and summary["heard_s"] == pytest.approx(7.0, abs=0.05) and summary["drift_ms"]["max"] <= 1000 * RESYNC_S
    assert sound_lines(summary)[0].startswith("audio 7.")


def test_the_window_says_when_a_live_stream_has_no_audio_or_its_audio_fails() -> None:
    none = sound_summary(None, has_audio=False, audio_enabled=True, errors=())
    assert sound_lines(none) == ["audio: none in this stream (video only)"]
    assert sound_lines(sound_summary(None, has_audio=True, audio_enabled=True, errors=())) == ["audio: starting"]
    off = sound_summary(None, has_audio=True, audio_enabled=False, errors=())
    assert sound_lines(off) == ["audio: off (PlayerConfig.audio is False)"]
    sound = LiveSound(PcmBuffer(), SessionClock())
    failed = sound_summary(sound, has_audio=True, audio_enabled=True,
                           errors=("audio segment 3 of audio_128k: the segment does not decode",))
    assert failed["audio"] == "failed" and failed["errors_count"] == 1
    assert sound_lines(failed)[-1] == ("audio FAILED in 1 segment(s): audio segment 3 of audio_128k: "
                                       "the segment does not decode")


_AUDIO_SEGMENT = re.compile(r"/audio/[^/]+/\d+\.m4s$")


@contextlib.asynccontextmanager
async def damaging_proxy(origin: str) -> AsyncIterator[str]:
    """A server in front of `origin` that passes everything on but overwrites the samples (the
    `mdat` payload) of every audio media segment with random bytes, as a broken packager or a
    mangling middlebox would."""
    async def forward(request: web.Request) -> web.Response:
        async with aiohttp.ClientSession() as session, session.get(origin + request.path_qs) as upstream:
            body = await upstream.read()
            if upstream.status == 200 and _AUDIO_SEGMENT.search(request.path):
                at = body.find(b"mdat") + 4
                body = body[:at] + os.urandom(len(body) - at)
            return web.Response(status=upstream.status, body=body,
                                content_type=upstream.content_type or "application/octet-stream")

    app = web.Application()
    app.router.add_get("/{tail:.*}", forward)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.SockSite(runner, sock).start()
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        await runner.cleanup()


@contextlib.asynccontextmanager
async def damaged_audio_channel(content_root: Path) -> AsyncIterator[str]:
    async with live_origin(content_root) as origin, damaging_proxy(origin) as proxy:
        yield proxy


@pytest.mark.desktop
@pytest.mark.slow
def test_window_says_so_when_a_live_channels_audio_does_not_decode(packaged: PackagedTitles, display: str,
                                                                    tmp_path: Path) -> None:
    lines: list[str] = []
    with in_background(damaged_audio_channel(packaged.content_root)) as url:
        app = live_app(f"{url}/live/manifest.mpd", exit_after_s=6.0, log_path=tmp_path / "events.jsonl")
        app.at(5.5, lambda a: lines.extend(a._stats_lines(a.backend.snapshot)))
        result = app.run()
    assert result.report is not None and result.report.error is None, result.report
    assert result.frames_presented > 48  # the picture plays on
    sound = result.live_sound
    assert sound is not None and sound["audio"] == "failed" and sound["errors_count"] >= 1, sound
    assert sound["errors"][0].startswith("audio segment") and "decode" in sound["errors"][0], sound
    assert sound["silence_s"] > 1.0  # what played was silence, and it is counted
    assert any(line.startswith("audio FAILED in") for line in lines), lines  # the overlay says it
    # and so does the --log event stream, one event per failed segment, as it happened
    events = [json.loads(line) for line in (tmp_path / "events.jsonl").read_text().splitlines()]
    failures = [e for e in events if e["type"] == "audio_failure"]
    assert failures and all("decode" in e["reason"] and isinstance(e["segment"], int) for e in failures), failures
    assert len({(e["rendition"], e["segment"]) for e in failures}) == len(failures)
    # every one the summary counts, those found as the session ended too (the decoder's `on_settled`)
    assert len(failures) == sound["errors_count"], (failures, sound)
    assert events[-1]["type"] == "end"  # those found as the decoder closed included
    # The join waited for the sound for JOIN_WAIT_S, then started the picture alone, and said so once.
    assert sound["join"] is not None and sound["join"]["with_audio"] is False, sound
    assert [e["waited_s"] for e in events if e["type"] == "audio_missing"] == [pytest.approx(JOIN_WAIT_S, abs=0.1)]
