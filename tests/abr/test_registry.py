"""The registry: names, parameters bound to each factory's signature, and errors that say what is wrong."""

from __future__ import annotations

import inspect
import traceback
from pathlib import Path
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


# -- parameter specs ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("spec", "name", "arg", "params"), [
    ("bba", "bba", None, ()),
    ("learned:models/a.json", "learned", "models/a.json", ()),
    ("learned:a,b.json", "learned", "a,b.json", ()),  # no key=value: the whole text is the argument
    ("rate:safety=0.8", "rate", None, (("safety", "0.8"),)),
    ("rate:safety=0.8,window=3", "rate", None, (("safety", "0.8"), ("window", "3"))),
    ("learned:m.json,greedy=1", "learned", "m.json", (("greedy", "1"),)),
])
def test_spec_strings_parse_into_name_argument_and_parameters(spec: str, name: str, arg: str | None,
                                                              params: tuple[tuple[str, str], ...]) -> None:
    assert registry.parse_call(spec) == registry.SpecCall(name=name, arg=arg, params=params)


@pytest.mark.parametrize(("texts", "expected"), [
    (("bba,rate",), ("bba", "rate")),
    (("bba,rate:safety=0.8,window=3,mpc",), ("bba", "rate:safety=0.8,window=3", "mpc")),
    (("rate:safety=0.8;rate:safety=0.6",), ("rate:safety=0.8", "rate:safety=0.6")),
    (("bba", "mpc:horizon=3"), ("bba", "mpc:horizon=3")),  # a repeated --abr
])
def test_spec_lists_take_commas_semicolons_and_repeats(texts: tuple[str, ...], expected: tuple[str, ...]) -> None:
    assert registry.parse_spec_list(*texts) == expected


@pytest.mark.parametrize(("texts", "message"), [
    (("safety=0.8,bba",), "follows no algorithm"),
    (("rate:safety=0.8,safety=0.7",), "given twice"),
    (("bba", "bba"), "names bba more than once"),
    (("learned:m.json,x,safety=1",), "follows 'x', which has no ':' \\(write x:safety=1\\)"),
    (("rate safety=1",), "not an algorithm name"),
])
def test_malformed_spec_lists_are_clear_errors(texts: tuple[str, ...], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        registry.parse_spec_list(*texts)


def test_spec_values_take_the_type_the_factory_declares() -> None:
    rate = abr.make("rate:safety=0.8,window=3,estimator=window")
    assert (rate.params.safety, rate.params.window, rate.params.estimator) == (0.8, 3, "window")  # type: ignore[attr-defined]
    assert abr.make("rate:window=none").params.window is None  # type: ignore[attr-defined]
    mpc = abr.make("mpc:pensieve_indexing=yes,horizon=2,rebuffer_penalty=10")
    assert (mpc.params.pensieve_indexing, mpc.params.horizon, mpc.params.rebuffer_penalty) == (True, 2, 10.0)  # type: ignore[attr-defined]
    sabre = abr.make("sabre-throughput:half_lives_s=2/4,window_sizes=3/5")
    assert sabre.params.half_lives_s == (2.0, 4.0) and sabre.params.window_sizes == (3, 5)  # type: ignore[attr-defined]
    assert abr.make("mpc:utility=log").params.utility == "log"  # type: ignore[attr-defined]


def test_spec_parameters_win_over_keyword_defaults() -> None:
    assert abr.make("bba:reservoir_s=3", reservoir_s=7.0).params.reservoir_s == 3.0  # type: ignore[attr-defined]


@pytest.mark.parametrize(("spec", "message"), [
    ("rate:safety=fast", "ABR 'rate': parameter 'safety' must be float, got 'fast'"),
    ("rate:speed=2", "ABR 'rate' has no parameter 'speed'; it takes estimator, window, safety"),
    ("mpc:pensieve_indexing=maybe", "parameter 'pensieve_indexing' must be bool, got 'maybe'"),
    ("mpc:utility=vmaf", "parameter 'utility' must be one of 'lin', 'log', 'hd', 'quality', got 'vmaf'"),
    ("rate:safety=2", "safety"),  # the factory's own check, unchanged
])
def test_bad_spec_values_are_clear_errors(spec: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        abr.make(spec)


def test_the_catalogue_lists_every_algorithm_with_typed_parameters_and_defaults() -> None:
    text = registry.catalogue()
    for name in abr.names():
        assert f"\n{name}: " in f"\n{text}"
    assert "    safety (float) = 1.0" in text
    assert "    :ARG (str or None)" in text or "    :ARG" in text  # learned's model path
    params = {p.name: p for p in registry.describe("mpc")}
    assert params["utility"].type == "one of 'lin', 'log', 'hd', 'quality'" and params["horizon"].default == "5"


# -- plugins and entry points ---------------------------------------------------------------------------------

PLUGIN = '''
from abr import Decision, register


class Lowest:
    name = "lowest-{tag}"

    def __init__(self, *, floor: int = 0) -> None:
        self.floor = floor

    def decide(self, obs):
        return Decision(quality=min(self.floor, obs.ladder.top), reason="floor")


register("lowest-{tag}", Lowest, "always the floor quality")
'''


@pytest.mark.usefixtures("restored_registry")
def test_a_plugin_file_registers_once_per_process(tmp_path: Path) -> None:
    from abr.plugins import load_plugin

    path = tmp_path / "lowest_plugin.py"
    path.write_text(PLUGIN.format(tag="file"))
    first = load_plugin(str(path))
    assert load_plugin(str(path)) is first  # no second registration ("already registered")
    assert abr.make("lowest-file:floor=2").floor == 2  # type: ignore[attr-defined]
    with pytest.raises(ValueError, match="no such file"):
        load_plugin(str(tmp_path / "missing.py"))
    with pytest.raises(ValueError, match="no such file or importable module"):
        load_plugin("no_such_module_anywhere")


@pytest.mark.usefixtures("restored_registry")
def test_entry_points_are_found_by_name_and_loaded_on_first_use(tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "ep_plugin_mod.py").write_text(PLUGIN.format(tag="module") + '''

def factory(*, floor: int = 1):
    """A factory registered under its entry point's name."""
    return Lowest(floor=floor)
''')
    dist = tmp_path / "abrkit_ep_demo-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: abrkit-ep-demo\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text(
        "[abrkit.abr]\nlowest-module = ep_plugin_mod\nlowest-factory = ep_plugin_mod:factory\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert {"lowest-module", "lowest-factory"} <= set(abr.names())  # listed before anything is imported
    assert abr.make("lowest-factory:floor=3").floor == 3  # type: ignore[attr-defined]
    assert registry._REGISTRY["lowest-factory"].description == "A factory registered under its entry point's name."
    assert abr.make("lowest-module").decide  # the module registered it on import



def test_maker_checks_the_spec_once_and_makes_fresh_instances() -> None:
    from abr.registry import maker

    make_bola = maker("bola:minimum_buffer_s=8")
    first, second = make_bola(), make_bola()
    assert first is not second
    assert first.params.minimum_buffer_s == second.params.minimum_buffer_s == 8  # type: ignore[attr-defined]
    with pytest.raises(ValueError, match="unknown ABR"):
        maker("no-such-abr")
