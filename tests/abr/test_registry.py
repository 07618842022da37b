"""The registry: names, parameters bound to each factory's signature, and errors that say what is wrong."""

from __future__ import annotations

import inspect
import traceback
from typing import Any

import numpy as np
import pytest

import abr
from abr import registry
from abr.algorithms.bba import Bba
from abr.types import AbrSpec, Decision, Observation


def test_registry_lists_the_builtin_algorithms() -> None:
    assert {"rate", "bba", "bola", "mpc", "mpc-robust", "dynamic", "learned", "sabre-throughput", "sabre-bola",
            "bola-o", "bola-e", "sabre-dynamic", "dynamic-dash"} <= set(abr.names())


@pytest.mark.parametrize(("spec", "params", "message"), [
    ("bba", {"foo": 1}, "ABR 'bba' has no parameter 'foo'; it takes reservoir_s, cushion_s, map$"),
    ("bba", {"reservoir": 5}, "has no parameter 'reservoir'"),  # a typo is an error, not a silent default
    ("mpc", {"error_window": 3}, "ABR 'mpc' has no parameter 'error_window'; it takes horizon, "),  # RobustMPC's
    ("learned", {"horizon": 3}, r"it takes model \(and an argument: learned:ARG\)"),
    ("bba:x", {}, "ABR 'bba' takes no argument after ':'"),
    ("bba", {"reservoir_s": "5"}, "ABR 'bba': parameter 'reservoir_s' must be float, got str '5'"),
    ("bba", {"map": 1}, "parameter 'map' must be str, got int 1"),
    ("rate", {"window": 2.5}, "parameter 'window' must be int or None, got float 2.5"),
    ("mpc", {"pensieve_indexing": 1}, "parameter 'pensieve_indexing' must be bool, got int 1"),
    ("mpc", {"horizon": True}, "parameter 'horizon' must be int, got bool True"),
    ("learned", {"model": "weights.json"}, "parameter 'model' must be PolicyModel or None"),
])
def test_a_wrong_name_or_type_is_a_clear_value_error(spec: str, params: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        abr.make(spec, **params)


@pytest.mark.parametrize(("spec", "params"), [
    ("bba", {"reservoir_s": 7}),  # an int where a float is declared
    ("bba", {"reservoir_s": np.float64(7.0), "map": "pensieve"}),
    ("mpc", {"horizon": np.int64(3), "pensieve_indexing": True}),
    ("rate", {"window": None, "estimator": "window"}),
])
def test_numbers_of_any_kind_bind_where_they_fit(spec: str, params: dict[str, Any]) -> None:
    algorithm = abr.make(spec, **params)
    for key, value in params.items():
        assert getattr(algorithm.params, key) == value  # type: ignore[attr-defined]


def test_a_factory_over_a_dataclass_shows_its_fields() -> None:
    factory = registry._REGISTRY["bba"].factory
    assert str(inspect.signature(factory)) == "(*, reservoir_s: float = 5.0, cushion_s: float = 10.0, map: str = 'rate')"
    assert isinstance(abr.make("bba"), Bba)


class Broken:
    name = "broken"

    def __init__(self, level: int) -> None:
        self.level = level + "1"  # type: ignore[operator]  # a bug inside the constructor

    def decide(self, obs: Observation) -> Decision:
        return Decision(quality=0)


def make_broken(level: int = 0) -> Broken:
    return Broken(level)


def test_an_error_inside_a_constructor_keeps_its_own_type_and_traceback(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(registry._REGISTRY, "broken", AbrSpec(name="broken", description="test", factory=make_broken))
    with pytest.raises(TypeError, match="unsupported operand") as caught:
        abr.make("broken", level=2)
    frames = [frame.name for frame in traceback.extract_tb(caught.value.__traceback__)]
    assert frames[-2:] == ["make_broken", "__init__"]  # raised where the bug is, not re-raised by make
    with pytest.raises(ValueError, match="parameter 'level' must be int"):
        abr.make("broken", level="2")  # the same call with a wrong type never reaches the constructor


def test_a_value_error_inside_a_constructor_is_the_constructor_s() -> None:
    with pytest.raises(ValueError, match="cushion_s must be > 0 s, got 0") as caught:
        abr.make("bba", cushion_s=0)
    assert traceback.extract_tb(caught.value.__traceback__)[-1].name == "__post_init__"
