"""The desktop player in a virtual X display (Xvfb, Mesa's llvmpipe): picture, overlay, controls.

The window's tests (marked `desktop`) start Xvfb themselves when DISPLAY is unset, and skip when it
is not installed; the pure parts (queues, PCM, sync stats, letterbox, ABR lock) need no display.
The origin runs on an event loop in a background thread: pyglet keeps the main thread.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import pytest
from aiohttp import web
from PIL import Image

from abr.registry import make
from abr.types import Decision, Ladder, Observation
from player.client.harness import UrlTarget
from player.client.headless import PlayerConfig
from player.desktop.app import DesktopApp, letterbox
from player.desktop.config import DesktopConfig
from player.desktop.player_thread import LockableAbr
from player.media.avsync import AV_SYNC_TOLERANCE_MS, FrameQueue, PcmBuffer, SyncStats, VideoFrame
from player.media.decoder import FrameConverter, SegmentDecoder
from server.packager import PackageConfig, package_source, parse_ladder
from server.packaging.demo import DemoClipConfig
from server.packaging.source import DemoSource
from tests.conftest import CLEAR_TITLE, REPO_ROOT, PackagedTitles
from tests.player.avcontent import write_split_av_dash
from tests.player.conftest import serving_app, serving_origin
from tests.player.desktop.conftest import in_background

T = TypeVar("T")
SEGMENT_S = 4.0
XVFB_SCREEN = "1920x1080x24"


# -- fixtures ------------------------------------------------------------------------------------


def _package(base: Path, name: str, clip: DemoClipConfig, ladder: str) -> Path:
    package_source(DemoSource(clip), base / name, PackageConfig(ladder=parse_ladder(ladder), preset="veryfast"),
                   title=name)
    return base


@pytest.fixture(scope="session")
def long_title(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 24 s title (six segments) at 360p: room for a 10 s seek that is not clamped."""
    return _package(tmp_path_factory.mktemp("desktop-long"), "long",
                    DemoClipConfig(duration_s=24.0, width=640, height=360), "216p:300k,360p:700k")


HD_S = 5.0


