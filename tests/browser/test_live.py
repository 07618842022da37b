"""dash.js (npm) in Debian's Chromium plays our low-latency live channel through the stack: the
dynamic MPD and CMAF chunks from an edge over chunked transfer, its clock from the edge's /time,
across the channel's loop point, and reports its live latency. See docs/LIVE.md and docs/BROWSER.md.
"""

from __future__ import annotations

import statistics
from pathlib import Path

import pytest

from server.stack import start_stack_with_demo_user
from tests.browser.browserkit import page_server, page_url, play_in_chromium
from tests.browser.conftest import BROWSER, LIVE_PLAY_S, live_stack_config
from tests.conftest import PackagedTitles

pytestmark = [pytest.mark.slow, BROWSER]

PLAY_S = LIVE_PLAY_S


@pytest.mark.wallclock
async def test_dashjs_plays_the_low_latency_channel_near_its_target_latency(
        tmp_path: Path, packaged: PackagedTitles) -> None:
    async with page_server() as origin:
        config = live_stack_config(tmp_path, packaged, origin)
        async with start_stack_with_demo_user(config) as (stack, credentials):
            run = await play_in_chromium(page_url(origin, stack, credentials.password, player="dashjs", title="live",
                                                  live_s=PLAY_S))
    report = run.report
    latency = [x for x in report["liveLatency"] if x is not None and x > 0]
    frames = report["frames"]
    print(f"\ndash.js {report['version']} in {run.browser}, live channel: latency p50 "
          f"{statistics.median(latency) if latency else float('nan'):.2f} s (max {max(latency, default=0):.2f} s, "
          f"{len(latency)} samples), {frames['totalVideoFrames']} frames, {report['stalls']} stalls, "
          f"{report['playingSeconds']:.1f} s played; failed requests: {run.failures_line()}")
    assert report["errors"] == [], run.describe()
    # Chunked requests in flight when the driver closes the page are its doing (failed_after_done); while
    # playing, nothing fails but a switch abort (tests/browser/failures.py).
    assert run.failures.unexplained == (), run.describe()
    segment_errors = [r for r in run.responses if r["status"] >= 400]
    assert segment_errors == [], run.describe()  # never asked for a segment before it existed
    assert report["playingSeconds"] >= PLAY_S, run.describe()
    assert frames["totalVideoFrames"] >= 0.8 * PLAY_S * packaged.clip.frame_rate, run.describe()
    assert frames["corruptedVideoFrames"] == 0, run.describe()
    assert any(r["url"].endswith("/time") and r["status"] == 200 for r in run.responses), run.describe()
    # Low latency: well under the 4 s segment, near the MPD's target (1.5 s for 0.5 s chunks + 0.5 s).
    assert latency and statistics.median(latency) < 4.0, run.describe()
