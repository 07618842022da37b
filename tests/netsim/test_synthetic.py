from __future__ import annotations

import numpy as np
import pytest

from netsim import synthetic
from netsim.sources import open_traces


def test_generators_are_deterministic_for_a_seed() -> None:
    a = synthetic.markov([1e6, 3e6], seed=7)
    b = synthetic.markov([1e6, 3e6], seed=7)
    c = synthetic.markov([1e6, 3e6], seed=8)
    np.testing.assert_array_equal(a.bandwidth_bps, b.bandwidth_bps)
    assert not np.array_equal(a.bandwidth_bps, c.bandwidth_bps)


def test_random_walk_reverts_to_its_mean() -> None:
    walk = synthetic.random_walk(mean_bps=2e6, duration_s=3000, seed=1)
    assert np.median(walk.bandwidth_bps) == pytest.approx(2e6, rel=0.25)


@pytest.mark.parametrize(
    ("spec", "mean_bps", "duration_s"),
    [("constant:3e6", 3e6, 60.0), ("step:4e6,1e6,8e6@5", 13e6 / 3, 15.0), ("constant:1e6@duration_s=10", 1e6, 10.0)],
)
def test_specs_parse(spec: str, mean_bps: float, duration_s: float) -> None:
    (trace,) = open_traces([spec])
    assert trace.mean_bandwidth_bps == pytest.approx(mean_bps)
    assert trace.duration_s == pytest.approx(duration_s)


@pytest.mark.parametrize("spec", ["step:", "constant:abc", "markov:-1", "walk:1,2"])
def test_bad_specs_raise_clear_errors(spec: str) -> None:
    with pytest.raises(ValueError, match="synthetic trace spec|positive|non-negative"):
        synthetic.from_spec(spec)


@pytest.mark.parametrize(("name", "kbps", "seconds"), [
    ("cascade", [1200, 800, 400, 800, 1200], [30] * 5),
    ("intra-cascade", [1000, 800, 600, 400, 200, 400, 600, 800, 1000], [15] * 9),
    ("spike", [1200, 300, 800], [10] * 3),
    ("slow-jitters", [500, 1200] * 3, [5] * 6),
    ("fast-jitters", [500, 1200, 500, 1200, 500, 1200], [0.25, 5, 0.1, 1, 0.25, 5]),
])
def test_low_latency_profiles_are_the_mmsys_2020_challenges(name: str, kbps: list[float], seconds: list[float]) -> None:
    trace = synthetic.from_spec(f"profile:{name}")
    np.testing.assert_allclose(trace.bandwidth_bps, np.array(kbps) * 1e3)
    np.testing.assert_allclose(trace.durations_s, seconds)
    assert trace.name == f"profile-{name}"


def test_profiles_scale_and_resolve_as_sources() -> None:
    trace = synthetic.from_spec("profile:spike@scale=4")
    np.testing.assert_allclose(trace.bandwidth_bps, [4.8e6, 1.2e6, 3.2e6])
    (opened,) = open_traces(["profile:cascade"])
    assert opened.name == "profile-cascade"


@pytest.mark.parametrize("spec", ["profile:nope", "profile:spike@scale=x", "profile:spike@speed=2", "profile:spike@scale=0"])
def test_bad_profile_specs_raise_clear_errors(spec: str) -> None:
    with pytest.raises(ValueError, match="profile"):
        synthetic.from_spec(spec)
