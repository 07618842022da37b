"""Link faults in the simulator (the same `FaultWindow`s as the shaper) and the optimum, and an outage
stalling a simulated and an emulated session alike; the batch engine's twin is in test_sim.py."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from abr.types import Decision, Observation
from netsim import synthetic
from netsim.faults import FaultWindow
from player.client.harness import LinkConfig, TitleTarget, play_headless
from player.client.headless import HeadlessPlayer, PlayerConfig
from player.research.optimal import OptimalConfig, offline_optimal
from player.research.sim import PROFILES, run_session, simulate
from player.video import Video, load_packaged_video
from tests.player.conftest import LONG_TITLE, running_stack

OUTAGE = FaultWindow(start_s=10.0, duration_s=10.0)


class Fixed:
    """Always the same quality: whatever a fault does shows in the stalls, never in a decision."""

    name = "fixed"

    def __init__(self, quality: int) -> None:
        self.quality = quality

    def decide(self, obs: Observation) -> Decision:
        return Decision(quality=min(self.quality, obs.ladder.top), reason="fixed")


def test_an_outage_inside_a_download_adds_its_length_and_stalls_past_the_buffer(envivio: Video) -> None:
    video, trace, prof = envivio.truncated(12), synthetic.constant(5e6, duration_s=600), PROFILES["default"]
    clear = run_session("fixed", video, trace, prof, abr=Fixed(5))
    faulted = run_session("fixed", video, trace, prof, abr=Fixed(5), faults=[OUTAGE])
    # The download in flight when the outage starts (after its request latency) takes it whole.
    (hit,) = np.flatnonzero((clear.request_time_s + prof.rtt_s <= OUTAGE.start_s)
                            & (clear.request_time_s + clear.download_s > OUTAGE.start_s))
    np.testing.assert_allclose(faulted.download_s[:hit], clear.download_s[:hit])
    assert faulted.download_s[hit] == pytest.approx(clear.download_s[hit] + OUTAGE.duration_s)
    assert faulted.rebuffer_s[hit] == pytest.approx(faulted.download_s[hit] - faulted.buffer_before_s[hit])
    assert faulted.rebuffer_s[hit] > 5.0 and clear.metrics.rebuffer_s == 0
    assert faulted.metrics.rebuffer_s == pytest.approx(faulted.rebuffer_s[hit])
    np.testing.assert_allclose(faulted.download_s[hit + 1:], clear.download_s[hit + 1:])  # a constant link after it


def test_an_outage_at_the_start_delays_startup_by_its_length_less_the_rtt(envivio: Video) -> None:
    video, trace, prof = envivio.truncated(3), synthetic.constant(8e6, duration_s=600), PROFILES["default"]
    clear = run_session("fixed", video, trace, prof, abr=Fixed(0))
    faulted = run_session("fixed", video, trace, prof, abr=Fixed(0), faults=[FaultWindow(start_s=0.0, duration_s=6.0)])
    # The request latency passes inside the outage, so the first byte comes when it ends.
    assert faulted.metrics.startup_s == pytest.approx(clear.metrics.startup_s + 6.0 - prof.rtt_s)
    assert faulted.metrics.rebuffer_s == 0  # waiting for the first segment is startup, not a stall


def test_fault_times_count_from_each_session_start(envivio: Video) -> None:
    video, trace, prof = envivio.truncated(12), synthetic.constant(5e6, duration_s=600), PROFILES["default"]
    at_zero = run_session("fixed", video, trace, prof, abr=Fixed(5), faults=[OUTAGE])
    later = run_session("fixed", video, trace, prof, abr=Fixed(5), faults=[OUTAGE], offset_s=37.0)
    np.testing.assert_allclose(later.rebuffer_s, at_zero.rebuffer_s, atol=1e-9)


def test_optimum_sees_the_faults_and_still_bounds_every_algorithm(envivio: Video) -> None:
    prof = PROFILES["default"]
    video = envivio.truncated(16)
    faults = [FaultWindow(start_s=12.0, duration_s=15.0)]
    traces = [synthetic.markov([0.5e6, 1.5e6, 4e6], duration_s=150, seed=s) for s in range(3)]
    config = OptimalConfig(grid_s=0.1)
    for trace in traces:
        clear = offline_optimal(video, trace, prof, config=config).qoe
        faulted = offline_optimal(video, trace, prof, config=config, faults=faults).qoe
        assert faulted < clear
        for name in ("bba", "rate", "mpc-robust", "bola"):
            (result,) = simulate(name, video, [trace], prof, faults=faults)
            assert result.qoe_lin <= faulted + 1e-9, f"{name} beat the optimum on {trace.name}"


@pytest.mark.wallclock
async def test_an_outage_stalls_simulation_and_emulation_alike(tmp_path: Path, long_content: Path) -> None:
    # A fixed quality keeps decisions out of it: only the link and the buffer differ. Tolerance as in
    # test_simulation_and_emulation_agree (docs/PLAYER.md): download times within 15%.
    trace = synthetic.constant(1.2e6, duration_s=600)
    outage = FaultWindow(start_s=8.0, duration_s=10.0)
    # The first 7 of the title's 10 segments: the outage (8-18 s) hits the third or fourth download and
    # three more follow it; the emulation is time-warped 2x, so each segment less saves seconds of wall time.
    segments = 7
    video = load_packaged_video(long_content / LONG_TITLE).truncated(segments)
    simulated = run_session("fixed", video, trace, PROFILES["default"], abr=Fixed(2), faults=[outage])
    clear = run_session("fixed", video, trace, PROFILES["default"], abr=Fixed(2))

    def player(source, config, fetcher, *, events, decoder):  # noqa: ANN001, ANN202
        return HeadlessPlayer(source, config, fetcher, events=events, decoder=decoder, abr=Fixed(2))

    async with running_stack(tmp_path, long_content) as (stack, password):
        target = TitleTarget(title=LONG_TITLE, gateway_url=stack.gateway_url, username="demo", password=password)
        emulated = await play_headless(target, PlayerConfig(abr="fixed", speed=2.0, max_segments=segments), decoder_factory=None,
                                       link=LinkConfig(trace=trace, shape_bootstrap=False, faults=(outage,)),
                                       player_factory=player)
    assert emulated.error is None and emulated.qualities == simulated.qualities.tolist()
    assert len(emulated.records) == segments
    assert clear.metrics.rebuffer_s == 0 and simulated.metrics.rebuffer_s > 3.0
    assert emulated.metrics.rebuffer_s == pytest.approx(simulated.metrics.rebuffer_s, rel=0.15)
    downloads = np.array([r.download_s for r in emulated.records])
    np.testing.assert_allclose(downloads, simulated.download_s, rtol=0.15)
