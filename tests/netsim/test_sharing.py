"""Concurrent transfers on one link: each active transfer gets an equal share of the capacity."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from netsim.faults import FaultedLink, FaultWindow
from netsim.link import LinkModel
from netsim.sharing import SharedLink, replay
from netsim.trace import Trace

BYTES_PER_S = 1000.0


def _constant() -> LinkModel:
    return LinkModel(Trace(name="c", durations_s=np.array([100.0]), bandwidth_bps=np.array([BYTES_PER_S * 8])))


def _finish_times(link: SharedLink) -> dict[str, float]:
    done: dict[str, float] = {}
    while len(link):
        for key in link.advance(link.next_event_s()):
            done[key] = link.now_s  # type: ignore[index]
    return done


def test_a_lone_transfer_finishes_when_the_link_model_says(step_trace: Trace) -> None:
    model = LinkModel(step_trace)
    link = SharedLink(model, now_s=1.5)
    link.start("v", starts_s=1.58, size_bytes=600_000)
    assert _finish_times(link)["v"] == pytest.approx(model.finish_time(1.58, 600_000), abs=1e-9)


def test_two_transfers_share_the_capacity_evenly_while_both_are_active() -> None:
    link = SharedLink(_constant())
    link.start("a", starts_s=0.0, size_bytes=1000)
    link.start("b", starts_s=0.5, size_bytes=1000)
    # a alone for 0.5 s (500 B), then 500 B/s each: a needs 1 s more, b has 500 B left and then the link.
    assert _finish_times(link) == pytest.approx({"a": 1.5, "b": 2.0})


def test_equal_transfers_started_together_finish_together() -> None:
    link = SharedLink(_constant())
    for key in ("a", "b", "c"):
        link.start(key, starts_s=0.0, size_bytes=500)
    assert link.advance(1.4) == [] and link.received_bytes("a") == pytest.approx(1400 / 3)
    assert sorted(link.advance(2.0)) == ["a", "b", "c"]  # type: ignore[type-var]


def test_an_outage_delivers_nothing_to_any_transfer() -> None:
    link = SharedLink(FaultedLink(_constant(), [FaultWindow(start_s=0.5, duration_s=2.0)]))
    link.start("a", starts_s=0.0, size_bytes=1000)
    link.start("b", starts_s=0.0, size_bytes=250)
    # 0.5 s at 500 B/s each (b is done), nothing until 2.5 s, then a's last 750 B alone.
    assert _finish_times(link) == pytest.approx({"b": 0.5, "a": 3.25})


def test_a_cancelled_transfer_returns_what_it_received_and_frees_its_share() -> None:
    link = SharedLink(_constant())
    link.start("a", starts_s=0.0, size_bytes=1000)
    link.start("b", starts_s=0.0, size_bytes=1000)
    link.advance(1.0)
    assert link.cancel("b") == pytest.approx(500)
    assert _finish_times(link) == pytest.approx({"a": 1.5})


def test_bad_transfers_are_refused() -> None:
    link = SharedLink(_constant(), now_s=2.0)
    with pytest.raises(ValueError, match="before the link's now"):
        link.start("a", starts_s=1.0, size_bytes=10)
    link.start("a", starts_s=2.0, size_bytes=10)
    with pytest.raises(ValueError, match="already on the link"):
        link.start("a", starts_s=3.0, size_bytes=10)
    with pytest.raises(ValueError, match="went backwards"):
        link.advance(1.0)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.floats(0, 20), st.floats(0, 0.2), st.integers(1, 200_000)), min_size=1, max_size=12),
       st.lists(st.floats(1e4, 5e6), min_size=1, max_size=8))
def test_replay_delivers_every_byte_the_link_offers_and_no_more(requests: list[tuple[float, float, int]],
                                                                 rates: list[float]) -> None:
    model = LinkModel(Trace(name="r", durations_s=np.ones(len(rates)), bandwidth_bps=np.array(rates)))
    finish = replay(model, requests)
    for (made, latency, size), end in zip(requests, finish):
        # No transfer beats having the link to itself; all of them together need the link's bytes.
        assert end >= model.finish_time(made + latency, size) - 1e-6
    first = min(m + w for m, w, _ in requests)
    total = sum(size for _, _, size in requests)
    assert max(finish) >= model.finish_time(first, total) - 1e-6
