"""The live player's chunk-aware throughput samples against the link that carried the chunks: on
a fast constant link at 10x, a whole-segment download of small CMAF chunks (BOLA at the lowest
rung: ~19 kB chunks, ~30 ms each on the link) must measure the link's rate, not the time the
player's loop took to wake for each chunk's last piece (docs/LIVE-EMULATION.md)."""

from __future__ import annotations

from pathlib import Path

import aiohttp
import pytest

from netsim.sources import open_trace
from player.client.harness import TitleTarget, play_headless
from player.client.headless import PlayerConfig
from player.client.liveplay import ChunkTimer, LivePlayConfig
from player.research.experiment_live import LiveRunConfig, live_link
from server.stack import start_stack
from tests.player.client.conftest import live_stack_config, mp4_box
from tests.server.conftest import PASSWORD

_RATE_BPS = 5e6


@pytest.mark.wallclock
async def test_whole_segment_samples_at_10x_measure_a_fast_links_rate(tmp_path: Path, packaged) -> None:  # type: ignore[no-untyped-def]
    config = live_stack_config(tmp_path, packaged.content_root, speed=10.0)
    async with start_stack(config) as stack, aiohttp.ClientSession():
        target = TitleTarget(title="live", gateway_url=stack.gateway_url, username="alice", password=PASSWORD)
        report = await play_headless(target, PlayerConfig(abr="bola", decode="none", speed=10.0, audio=False),
                                     link=live_link(open_trace(f"constant:{_RATE_BPS:g}"),
                                                    LiveRunConfig(abrs=("bola",), rtt_ms=40)),
                                     live=LivePlayConfig(duration_s=30.0))
    assert report.error is None, report.error
    live = report.live
    assert live is not None and live["chunk_s"] == 0.5, live
    ratio = live["throughput_p50_bps"] / _RATE_BPS
    assert ratio == pytest.approx(1.0, abs=0.04), live


def test_a_chunks_late_tail_is_counted_when_its_bytes_crossed() -> None:
    # A 1000-byte chunk in three pieces on a 1000 B/s link; its 200-byte tail comes 0.6 s after the
    # piece before (a paced link's timer floor, at 10x), where it needs 0.2 s.
    chunk = mp4_box(b"moof", 8) + mp4_box(b"mdat", 976)
    timer = ChunkTimer(requested_s=0.0, tail_slack_s=1.0)
    timer.feed(1.0, chunk[:400])
    timer.feed(1.4, chunk[400:800])  # 400 bytes in 0.4 s: 1000 B/s
    (late,) = timer.feed(2.0, chunk[800:])  # the tail's 200 bytes need 0.2 s: came 0.4 s late
    assert late.last_byte_s == pytest.approx(1.6)
    assert timer.rate_Bps == pytest.approx(1000.0)  # the wait is not the link's rate
    bounded = ChunkTimer(requested_s=0.0, tail_slack_s=0.1)  # later than the slack: network time
    bounded.feed(1.0, chunk[:400])
    bounded.feed(1.4, chunk[400:800])
    assert bounded.feed(2.0, chunk[800:])[0].last_byte_s == pytest.approx(1.9)
    plain = ChunkTimer(requested_s=0.0)  # no slack (the default): as it came
    plain.feed(1.0, chunk[:400])
    plain.feed(1.4, chunk[400:800])
    assert plain.feed(2.0, chunk[800:])[0].last_byte_s == 2.0
    on_time = ChunkTimer(requested_s=0.0, tail_slack_s=1.0)
    on_time.feed(1.0, chunk[:400])
    on_time.feed(1.4, chunk[400:800])
    (arrival,) = on_time.feed(1.5, chunk[800:])  # faster than the rate, no lead: as it came
    assert arrival.last_byte_s == 1.5


def test_a_chunks_early_tail_is_counted_when_its_bytes_crossed() -> None:
    # The same link; a paced link on loose timers may hand the tail over up to its lead early.
    chunk = mp4_box(b"moof", 8) + mp4_box(b"mdat", 976)

    def tail_at(t: float, lead_s: float) -> tuple[float, float | None]:
        timer = ChunkTimer(requested_s=0.0, tail_slack_s=1.0, tail_lead_s=lead_s)
        timer.feed(1.0, chunk[:400])
        timer.feed(1.4, chunk[400:800])  # 1000 B/s
        (arrival,) = timer.feed(t, chunk[800:])  # the tail's 200 bytes are due at 1.6
        return arrival.last_byte_s, timer.rate_Bps

    early = tail_at(1.5, 0.15)  # 0.1 s early, within the lead: when its bytes crossed, not a rate
    assert early[0] == pytest.approx(1.6) and early[1] == pytest.approx(1000.0)
    sooner = tail_at(1.42, 0.15)  # earlier than the lead allows: the link was faster, less the lead
    assert sooner[0] == pytest.approx(1.57)
    assert sooner[1] == pytest.approx(600 / 0.57)
    assert tail_at(1.5, 0.0) == (1.5, pytest.approx(600 / 0.5))  # no lead: as it came
    with pytest.raises(ValueError, match="tail slack and lead must be >= 0"):
        ChunkTimer(tail_lead_s=-0.001)
