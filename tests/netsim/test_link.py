from __future__ import annotations

import numpy as np
import pytest

from netsim import synthetic
from netsim.link import LinkBatch, LinkModel
from netsim.sharing import replay
from netsim.trace import Trace


def pensieve_download_s(times_s: list[float], mbps: list[float], start_ptr: int, start_time_s: float,
                        size_bytes: float, payload: float = 0.95) -> tuple[float, int, float]:
    """Pensieve's fixed_env.py download loop, written out step by step as the reference describes it."""
    ptr, last_time, delay, sent = start_ptr, start_time_s, 0.0, 0.0
    while True:
        throughput = mbps[ptr] * 1e6 / 8
        duration = times_s[ptr] - last_time
        packet = throughput * duration * payload
        if sent + packet > size_bytes:
            fraction = (size_bytes - sent) / throughput / payload
            delay += fraction
            last_time += fraction
            return delay, ptr, last_time
        sent += packet
        delay += duration
        last_time = times_s[ptr]
        ptr += 1
        if ptr >= len(times_s):
            ptr, last_time = 1, 0.0


def test_link_model_matches_pensieve_download_loop_across_wraps(rng: np.random.Generator) -> None:
    times = np.cumsum(np.r_[0.0, rng.uniform(0.5, 1.5, 30)]).tolist()
    mbps = rng.uniform(0.2, 5.0, 31).tolist()
    trace = Trace(name="t", durations_s=np.diff(times), bandwidth_bps=np.asarray(mbps[1:]) * 1e6)
    link = LinkModel(trace, payload_factor=0.95)
    ptr, clock, trace_time = 1, 0.0, 0.0
    for size in rng.uniform(1e4, 3e6, 60):
        expected, ptr, clock = pensieve_download_s(times, mbps, ptr, clock, size)
        ours = link.download_time(trace_time, size)
        trace_time += ours
        assert ours == pytest.approx(expected, rel=1e-9, abs=1e-9)


def test_zero_capacity_interval_delays_completion() -> None:
    trace = Trace(name="gap", durations_s=np.array([1.0, 2.0, 1.0]), bandwidth_bps=np.array([8e6, 0.0, 8e6]))
    link = LinkModel(trace)
    # 1 MB in the first second, nothing for two seconds, then the rest.
    assert link.finish_time(0.0, 1.5e6) == pytest.approx(3.5)


def test_inverse_of_cumulative_capacity(step_trace: Trace) -> None:
    link = LinkModel(step_trace)
    for t in [0.0, 0.3, 9.99, 10.0, 25.5, 31.0, 95.25]:
        assert link.time_for_bytes(link.bytes_until(t)) == pytest.approx(t, abs=1e-9)


def test_two_transfers_sharing_the_link_end_as_fair_sharing_has_them() -> None:
    # 1 MB/s then 0.25 MB/s from 1 s: a 0.2 MB answer and a 1 MB segment both receiving from 0.5 s
    link = LinkModel(Trace(name="step", durations_s=np.array([1.0, 10.0]), bandwidth_bps=np.array([8e6, 2e6])))
    answer_end, segment_end = link.shared_finish(0.5, 200_000, 1_000_000)
    assert answer_end == pytest.approx(0.9)  # half of 1 MB/s: 0.4 s, not the 0.2 s it takes alone
    assert segment_end == pytest.approx(link.finish_time(0.5, 1_200_000))  # later by the answer's bytes only
    assert link.shared_finish(0.5, 1_000_000, 200_000) == (segment_end, answer_end)  # either order
    assert link.shared_finish(0.5, 300_000, 300_000) == pytest.approx((1.4, 1.4))  # equal sizes end together
    # across the rate change the smaller gets half of each rate: as netsim.sharing's processor sharing has it
    assert link.shared_finish(0.5, 500_000, 900_000) == pytest.approx(tuple(replay(link, [(0.5, 0.0, 500_000),
                                                                                         (0.5, 0.0, 900_000)])))


def test_batch_equals_scalar_for_every_trace(rng: np.random.Generator) -> None:
    traces = [synthetic.markov([0.3e6, 1e6, 4e6], duration_s=20 + i, seed=i) for i in range(5)]
    traces.append(Trace(name="gap", durations_s=np.array([1.0, 2.0, 1.0]), bandwidth_bps=np.array([8e6, 0.0, 8e6])))
    batch = LinkBatch(traces, payload_factor=0.95)
    starts = rng.uniform(0, 100, len(traces))
    sizes = rng.uniform(1e3, 5e6, len(traces))
    finish = batch.finish_time(starts, sizes)
    for trace, start, size, got in zip(traces, starts, sizes, finish):
        assert got == pytest.approx(LinkModel(trace, payload_factor=0.95).finish_time(start, size), rel=1e-12)


def test_scaled_trace_is_k_times_faster(step_trace: Trace) -> None:
    fast = LinkModel(step_trace.scaled(10))
    slow = LinkModel(step_trace)
    assert fast.download_time(0.5, 2e6) == pytest.approx(slow.download_time(5.0, 2e6) / 10)


def test_rotated_trace_starts_at_the_offset(step_trace: Trace) -> None:
    rotated = LinkModel(step_trace.rotated(12.5))
    original = LinkModel(step_trace)
    for t in [0.0, 3.0, 17.5, 40.0]:
        expected = original.bytes_until(12.5 + t) - original.bytes_until(12.5)
        assert rotated.bytes_until(t) == pytest.approx(expected)


@pytest.mark.parametrize("payload", [0.0, 1.5])
def test_payload_factor_is_validated(constant_trace: Trace, payload: float) -> None:
    with pytest.raises(ValueError, match="payload factor"):
        LinkModel(constant_trace, payload_factor=payload)