@pytest.fixture(scope="session")
def hd_title(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """5 s at 720p (a 4 s and a 1 s segment), one rendition: what llvmpipe has to keep up with, across a
    segment boundary (played in real time: every second here is a second of the suite)."""
    return _package(tmp_path_factory.mktemp("desktop-hd"), "hd",
                    DemoClipConfig(duration_s=HD_S, width=1280, height=720), "720p:2500k")


def _reference_frame(title_dir: Path, rendition: str, pts_s: float, size: tuple[int, int]) -> np.ndarray:
    """The frame at `pts_s` decoded with `player.media.decoder` and converted to `size`: (h, w, 3) uint8."""
    folder = title_dir / "video" / rendition
    decoder = SegmentDecoder((folder / "init.mp4").read_bytes())
    converter = FrameConverter(*size)
    for segment in sorted(folder.glob("*.m4s"), key=lambda p: int(p.stem)):
        result = decoder.decode(segment.read_bytes(), keep_frames=True)
        for decoded in result.frames:
            if abs(decoded.pts_s - pts_s) < 1e-3:
                return converter.to_ndarray(decoded.frame)[:, :, :3]
    raise AssertionError(f"no frame at {pts_s} s in {folder}")


def _crop(image: np.ndarray, rect: list[int] | tuple[int, int, int, int]) -> np.ndarray:
    """The video rectangle (x, y, w, h; y from the bottom, as GL has it) of a screenshot."""
    x, y, w, h = rect
    top = image.shape[0] - y - h
    return image[top:top + h, x:x + w, :3]


def _mad(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.mean(np.abs(a.astype(np.int16) - b.astype(np.int16))))


# -- pure parts (no display) ------------------------------------------------------------------------


def test_frame_queue_hands_out_the_newest_due_frame_and_counts_the_overtaken() -> None:
    queue = FrameQueue(8)
    pixels = np.zeros((2, 2, 4), np.uint8)
    for i in range(5):
        assert queue.put(VideoFrame(0, i / 24, "v", pixels))
    frame, dropped = queue.take_due(2.5 / 24)
    assert frame is not None and frame.pts_s == pytest.approx(2 / 24) and dropped == 2
    assert queue.take_due(2.5 / 24) == (None, 0)
    queue.flush()
    assert not queue.put(VideoFrame(0, 9.0, "v", pixels)), "a frame of the old epoch was queued after a flush"
    assert len(queue) == 0


def test_full_frame_queue_blocks_the_producer_until_a_flush_releases_it() -> None:
    queue = FrameQueue(1)
    pixels = np.zeros((2, 2, 4), np.uint8)
    queue.put(VideoFrame(0, 0.0, "v", pixels))
    outcome: list[bool] = []
    producer = threading.Thread(target=lambda: outcome.append(queue.put(VideoFrame(0, 1.0, "v", pixels))))
    producer.start()
    producer.join(timeout=0.2)
    assert producer.is_alive() and not outcome, "put did not wait for room"
    queue.flush()
    producer.join(timeout=5)
    assert outcome == [False]


def test_pcm_buffer_places_writes_on_the_timeline_and_fills_gaps_with_silence() -> None:
    pcm = PcmBuffer()
    frame_bytes = pcm.bytes_per_frame
    tone = np.arange(1, 4801, dtype="<i2").repeat(2).tobytes()  # 0.1 s, stereo
    pcm.reset(epoch=1, position_s=0.95)
    assert not pcm.write(0, 1.0, tone), "a stale epoch's PCM was taken"
    assert pcm.write(1, 1.0, tone) and pcm.write(1, 1.12, tone)  # 20 ms off: appends at 1.1 s (gapless)
    assert pcm.write(1, 99.0, tone)  # far off (a failed segment, a seek to live): placed at its time
    assert pcm.available_s(1.0) == pytest.approx(0.2) and pcm.available_s(99.0) == pytest.approx(0.1)
    head = np.frombuffer(pcm.read(4800 * frame_bytes), "<i2").reshape(-1, 2)  # 0.95 .. 1.05 s
    assert (head[:2400] == 0).all() and head[2400, 0] == 1 and pcm.silence_frames == 2400
    pcm.seek(1.0)  # jump back: what was read stays readable
    again = np.frombuffer(pcm.read(2 * frame_bytes), "<i2").reshape(-1, 2)
    assert again[:, 0].tolist() == [1, 2]


def test_sync_stats_summarise_absolute_offsets_and_count_frames_shown_while_paused() -> None:
    stats = SyncStats()
    for offset_ms in (-50.0, -10.0, 0.0, 10.0, 20.0):
        stats.presented(1.0 + offset_ms / 1000, 1.0)
    stats.presented(2.0, None)  # shown while the clock stood still: no offset
    summary = stats.summary()
    assert stats.frames_presented == 6 and summary.count == 5
    assert summary.p50_ms == pytest.approx(10.0) and summary.max_ms == pytest.approx(50.0)
    assert summary.mean_ms == pytest.approx(-6.0) and summary.within_tolerance == pytest.approx(0.8)


@pytest.mark.parametrize(("window", "video", "rect"), [
    ((1920, 1080), (960, 540), (0, 0, 1920, 1080)),
    ((1000, 1000), (1280, 720), (0, 219, 1000, 562)),
    ((800, 300), (640, 360), (133, 0, 533, 300)),
])
def test_letterbox_keeps_the_aspect_ratio(window: tuple[int, int], video: tuple[int, int],
                                          rect: tuple[int, int, int, int]) -> None:
    assert letterbox(*window, *video) == rect


def test_locked_quality_overrides_the_abr_and_unlocking_hands_back_control(ladder: Ladder) -> None:
    abr = LockableAbr(make("bba"))
    obs = Observation(time_s=0.0, buffer_s=30.0, segment_index=3, segment_count=10, ladder=ladder, last_quality=0)
    free = abr.decide(obs)
    abr.lock(8)
    assert abr.decide(obs) == Decision(quality=ladder.top, reason="locked by user")
    abr.lock(None)
    assert abr.decide(obs) == free and abr.last_decision == free


# -- the window ----------------------------------------------------------------------------------


@pytest.mark.desktop
def test_cli_plays_5_s_and_the_screenshot_is_the_decoded_frame(tmp_path: Path, packaged: PackagedTitles,
                                                               display: str) -> None:
    shot = tmp_path / "desktop.png"
    with in_background(serving_origin(packaged.content_root)) as origin:
        process = subprocess.run(
            [sys.executable, "-m", "player", "play", f"{origin}/{CLEAR_TITLE}/manifest.mpd", "--exit-after", "5.5",
             "--screenshot", str(shot), "--json", "--abr", "bba"],
            cwd=REPO_ROOT, capture_output=True, text=True, timeout=120, env={**os.environ, "DISPLAY": display})
    assert process.returncode == 0, process.stderr
    result = json.loads(process.stdout)
    desktop = result["desktop"]
    print(f"\nscreenshot: {shot}\ndesktop: {json.dumps(desktop)}")
    assert desktop["frames_presented"] > 0 and desktop["frames_dropped"] >= 0
    offsets = desktop["av_offset_ms"]
    assert offsets["count"] > 0 and 0 <= offsets["p50_ms"] <= offsets["p95_ms"] <= offsets["max_ms"]
    assert result["frames_failed"] == 0 and result["error"] is None
    last = desktop["last_frame"]
    assert last is not None and 3.0 < last["pts_s"] < 6.0, last  # about 5 s in
    picture = _crop(np.asarray(Image.open(shot).convert("RGB")), desktop["video_rect_px"])
    assert picture.mean() > 20, "the window is black"
    size = (picture.shape[1], picture.shape[0])
    title = packaged.content_root / CLEAR_TITLE
    reference = _reference_frame(title, last["rendition"], last["pts_s"], size)
    elsewhere = _reference_frame(title, last["rendition"], round(last["pts_s"] - 1.0, 6), size)
    # The picture is the decoded frame (GL's texture sampling differs by a level or two), and much
    # closer to it than to the frame one second earlier.
    assert _mad(picture, reference) < 6.0
    assert _mad(picture, reference) * 3 < _mad(picture, elsewhere)


@pytest.mark.desktop
def test_overlay_renders_pause_stops_the_clock_and_seek_lands_within_a_segment(
        tmp_path: Path, long_title: Path, display: str) -> None:
    seen: dict[str, Any] = {}

    def pause(app: DesktopApp) -> None:
        app.press(_key("SPACE"))

    def paused_1(app: DesktopApp) -> None:
        seen["clock_1"], seen["playhead_1"] = app.clock_s, app.backend.snapshot.playhead_s

    def paused_2(app: DesktopApp) -> None:
        seen["clock_2"], seen["playhead_2"] = app.clock_s, app.backend.snapshot.playhead_s
        seen["stats_off"] = np.asarray(Image.open(app.save_screenshot(tmp_path / "off.png")).convert("RGB"))
        app.press(_key("S"))
        seen["stats_on"] = np.asarray(Image.open(app.save_screenshot(tmp_path / "on.png")).convert("RGB"))
        app.press(_key("S"))
        app.press(_key("SPACE"))

    def running(app: DesktopApp) -> None:
        seen["clock_3"] = app.clock_s
        app.press(_key("RIGHT"))

    with in_background(serving_origin(long_title)) as origin:
        app = DesktopApp(UrlTarget(url=f"{origin}/long/manifest.mpd"), PlayerConfig(abr="bba"),
                         options=DesktopConfig(window_size_px=(640, 360)), exit_after_s=9.0)
        app.at(2.5, pause)
        app.at(3.0, paused_1)
        app.at(4.0, paused_2)
        app.at(5.0, running)
        result = app.run()
    assert seen["clock_1"] > 0 and seen["clock_2"] == seen["clock_1"], "the clock ran while paused"
    assert seen["playhead_2"] == seen["playhead_1"], "the session's playhead moved while paused"
    assert seen["clock_3"] > seen["clock_2"], "the clock did not run again after resuming"
    # The overlay (top left) changes its region; the picture elsewhere is the same paused frame.
    off, on = seen["stats_off"].astype(np.int16), seen["stats_on"].astype(np.int16)
    panel = np.abs(on[10:150, 10:300] - off[10:150, 10:300]).mean()
    rest = np.abs(on[250:, 420:] - off[250:, 420:]).mean()
    assert panel > 10 and rest < 1, (panel, rest)
    assert len(result.seeks) == 1
    seek = result.seeks[0]
    assert seek.target_s == pytest.approx(seen["clock_3"] + 10.0, abs=0.2)
    assert seek.landed_s is not None and abs(seek.landed_s - seek.target_s) <= SEGMENT_S
    assert seek.first_frame_pts_s is not None and abs(seek.first_frame_pts_s - seek.target_s) <= SEGMENT_S
    assert result.last_frame is not None and result.last_frame.pts_s > seek.first_frame_pts_s


@pytest.mark.desktop
def test_720p_plays_out_and_reports_dropped_frames(hd_title: Path, display: str) -> None:
    with in_background(serving_origin(hd_title)) as origin:
        app = DesktopApp(UrlTarget(url=f"{origin}/hd/manifest.mpd"), PlayerConfig(abr="bba"),
                         options=DesktopConfig(exit_at_end=True, window_size_px=(1280, 720)), exit_after_s=60.0)
        result = app.run()
    assert result.ended and result.report is not None and result.report.error is None
    frames = round(HD_S * 24)
    print(f"\n720p under llvmpipe: presented {result.frames_presented}, dropped {result.frames_dropped}, "
          f"A/V {result.av_offset.as_dict()}")
    # Every decoded frame was either shown or dropped (and counted as such).
    assert result.frames_presented + result.frames_dropped == frames
    assert result.av_offset.count > 0


def _key(name: str) -> int:
    from pyglet.window import key

    return int(getattr(key, name))


@pytest.mark.desktop
def test_no_display_is_a_clear_error() -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}
    code = ("import sys\nfrom player.desktop import DesktopUnavailable\nfrom player.desktop.app import DesktopApp\n"
            "from player.client.headless import PlayerConfig\nfrom player.client.harness import UrlTarget\n"
            "try:\n    DesktopApp(UrlTarget(url='http://127.0.0.1:9/x.mpd'), PlayerConfig()).run()\n"
            "except DesktopUnavailable as exc:\n    print(exc)\n    sys.exit(3)\n")
    process = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True,
                             timeout=60, env={**env, "DISPLAY": ":987"})
    assert process.returncode == 3, process.stderr
    assert "cannot open a window on display :987" in process.stdout



