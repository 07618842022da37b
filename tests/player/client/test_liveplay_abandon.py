"""Abandonment in live (`LiveSession.abandonable`): a whole-segment live download on a collapsing
link is given up and fetched again lower, by the headless live player against a live origin
through the shaper and by the simulator's `LiveDriver`, with the same ABR rule at the same check
cadence; a low-latency download is never offered."""

from __future__ import annotations

from pathlib import Path

import pytest

from netsim.sources import open_trace
from netsim.synthetic import step
from player.client.harness import LinkConfig, UrlTarget, play_headless
from player.client.headless import PlayerConfig
from player.client.liveplay import LivePlayConfig
from player.live import LiveConfig
from player.research.live_sim import LiveSimConfig, run_live_session
from player.video import load_video
from tests.player.client.conftest import Origin

COLLAPSE = "step:8e6,0.15e6@8"  # 8 s at 8 Mbit/s, then 8 s at 150 kbit/s, looped


async def test_the_headless_live_player_abandons_on_a_collapsing_link(live_origin: Origin) -> None:
    url, _ = await live_origin(low_latency=False)  # whole 4 s segments, target 8 s
    report = await play_headless(
        UrlTarget(url=f"{url}/live/manifest.mpd"), PlayerConfig(abr="dynamic", decode="none"),
        link=LinkConfig(trace=open_trace(COLLAPSE), rtt_ms=40), live=LivePlayConfig(duration_s=14.0))
    assert report.error is None, report.error
    assert report.abandoned >= 1, [(r.quality, round(r.download_s, 2)) for r in report.records]
    # The segment given up was fetched again lower: a lower rung follows the abandoned one.
    qualities = [r.quality for r in report.records]
    assert min(qualities[1:]) < max(qualities)


@pytest.mark.parametrize("abr", ["dynamic", "bola"])
def test_the_live_simulator_abandons_on_a_collapsing_link(abr: str, shared_dir: Path) -> None:
    video = load_video(shared_dir / "video/pensieve-envivio")
    whole = LiveSimConfig(live=LiveConfig(target_latency_s=8.0), segment_duration_s=4.0, chunk_duration_s=None,
                          duration_s=60.0)
    result = run_live_session(abr, video, step([8e6, 0.4e6], step_s=20.0), whole, record_events=True)
    abandons = [e for e in result.events if e.kind == "abandon"]
    assert abandons, result.qualities
    # each abandoned segment is fetched again at a lower rung
    fetched = {e.data["segment"]: e.data["quality"] for e in result.events if e.kind == "download"}
    for event in abandons:
        assert fetched[event.data["segment"]] < event.data["quality"]  # type: ignore[operator]
    low_latency = LiveSimConfig(live=LiveConfig(target_latency_s=2.0), segment_duration_s=4.0, chunk_duration_s=0.5,
                                duration_s=60.0)
    chunked = run_live_session(abr, video, step([8e6, 0.4e6], step_s=20.0), low_latency, record_events=True)
    assert not [e for e in chunked.events if e.kind == "abandon"]  # chunks play as they arrive
