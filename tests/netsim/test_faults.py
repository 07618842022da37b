"""Link faults: the scalar `FaultedLink`, its batch twin, and the CLI fault specs."""

from __future__ import annotations

import numpy as np
import pytest

from netsim import synthetic
from netsim.faults import FaultedLink, FaultedLinkBatch, FaultWindow, blocked_spans, parse_fault, parse_faults
from netsim.link import LinkBatch, LinkModel


def test_faulted_link_loses_the_capacity_of_its_windows() -> None:
    link = LinkModel(synthetic.constant(8e6, duration_s=100.0))
    faulted = FaultedLink(link, [FaultWindow(start_s=1, duration_s=2), FaultWindow(start_s=2, duration_s=2, kind="loss_burst", recovery_s=1)])
    rate = 1e6
    assert faulted.bytes_until(1.0) == pytest.approx(rate)
    assert faulted.bytes_until(4.9) == pytest.approx(rate)  # blocked 1 s .. 5 s (merged windows)
    assert faulted.bytes_until(6.0) == pytest.approx(2 * rate)
    assert faulted.blocked_at(3.0) and not faulted.blocked_at(5.0)
    for total in (0.5 * rate, rate, 1.5 * rate, 7 * rate):
        assert faulted.bytes_until(faulted.time_for_bytes(total)) == pytest.approx(total)
    assert faulted.time_for_bytes(1.5 * rate) == pytest.approx(5.5)
    assert faulted.download_time(0.0, 2 * rate) == pytest.approx(6.0)


def test_blocked_spans_merge_overlapping_and_touching_windows() -> None:
    windows = [FaultWindow(start_s=10, duration_s=1), FaultWindow(start_s=1, duration_s=2),
               FaultWindow(start_s=3, duration_s=1, kind="loss_burst", recovery_s=0.5),
               FaultWindow(start_s=2, duration_s=0.5)]
    assert blocked_spans(windows) == [(1.0, 4.5), (10.0, 11.0)]


def test_batch_equals_scalar_with_different_windows_per_row(rng: np.random.Generator) -> None:
    traces = [synthetic.markov([0.3e6, 1e6, 4e6], duration_s=30 + i, seed=i) for i in range(4)]
    traces.append(traces[0])  # a repeated trace with its own schedule
    schedules = [
        [FaultWindow(start_s=2.0, duration_s=3.0)],
        [],
        [FaultWindow(start_s=5.0, duration_s=1.0, kind="loss_burst", recovery_s=0.2), FaultWindow(start_s=40.0, duration_s=7.0)],
        [FaultWindow(start_s=0.0, duration_s=0.5), FaultWindow(start_s=0.4, duration_s=2.0), FaultWindow(start_s=90.0, duration_s=1.0)],
        [FaultWindow(start_s=33.0, duration_s=4.0)],
    ]
    batch = FaultedLinkBatch(LinkBatch(traces), schedules)
    scalar = [FaultedLink(LinkModel(t), s) for t, s in zip(traces, schedules)]
    for _ in range(20):
        start = rng.uniform(0.0, 120.0, len(traces))
        size = rng.uniform(1e3, 2e6, len(traces))
        expected = [link.finish_time(float(t), float(n)) for link, t, n in zip(scalar, start, size)]
        np.testing.assert_allclose(batch.finish_time(start, size), expected, rtol=1e-12, atol=1e-9)
        np.testing.assert_allclose(batch.bytes_until(start), [link.bytes_until(float(t)) for link, t in zip(scalar, start)],
                                   rtol=1e-12, atol=1e-6)
    which = np.array([2, 2, 0, 4])
    start = np.array([4.0, 41.0, 1.0, 30.0])
    expected = [scalar[j].finish_time(float(t), 5e5) for j, t in zip(which, start)]
    np.testing.assert_allclose(batch.finish_time(start, np.full(4, 5e5), which), expected, rtol=1e-12)


def test_batch_without_faults_is_the_plain_link() -> None:
    links = LinkBatch([synthetic.step([4e6, 1e6], step_s=5.0)] * 2)
    faulted = FaultedLinkBatch(links, [(), ()])
    start, size = np.array([0.0, 7.5]), np.array([3e6, 1e5])
    np.testing.assert_array_equal(faulted.finish_time(start, size), links.finish_time(start, size))


def test_batch_needs_one_schedule_per_link() -> None:
    with pytest.raises(ValueError, match="one fault schedule per link"):
        FaultedLinkBatch(LinkBatch([synthetic.constant(1e6, duration_s=10)]), [(), ()])


def test_cli_specs_become_windows() -> None:
    assert parse_faults(outages=["30:10"], loss_bursts=["5:1", "8:1:0.5"]) == (
        FaultWindow(start_s=30, duration_s=10),
        FaultWindow(start_s=5, duration_s=1, kind="loss_burst", recovery_s=0.2),
        FaultWindow(start_s=8, duration_s=1, kind="loss_burst", recovery_s=0.5),
    )


@pytest.mark.parametrize(
    ("spec", "kind", "message"),
    [
        ("3", "outage", "expected START_S:DURATION_S"),
        ("3:x", "outage", "numbers"),
        ("3:1:0.2", "outage", "expected START_S:DURATION_S"),
        ("3:0", "outage", "duration"),
        ("-1:2", "loss_burst", "start"),
        ("1:2:-1", "loss_burst", "recovery"),
    ],
)
def test_bad_fault_specs_are_rejected(spec: str, kind: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_fault(spec, kind)  # type: ignore[arg-type]
