"""The conformance suite over every registered algorithm, and proof that each check catches a bad one."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

import abr
from abr import conformance
from abr.types import BatchObservation, Decision, Observation

CHECKS = {check.name: check for check in conformance.CHECKS}


@pytest.mark.parametrize("check", conformance.CHECKS, ids=lambda c: c.name)
@pytest.mark.parametrize("name", abr.names())
def test_algorithm_conforms(name: str, check: conformance.Check) -> None:
    if not conformance.applies(check, name):
        pytest.skip(f"{name} does not declare the {check.tag!r} conformance tag")
    check.run(name)


# Which tagged checks apply is part of each algorithm's contract: a lost tag must be a visible change.
EXPECTED_TAGS = {
    "rate": {"bandwidth-monotone", "buffer-monotone", "batch"},
    "bba": {"bandwidth-monotone", "buffer-monotone", "batch"},
    "bola": {"bandwidth-monotone", "buffer-monotone"},
    "dynamic": {"bandwidth-monotone"},  # not buffer-monotone: crossing 12 s swaps throughput rule for BOLA
    "mpc": {"batch"},  # not bandwidth-monotone: a plan may start low to bank buffer for a later step up
    "mpc-robust": {"batch"},
    "sabre-throughput": {"bandwidth-monotone", "buffer-monotone"},
    "sabre-bola": {"bandwidth-monotone", "buffer-monotone"},
    "bola-o": {"bandwidth-monotone", "buffer-monotone"},
    "bola-e": {"bandwidth-monotone", "buffer-monotone"},
    "sabre-dynamic": {"bandwidth-monotone"},  # not buffer-monotone: around 10 s BOLA's pick may be the lower
    "dynamic-dash": {"bandwidth-monotone"},  # not buffer-monotone: above 10 s BOLA-E replaces the throughput rule
    # Live algorithms learn online from the session (L2A's Lagrangian state, LoL+'s self-organising map):
    # one more Mbit/s in the history can move that state either way, so neither claims monotonicity.
    "l2a": set(),
    "lolp": set(),
}


@pytest.mark.parametrize(("name", "expected"), EXPECTED_TAGS.items())
def test_builtin_algorithms_declare_their_conformance_tags(name: str, expected: set[str]) -> None:
    assert conformance.tags(name) == expected


# -- each check fails on an algorithm that breaks its property ----------------------------------------------------


class _Fake:
    name = "fake"
    conformance_tags: frozenset[str] = frozenset()

    def __init__(self, **params: Any) -> None:
        self.params = params

    def decide(self, obs: Observation) -> Decision:
        return Decision(quality=0, reason="fake")


class _OutOfRange(_Fake):
    def decide(self, obs: Observation) -> Decision:
        return Decision(quality=obs.ladder.top + (obs.segment_index == 3), reason="one too far")


class _Silent(_Fake):
    def decide(self, obs: Observation) -> Decision:
        return Decision(quality=0, reason=" " if obs.buffer_s > 5 else "fine")


class _Moody(_Fake):
    calls = [0]  # shared by every instance: exactly the hidden state determinism forbids

    def decide(self, obs: Observation) -> Decision:
        self.calls[0] += 1
        return Decision(quality=self.calls[0] % len(obs.ladder), reason="mood")


class _Contrarian(_Fake):
    conformance_tags = frozenset({"bandwidth-monotone"})

    def decide(self, obs: Observation) -> Decision:
        rate = obs.downloads[-1].throughput_bps if obs.downloads else 0.0
        return Decision(quality=obs.ladder.top if rate < 1e6 else 0, reason="backwards")


class _Hoarder(_Fake):
    conformance_tags = frozenset({"buffer-monotone"})

    def decide(self, obs: Observation) -> Decision:
        return Decision(quality=obs.ladder.top if obs.buffer_s < 10 else 0, reason="backwards")


class _Forked(_Fake):
    conformance_tags = frozenset({"batch"})

    def decide(self, obs: Observation) -> Decision:
        return Decision(quality=obs.ladder.top if obs.buffer_s > 8 else 0, reason="scalar")

    def decide_batch(self, obs: BatchObservation) -> np.ndarray:
        return np.where(obs.buffer_s > 9, obs.ladder.top, 0)


@pytest.mark.parametrize(("check", "fake", "message"), [
    ("decisions_in_range", _OutOfRange, "outside"),
    ("reasons_given", _Silent, "empty reason"),
    ("deterministic", _Moody, "not deterministic"),
    ("monotone_in_bandwidth", _Contrarian, "as fast"),
    ("monotone_in_buffer", _Hoarder, "at buffer"),
    ("batch_matches_scalar", _Forked, "batch and scalar disagree"),
])
def test_check_catches_an_algorithm_that_breaks_it(check: str, fake: type[_Fake], message: str) -> None:
    assert conformance.applies(CHECKS[check], "fake", factory=fake)
    with pytest.raises(AssertionError, match=message):
        CHECKS[check].run("fake", factory=fake)


def test_tagged_checks_do_not_apply_without_the_tag() -> None:
    tagged = [c for c in conformance.CHECKS if c.tag is not None]
    assert tagged and not any(conformance.applies(c, "fake", factory=_Fake) for c in tagged)
    assert conformance.run_checks("fake", factory=_Fake) == ["decisions_in_range", "reasons_given", "deterministic"]


def test_variants_run_with_their_own_tags() -> None:
    # `rate` with an EWMA predictor has no batch form; its windowed variants do.
    assert "batch" not in conformance.tags("rate", {"estimator": "ewma"})
    assert {"estimator": "ewma"} in conformance.variants("rate")
