"""The window plays our low-latency channel over LL-HLS part by part: the parts are pieces of one
stream to its decoder (as a low-latency MPD's chunks are), so the picture keeps up with the
session's playhead at 2 s latency (before that was told the decoder, frames stopped after the first
parts: each part was decoded and drained as if a segment)."""

from __future__ import annotations

import pytest

from player.desktop.app import DesktopApp
from tests.conftest import PackagedTitles
from tests.player.desktop.conftest import in_background
from tests.player.desktop.test_live_window import live_app, live_origin


@pytest.mark.desktop
@pytest.mark.slow
def test_window_plays_a_low_latency_hls_channel_part_by_part(packaged: PackagedTitles, display: str) -> None:
    samples: list[tuple[float, float, float | None, int]] = []

    def sample(app: DesktopApp) -> None:
        snap = app.backend.snapshot
        samples.append((snap.live.latency_s, snap.playhead_s,
                        app._last_frame.pts_s if app._last_frame is not None else None, app.stats.frames_presented))

    with in_background(live_origin(packaged.content_root, low_latency=True)) as origin:
        app = live_app(f"{origin}/live/master.m3u8", exit_after_s=9.0)
        for t in (5.0, 6.5, 8.0):
            app.at(t, sample)
        result = app.run()
    assert result.report is not None and result.report.error is None
    live = result.report.live
    assert live is not None and live["ll_hls_parts"] == "played" and live["stalls"] == 0, live
    print(f"\nLL-HLS window: samples (latency, playhead, last pts, presented) {samples}")
    for latency_s, playhead_s, pts_s, _ in samples:
        assert abs(latency_s - 2.0) < 0.5
        assert pts_s is not None and abs(pts_s - playhead_s) < 0.3, samples
    assert samples[-1][3] - samples[0][3] >= 48, samples  # about 24 fps over 3 s
