"""Random sessions' ingredients for the simulator's property tests (tests/player/research/test_sim_terminates.py,
test_sim_pipelines.py, test_live_sim.py): the algorithms that run on any ladder, random traces (with
zero-capacity intervals and per-interval latency) and random player profiles."""

from __future__ import annotations

import dataclasses

import numpy as np
from hypothesis import strategies as st

import abr
from netsim.trace import Trace
from player.research.sim import PROFILES, SimProfile

ALGORITHMS = tuple(n for n in abr.names() if n != "learned")  # learned needs its trained ladder


@st.composite
def random_traces(draw: st.DrawFn, *, max_intervals: int = 30, durations_s: tuple[float, float] = (0.01, 30.0),
                  rates_bps: tuple[float, float] = (2e4, 1e8)) -> Trace:
    """Random traces with zero-capacity intervals (at least one interval carries data) and, or not,
    a latency per interval: the link shapes that once made sessions loop forever."""
    n = draw(st.integers(1, max_intervals))
    durations = draw(st.lists(st.floats(*durations_s), min_size=n, max_size=n))
    rates = draw(st.lists(st.one_of(st.just(0.0), st.floats(*rates_bps)), min_size=n, max_size=n))
    if not any(r > 0 for r in rates):
        rates[0] = 1e6
    latency = draw(st.one_of(st.none(), st.lists(st.floats(0.0, 0.3), min_size=n, max_size=n)))
    return Trace(name="random", durations_s=np.array(durations), bandwidth_bps=np.array(rates),
                 latency_s=None if latency is None else np.array(latency))


def traces() -> st.SearchStrategy[Trace]:
    return random_traces()


@st.composite
def profiles(draw: st.DrawFn) -> SimProfile:
    base = PROFILES[draw(st.sampled_from(sorted(PROFILES)))]
    cap = draw(st.one_of(st.floats(0.1, 120.0), st.sampled_from((4.0, 25.0, 60.0))))
    return dataclasses.replace(base, session=dataclasses.replace(base.session, buffer_cap_s=cap))
