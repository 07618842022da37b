"""A time-warped emulated session on the warp clock (netsim/clock.py): the stack's time and the
worker's stalls are no session time, and the session's clock, the link's and the fetcher's agree."""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from netsim import synthetic
from netsim.shaper import Shaper
from player.client.harness import LinkConfig, TitleTarget, play_headless
from player.client.headless import PlayerConfig
from player.media.pipeline import DecodePipeline
from player.research.experiment import model_download_s
from player.research.sim import PROFILES, run_session
from player.research.sim_shared import RESPONSE_HEADER_BYTES
from player.video import load_packaged_video
from tests.conftest import ENCRYPTED_TITLE, PackagedTitles
from tests.player.conftest import LONG_TITLE, running_stack

pytestmark = pytest.mark.wallclock  # a warped session's clock against the wall clock


async def test_a_warped_session_leaves_server_time_and_loop_stalls_out(tmp_path: Path, long_content: Path) -> None:
    trace = synthetic.constant(2e6, duration_s=600)
    shapers: list[Shaper] = []

    async def stall() -> None:  # the worker's loop blocked after bootstrap, before the first media request
        time.sleep(0.2)

    link = LinkConfig(trace=trace, shape_bootstrap=False, exclude_server_time=True, exclude_loop_stalls=True,
                      exclude_client_time=True)
    async with running_stack(tmp_path, long_content) as (stack, password):
        target = TitleTarget(title=LONG_TITLE, gateway_url=stack.gateway_url, username="demo", password=password)
        report = await play_headless(target, PlayerConfig(abr="bba", speed=10.0, max_segments=4), link=link,
                                     decoder_factory=None, on_link=shapers.append, before_playback=stall)
    assert report.error is None and len(report.records) == 4
    clock = shapers[0].clock
    assert clock.holds_total >= 4  # every media request waited for the stack with the clock held
    # The blocked loop (2 s of session time at 10x) was left out: as a stall, or inside a hold.
    assert clock.stalled_s + clock.held_s >= 0.15
    # The player's hops and decisions were held out too, and it never failed to act.
    assert clock.client_holds >= 4 and clock.client_timeouts == 0
    # Session time starts before the stall and runs on the same clock as the link: every download
    # takes the link model's time (the stack's time would add 0.1-0.2 s per request at 10x; the
    # player's hops, the loop's CPU time between events and the pacing quantum, tens of ms), once
    # the model also carries the answers' header bytes, which cross the link too (about 360 bytes
    # each: 1.5 ms at 2 Mbit/s, for this download and for the audio download sharing the link).
    # Before the link settled its sharing whenever a pipe joined or left, the 2nd download came
    # 25 ms over the model: a pipe that joined mid-quantum got half a quantum (20 ms of trace time
    # at 10x) it was not there for, and one that emptied mid-quantum waited for the quantum's end.
    downloads = np.array([r.download_s for r in report.records])
    answers = [*report.records, *report.audio_records]
    # Everything the shaper carried is these answers (the bootstrap is not shaped), with their headers.
    header_bytes = (shapers[0].stats().down_bytes - sum(r.size_bytes for r in answers)) / len(answers)
    assert 200 <= header_bytes <= 600, header_bytes
    model = model_download_s(trace, PROFILES["default"], 0.0,
                             [replace(r, size_bytes=r.size_bytes + header_bytes) for r in report.records],
                             [replace(r, size_bytes=r.size_bytes + header_bytes) for r in report.audio_records])
    assert np.all(np.abs(downloads - model) <= 0.002), downloads - model


async def test_emulated_startup_is_the_simulated_one_with_the_preroll_apart(tmp_path: Path,
                                                                           packaged: PackagedTitles) -> None:
    # A sim comparison's emulated session (the experiment runner's link: bootstrap unshaped, the
    # warp clock's exclusions) of an encrypted title on a short step trace at 10x, decoding: before
    # its first media request the player gets the license and its init segments, unshaped, on the
    # wall clock. Session time 0 is that first request, as in the simulator: the startups agree to
    # the millisecond at any load, and the pre-roll is reported apart. (Before, the license's wall
    # time, x10, and the player's setup were in the startup: 11-378 ms more than the simulator's in
    # the fleet runs, depending on the machine's load.)
    trace = synthetic.step([1e6, 3e6], step_s=2.0)
    link = LinkConfig(trace=trace, shape_bootstrap=False, exclude_server_time=True, exclude_loop_stalls=True,
                      exclude_client_time=True)
    async with running_stack(tmp_path, packaged.content_root) as (stack, password):
        target = TitleTarget(title=ENCRYPTED_TITLE, gateway_url=stack.gateway_url, username="demo", password=password)
        report = await play_headless(target, PlayerConfig(abr="bba", speed=10.0), link=link,
                                     decoder_factory=lambda source: DecodePipeline(source, mode="none"))
    assert report.error is None and len(report.records) == 3
    assert not report.preroll_in_startup
    assert report.preroll_s == pytest.approx(report.bootstrap_s["license_s"] + report.bootstrap_s["init_s"], abs=2e-4)
    assert report.preroll_s * 10.0 > 0.002  # counted in the startup, it would break the agreement below
    assert report.records[0].request_time_s == 0.0
    # The simulator charging each answer the header bytes the shaper carries (`--response-header-bytes`).
    profile = PROFILES["default"].with_player(response_header_bytes=RESPONSE_HEADER_BYTES)
    simulated = run_session("bba", load_packaged_video(packaged.content_root / ENCRYPTED_TITLE), trace, profile)
    assert report.qualities == simulated.qualities.tolist()
    assert report.metrics.startup_s == pytest.approx(simulated.metrics.startup_s, abs=0.001)