# Two 4 s video segments and four 2 s audio segments: audio boundaries at 2 and 6 s fall inside video
# segments, so the audio clock carries presentation across boundaries that are not the video's (played
# in real time: every second here is a second of the suite).
SPLIT_AV_S = 8


@pytest.fixture(scope="session")
def split_av_title(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """FFmpeg DASH, 8 s, with 4 s video segments and 2 s audio segments (tests/player/avcontent.py)."""
    root = tmp_path_factory.mktemp("desktop-split")
    write_split_av_dash(root / "split", duration_s=SPLIT_AV_S)
    return root


@pytest.mark.desktop
def test_audio_cut_apart_from_the_video_stays_in_sync_to_the_end(split_av_title: Path, display: str) -> None:
    static = web.Application()
    static.router.add_static("/", split_av_title)  # a plain file server, as FFmpeg's output is served
    with in_background(serving_app(static)) as origin:
        app = DesktopApp(UrlTarget(url=f"{origin}/split/manifest.mpd"), PlayerConfig(abr="bba"),
                         options=DesktopConfig(exit_at_end=True, window_size_px=(640, 360)), exit_after_s=60.0)
        result = app.run()
    report = result.report
    assert result.ended and report is not None and report.error is None
    print(f"\nsplit A/V: {result.av_offset.as_dict()}, silence {result.audio_silence_s:.3f} s, "
          f"audio segments {len(report.audio_records)}")
    assert len(report.records) == SPLIT_AV_S / 4 and len(report.audio_records) == SPLIT_AV_S / 2
    assert report.metrics.rebuffer_count == 0 and report.frames_failed == 0
    assert result.frames_presented + result.frames_dropped == SPLIT_AV_S * 24
    # The audio clock drives presentation across audio segment boundaries that are not the video's.
    assert result.av_offset.count > 0 and result.av_offset.p50_ms <= AV_SYNC_TOLERANCE_MS
