"""The session timeline's buffer curve and plot."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from player.research.sweep_report import buffer_curve, plot_timeline


def test_buffer_curve_drains_during_downloads_and_sits_at_zero_while_stalled() -> None:
    # Startup (2 s download from empty), a 3 s download with 4 s buffered, then a 6 s download with 4 s
    # buffered: dry at 9 s, stalled until the segment lands at 11 s. (The curve draws what it is given.)
    request = np.array([0.0, 2.0, 5.0])
    download = np.array([2.0, 3.0, 6.0])
    before = np.array([0.0, 4.0, 4.0])
    after = np.array([4.0, 5.0, 4.0])
    x, y = buffer_curve(request, download, before, after)
    assert x.tolist() == [0.0, 0.0, 2.0, 2.0, 2.0, 5.0, 5.0, 5.0, 9.0, 11.0, 11.0]
    assert y.tolist() == [0.0, 0.0, 0.0, 4.0, 4.0, 1.0, 5.0, 4.0, 0.0, 0.0, 4.0]
    assert np.all(y >= 0) and np.all(np.diff(x) >= 0)


def test_timeline_plot_of_a_session_with_a_stall(tmp_path: Path) -> None:
    from netsim import synthetic
    from player.bundled import ENVIVIO_DIR
    from player.research.sim import PROFILES, run_session
    from player.video import load_video

    trace = synthetic.step([3e6, 1e4, 3e6], step_s=20.0)
    result = run_session("bba", load_video(ENVIVIO_DIR).truncated(12), trace, PROFILES["pensieve"])
    assert result.rebuffer_s.sum() > 0
    path = plot_timeline(result, tmp_path / "timeline.png")
    assert Path(path).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
