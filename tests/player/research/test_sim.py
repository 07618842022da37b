"""Simulator: parity with the reference Pensieve simulator, and the two engines agreeing."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import abr
from abr.types import BatchAbr
from netsim import synthetic
from netsim.faults import FaultWindow
from netsim.formats import load_traces
from netsim.trace import Trace
from player.research.sim import PROFILES, SimProfile, run_batch, run_session, simulate
from player.video import Video
from tests.player.conftest import Scripted

PARITY_ALGORITHMS = ("bba", "rate", "mpc-robust")


@pytest.fixture(scope="module")
def reference(shared_dir: Path) -> dict:
    return json.loads((shared_dir / "reference/pensieve-sim-test-public.json").read_text())


@pytest.fixture(scope="module")
def test_traces(shared_dir: Path) -> list[Trace]:
    return load_traces([shared_dir / "traces/pensieve/test-public"])


@pytest.mark.parametrize("name", PARITY_ALGORITHMS)
def test_pensieve_profile_reproduces_reference_qoe(name: str, reference: dict, test_traces: list[Trace],
                                                   envivio: Video) -> None:
    expected = reference["results"][name]
    results = simulate(name, envivio, test_traces, PROFILES["pensieve"])
    ours = {r.trace: r.qoe_lin for r in results}
    assert len(ours) == expected["sessions"] == 71
    mean = float(np.mean(list(ours.values())))
    assert mean == pytest.approx(expected["qoe_lin_mean"], rel=0.005)
    per_trace = expected["per_trace_qoe_lin"]
    within = [abs(ours[k] - v) <= 0.005 * max(abs(v), 1e-6) for k, v in per_trace.items()]
    assert sum(within) / len(within) >= 0.95


@pytest.mark.parametrize("name", PARITY_ALGORITHMS)
def test_pensieve_profile_reproduces_reference_bitrate_sequences(name: str, reference: dict,
                                                                 test_traces: list[Trace], envivio: Video) -> None:
    sequences = reference["results"][name]["per_trace_bitrate_kbps_sequence"]
    results = simulate(name, envivio, test_traces, PROFILES["pensieve"])
    mismatched = [r.trace for r in results if (r.bitrates_bps // 1000).tolist() != sequences[r.trace]]
    assert mismatched == []


def _batchable() -> list[str]:
    return [n for n in abr.names() if isinstance(abr.make(n), BatchAbr)]


# Outages and a loss burst (overlapping the second outage), from each session's start.
FAULTS = (FaultWindow(start_s=6.0, duration_s=8.0), FaultWindow(start_s=30.0, duration_s=2.0, kind="loss_burst", recovery_s=0.2),
          FaultWindow(start_s=31.0, duration_s=4.0))


@pytest.mark.parametrize("faults", [(), FAULTS], ids=["clear", "faults"])
@pytest.mark.parametrize("profile_name", sorted(PROFILES))
@pytest.mark.parametrize("name", _batchable())
def test_batch_engine_equals_state_machine(name: str, profile_name: str, faults: tuple[FaultWindow, ...],
                                           envivio: Video) -> None:
    prof = PROFILES[profile_name]
    traces = [synthetic.markov([0.3e6, 1e6, 3e6, 6e6], duration_s=120, seed=s) for s in range(6)]
    traces.append(synthetic.step([8e6, 0.2e6, 4e6], step_s=20))
    offsets = [0.0, 3.0, 17.5, 0.0, 40.0, 1.0, 5.0]
    video = envivio.truncated(20)
    batch = run_batch(name, video, traces, prof, offsets_s=offsets, faults=faults)
    if faults:  # they change every session
        clear = run_batch(name, video, traces, prof, offsets_s=offsets)
        assert all(not np.array_equal(b.download_s, c.download_s) for b, c in zip(batch, clear))
    for trace, offset, b in zip(traces, offsets, batch):
        s = run_session(name, video, trace, prof, offset_s=offset, faults=faults)
        np.testing.assert_array_equal(b.qualities, s.qualities)
        np.testing.assert_allclose(b.rebuffer_s, s.rebuffer_s, atol=1e-9)
        np.testing.assert_allclose(b.buffer_s, s.buffer_s, atol=1e-9)
        assert b.metrics.qoe["lin"] == pytest.approx(s.metrics.qoe["lin"], abs=1e-9)


def test_default_profile_charges_trace_latency_on_the_trace_clock(envivio: Video) -> None:
    lat = Trace(name="lat", durations_s=np.array([100.0]), bandwidth_bps=np.array([4e6]), latency_s=np.array([0.5]))
    plain = Trace(name="plain", durations_s=np.array([100.0]), bandwidth_bps=np.array([4e6]))
    video = envivio.truncated(5)
    with_latency = run_session("fixed", video, lat, PROFILES["default"], abr=Scripted())
    without = run_session("fixed", video, plain, PROFILES["default"], abr=Scripted())
    # Each request pays 0.5 s instead of the 80 ms base RTT.
    np.testing.assert_allclose(with_latency.download_s - without.download_s, 0.42, atol=1e-9)


def test_constant_link_with_pensieve_semantics_by_hand(envivio: Video) -> None:
    # 8 Mbit/s * 0.95 payload = 950,000 B/s; the first segment is quality 1 as in Pensieve.
    trace = synthetic.constant(8e6, duration_s=1000)
    result = run_session("bba", envivio.truncated(3), trace, PROFILES["pensieve"])
    first = envivio.sizes_bytes[0, 1]
    assert result.download_s[0] == pytest.approx(first / 950_000 + 0.08)
    assert result.metrics.startup_s == pytest.approx(result.download_s[0])


def test_profile_parameters_reach_the_algorithm() -> None:
    prof = SimProfile(name="x", session=PROFILES["default"].session, abr_params={"bba": {"reservoir_s": 7.0}})
    algorithm = prof.make_abr("bba")
    assert algorithm.params.reservoir_s == 7.0  # type: ignore[attr-defined]


def test_unknown_profile_and_engine_are_clear_errors(envivio: Video, constant_trace: Trace) -> None:
    from player.research.sim import profile

    with pytest.raises(ValueError, match="unknown simulation profile 'nope'"):
        profile("nope")
    with pytest.raises(ValueError, match="unknown engine"):
        simulate("bba", envivio, [constant_trace], PROFILES["default"], engine="fast")
    with pytest.raises(ValueError, match="no vectorised decide_batch"):
        simulate("bola", envivio, [constant_trace], PROFILES["default"], engine="batch")
