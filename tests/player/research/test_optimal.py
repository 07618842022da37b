"""Offline optimum: a real session, at least as good as every algorithm, stable under the grid."""

from __future__ import annotations

import os
from concurrent.futures import ProcessPoolExecutor
from functools import partial
from pathlib import Path

import numpy as np
import pytest

import abr
from netsim import synthetic
from netsim.formats import load_traces
from netsim.trace import Trace
from player.research.optimal import OptimalConfig, offline_optimal
from player.research.sim import PROFILES, SimProfile, run_session, simulate
from player.video import Video
from tests.player.conftest import Scripted


class Replay(Scripted):
    """Plays back a fixed quality sequence."""


def test_optimal_path_replayed_in_the_simulator_scores_the_optimal_value(envivio: Video) -> None:
    from abr.types import Decision

    prof = PROFILES["pensieve"]
    trace = synthetic.markov([0.4e6, 1.5e6, 4e6], duration_s=200, seed=3)
    best = offline_optimal(envivio, trace, prof, config=OptimalConfig(grid_s=0.1))
    replay = Replay(*[Decision(quality=int(q), reason="replay") for q in best.qualities[1:]])
    result = run_session("replay", envivio, trace, prof, abr=replay)
    np.testing.assert_array_equal(result.qualities, best.qualities)
    assert result.qoe_lin == pytest.approx(best.qoe, abs=1e-6)


@pytest.mark.parametrize("profile_name", sorted(PROFILES))
def test_optimal_bounds_every_algorithm_on_synthetic_traces(profile_name: str, envivio: Video) -> None:
    prof: SimProfile = PROFILES[profile_name]
    traces = [synthetic.markov([0.3e6, 1e6, 3e6], duration_s=150, seed=s) for s in range(4)]
    traces.append(synthetic.step([5e6, 0.3e6, 2e6], step_s=15))
    video = envivio.truncated(24)
    optimum = [offline_optimal(video, t, prof, config=OptimalConfig(grid_s=0.1)).qoe for t in traces]
    for name in abr.names():
        for result, best in zip(simulate(name, video, traces, prof), optimum):
            assert result.qoe_lin <= best + 1e-9, f"{name} beat the optimum on {result.trace}"


@pytest.mark.slow
def test_optimal_bounds_every_algorithm_on_every_pensieve_test_trace(shared_dir: Path, envivio: Video) -> None:
    traces: list[Trace] = load_traces([shared_dir / "traces/pensieve/test-public"])
    prof = PROFILES["pensieve"]
    with ProcessPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        solve = partial(_optimal_qoe, envivio, prof)
        optimum = np.array(list(pool.map(solve, traces, chunksize=4)))
    for name in abr.names():
        qoe = np.array([r.qoe_lin for r in simulate(name, envivio, traces, prof)])
        beaten = [traces[i].name for i in np.flatnonzero(qoe > optimum + 1e-9)]
        assert beaten == [], f"{name} beat the optimum on {beaten}"


def _optimal_qoe(video: Video, prof: SimProfile, trace: Trace) -> float:
    return offline_optimal(video, trace, prof, config=OptimalConfig(grid_s=0.25)).qoe


def test_finer_grid_never_changes_the_result_much(envivio: Video) -> None:
    trace = synthetic.markov([0.3e6, 1.2e6, 3.5e6], duration_s=200, seed=9)
    video = envivio.truncated(24)
    prof = PROFILES["pensieve"]
    coarse = offline_optimal(video, trace, prof, config=OptimalConfig(grid_s=0.25)).qoe
    fine = offline_optimal(video, trace, prof, config=OptimalConfig(grid_s=0.05)).qoe
    assert abs(fine - coarse) <= 0.01 * abs(fine) + 0.5


def test_optimum_from_a_mid_session_state_counts_only_the_rest(envivio: Video) -> None:
    trace = synthetic.constant(10e6, duration_s=1000)
    prof = PROFILES["pensieve"]
    rest = offline_optimal(envivio.truncated(10), trace, prof, start_segment=8, start_trace_time_s=30.0,
                           start_buffer_s=20.0, start_quality=5)
    # Plenty of bandwidth and buffer: the top rung for the last two segments, no stall, no switch.
    assert rest.qualities.tolist() == [5, 5]
    assert rest.qoe == pytest.approx(2 * 4.3)


@pytest.mark.parametrize("profile_name", ["pensieve", "default"])
def test_floor_pruning_keeps_the_result_within_the_grid_error(profile_name: str, envivio: Video) -> None:
    # The floor (a quick narrow search's session) only drops states that cannot beat it; the result
    # stays within the 0.1 s grid's documented error of the plain DP (docs/OPTIMAL.md: 0.05).
    prof = PROFILES[profile_name]
    video = envivio.truncated(16)
    traces = [synthetic.markov([0.3e6, 1.2e6, 3.5e6], duration_s=120, seed=s) for s in range(2)]
    traces.append(synthetic.step([4e6, 0.2e6, 2e6], step_s=20))
    for trace in traces:
        plain = offline_optimal(video, trace, prof, config=OptimalConfig(grid_s=0.1, bound=False))
        bounded = offline_optimal(video, trace, prof, config=OptimalConfig(grid_s=0.1))
        assert bounded.qoe == pytest.approx(plain.qoe, abs=0.05), trace.name
        assert bounded.states_kept < plain.states_kept


def test_optimal_config_rejects_an_empty_beam() -> None:
    with pytest.raises(ValueError, match="beam_states"):
        OptimalConfig(beam_states=0)
