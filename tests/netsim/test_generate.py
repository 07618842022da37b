"""Seeded Markov-modulated trace sets (`netsim.generate`)."""

from __future__ import annotations

import numpy as np
import pytest

from netsim.formats import format_pensieve, parse_pensieve
from netsim.generate import MarkovSpec, markov_set, markov_trace


def test_same_seed_same_traces_and_a_set_extends_without_changing_its_start() -> None:
    spec = MarkovSpec(outage_probability=(0.0, 0.05), scale=(0.5, 2.0), noise=(0.05, 0.3))
    first = markov_set(spec, seed=4, count=3)
    again = markov_set(spec, seed=4, count=5)
    for a, b in zip(first, again):
        assert a.name == b.name and a.bandwidth_bps.tobytes() == b.bandwidth_bps.tobytes()
    other = markov_set(spec, seed=5, count=3)
    assert all(a.bandwidth_bps.tobytes() != b.bandwidth_bps.tobytes() for a, b in zip(first, other))
    assert len({t.bandwidth_bps.tobytes() for t in again}) == 5


def test_without_switches_or_noise_the_rate_stays_on_one_level() -> None:
    spec = MarkovSpec(levels_bps=(1e6, 2e6, 4e6), switch_probability=(0.0, 0.0), noise=(0.0, 0.0), duration_s=60.0)
    for index in range(6):
        rates = markov_trace(spec, seed=0, index=index).bandwidth_bps
        assert rates.size == 60 and np.unique(rates).size == 1 and rates[0] in (1e6, 2e6, 4e6)


def test_levels_switch_at_the_given_rate_and_mostly_to_neighbours_with_low_locality() -> None:
    levels = tuple(float(2 ** k) * 1e6 for k in range(6))
    spec = MarkovSpec(levels_bps=levels, switch_probability=(0.2, 0.2), noise=(0.0, 0.0), locality=0.05,
                      duration_s=20_000.0)
    rates = markov_trace(spec, seed=1).bandwidth_bps
    changes = np.flatnonzero(np.diff(rates))
    assert changes.size / rates.size == pytest.approx(0.2, abs=0.02)
    steps = np.abs(np.diff(np.log2(rates))[changes])
    assert np.mean(steps == 1) > 0.9
    uniform = markov_trace(MarkovSpec(levels_bps=levels, switch_probability=(0.2, 0.2), noise=(0.0, 0.0),
                                      locality=1.0, duration_s=20_000.0), seed=1).bandwidth_bps
    assert np.mean(np.abs(np.diff(np.log2(uniform)))[np.flatnonzero(np.diff(uniform))] == 1) < 0.5


def test_outages_start_at_the_given_rate_with_the_given_mean_length() -> None:
    spec = MarkovSpec(outage_probability=(0.01, 0.01), outage_mean_s=4.0, duration_s=50_000.0)
    rates = markov_trace(spec, seed=2).bandwidth_bps
    dark = rates == 0
    starts = np.flatnonzero(dark[1:] & ~dark[:-1])
    assert rates[0] > 0 and starts.size > 50
    edges = np.flatnonzero(np.diff(np.r_[0, dark.astype(int), 0]))
    lengths = edges[1::2] - edges[0::2]
    assert lengths.mean() == pytest.approx(4.0, rel=0.2)
    # Starts per interval outside outages, about the outage probability
    assert starts.size / np.count_nonzero(~dark) == pytest.approx(0.01, rel=0.25)
    assert np.all(rates[~dark] >= spec.floor_bps)


def test_ranges_are_drawn_per_trace_within_bounds() -> None:
    spec = MarkovSpec(levels_bps=(1e6,), scale=(0.5, 4.0), noise=(0.0, 0.0))
    rates = [float(t.bandwidth_bps[0]) for t in markov_set(spec, seed=0, count=40)]
    assert min(rates) >= 0.5e6 and max(rates) <= 4e6 and len(set(rates)) == 40


def test_a_generated_trace_round_trips_through_the_pensieve_format() -> None:
    trace = markov_trace(MarkovSpec(outage_probability=(0.05, 0.05), duration_s=100.0), seed=9)
    back = parse_pensieve(format_pensieve(trace))
    np.testing.assert_allclose(back.bandwidth_bps, trace.bandwidth_bps, rtol=1e-8)
    np.testing.assert_allclose(back.durations_s, trace.durations_s)


@pytest.mark.parametrize(("changes", "message"), [
    ({"levels_bps": ()}, "levels must be"),
    ({"levels_bps": (1e6, -2.0)}, "levels must be"),
    ({"switch_probability": (0.2, 1.5)}, "switch probability must lie in"),
    ({"noise": (0.3, 0.1)}, "lo <= hi"),
    ({"scale": (0.0, 1.0)}, "scale must lie in"),
    ({"outage_probability": (0.0, 1.0)}, "outage probability must be < 1"),
    ({"locality": 0.0}, "locality must be in"),
    ({"interval_s": 0.0}, "interval must be > 0"),
    ({"duration_s": 0.5}, "at least one interval"),
    ({"outage_mean_s": float("nan")}, "outage mean"),
    ({"floor_bps": 0.0}, "floor must be"),
])
def test_bad_parameters_are_refused_by_name(changes: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        MarkovSpec(**changes)  # type: ignore[arg-type]


def test_bad_seed_index_or_count_are_refused() -> None:
    with pytest.raises(ValueError, match="seed and index"):
        markov_trace(MarkovSpec(), seed=-1)
    with pytest.raises(ValueError, match="count must be"):
        markov_set(MarkovSpec(), seed=0, count=0)
