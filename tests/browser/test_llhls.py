"""hls.js (npm) in lowLatencyMode, in Debian's Chromium, plays our low-latency channel over LL-HLS
through the stack: parts from an edge, preload hints, blocking playlist reloads (`_HLS_msn` /
`_HLS_part`), across the channel's loop point, and reports a live latency near PART-HOLD-BACK.
See docs/LIVE-SERVER.md ("HLS") and docs/BROWSER.md."""

from __future__ import annotations

import re
import statistics
import time
from pathlib import Path

import pytest

from server.stack import start_stack_with_demo_user
from tests.browser.browserkit import page_server, page_url, play_in_chromium
from tests.browser.conftest import BROWSER, LIVE_PLAY_S, live_stack_config
from tests.browser.failures import ABORTED
from tests.conftest import PackagedTitles

pytestmark = [pytest.mark.slow, BROWSER]

PLAY_S = LIVE_PLAY_S
_PART = re.compile(r"/[0-9]+\.[0-9]+\.m4s$")


@pytest.mark.wallclock
async def test_hlsjs_plays_the_low_latency_channel_by_parts_near_its_target(
        tmp_path: Path, packaged: PackagedTitles) -> None:
    async with page_server() as origin:
        config = live_stack_config(tmp_path, packaged, origin,
                                   live_start_s=float(int(time.time())) - 20)  # a channel on air for 20 s
        async with start_stack_with_demo_user(config) as (stack, credentials):
            run = await play_in_chromium(page_url(origin, stack, credentials.password, player="hlsjs", title="live",
                                                  live_s=PLAY_S))
    report = run.report
    latency = [x for x in report["liveLatency"] if x is not None and x > 0]
    parts = [r for r in run.responses if _PART.search(r["url"].split("?")[0])]
    blocking = [r for r in run.responses if "_HLS_msn=" in r["url"]]
    frames = report["frames"]
    p50 = statistics.median(latency) if latency else float("nan")
    print(f"\nhls.js {report['version']} in {run.browser}, LL-HLS live channel: latency p50 {p50:.2f} s "
          f"(max {max(latency, default=0):.2f} s, target {report['targetLatency']}, {len(latency)} samples), "
          f"{len(parts)} parts, {len(blocking)} blocking reloads, {frames['totalVideoFrames']} frames, "
          f"{report['stalls']} stalls, {report['playingSeconds']:.1f} s played; failed requests: "
          f"{run.failures_line()}")
    assert report["errors"] == [], run.describe()
    # hls.js cancels what it asked for ahead (a hinted part, a blocking reload) once it no longer
    # needs it, e.g. on a switch of rendition (a net::ERR_ABORTED in Chromium's log): that, a switch
    # abort and what the driver cancelled by closing the page (tests/browser/failures.py) may fail;
    # nothing else.
    ahead = [r for r in run.failures.unexplained if r["error"] == ABORTED and (
        _PART.search(r["url"].split("?")[0]) or "_HLS_msn=" in r["url"])]
    print(f"of the unexplained, {len(ahead)} requested ahead and cancelled by hls.js while playing (accepted)")
    assert [r for r in run.failures.unexplained if r not in ahead] == [], run.describe()
    assert [r for r in run.responses if r["status"] >= 400] == [], run.describe()
    assert report["playingSeconds"] >= PLAY_S, run.describe()
    assert frames["totalVideoFrames"] >= 0.8 * PLAY_S * packaged.clip.frame_rate, run.describe()
    assert frames["corruptedVideoFrames"] == 0, run.describe()
    # It took the low-latency path: parts and blocking reloads, not whole segments on a timer.
    assert len(parts) >= 8 and len(blocking) >= 8, run.describe()
    # Near PART-HOLD-BACK (2 s: the MPD's target), far under HOLD-BACK (12 s, whole segments).
    assert report["targetLatency"] == pytest.approx(2.0, abs=0.01), run.describe()
    assert latency and p50 < 3.5, run.describe()
