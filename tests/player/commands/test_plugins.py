"""Algorithms from outside abrkit: `--plugin` in sim, run, play and train, `abrkit check`, the example."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from player.bundled import ENVIVIO_DIR, TRACES_DIR
from player.cli import main
from tests.conftest import REPO_ROOT

EXAMPLE = REPO_ROOT / "examples" / "abr_plugin.py"
pytestmark = pytest.mark.usefixtures("restored_registry")  # plugins register into this process

BROKEN = '''
from abr import Decision, register


class OffByOne:
    name = "off-by-one"

    def decide(self, obs):
        return Decision(quality=obs.ladder.top + (obs.segment_index == 3), reason="one too far")


register("off-by-one", OffByOne, "chooses past the top rung at segment 3")
'''

# A user's script: registers an algorithm and, with or without a __main__ guard, may run abrkit itself.
GUARDED = '''
from abr import Decision, register


def steady(*, quality: int = 1):
    class Steady:
        name = "steady-guarded"

        def decide(self, obs):
            return Decision(quality=min(quality, obs.ladder.top), reason="steady")
    return Steady()


register("steady-guarded", steady, "a fixed quality")

if __name__ == "__main__":
    from player.cli import main
    raise SystemExit(main())
'''
UNGUARDED = GUARDED.replace("steady-guarded", "steady-bare").split("if __name__")[0]


def test_abrkit_check_passes_the_example_plugin(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", "cautious-rate:safety=0.7", "--plugin", str(EXAMPLE)]) == 0
    out = capsys.readouterr().out
    for check in ("decisions_in_range", "reasons_given", "deterministic", "monotone_in_bandwidth", "monotone_in_buffer"):
        assert f"PASS  {check}" in out
    assert "SKIP  batch_matches_scalar (needs the 'batch' tag)" in out
    assert out.rstrip().endswith("all checks passed")


def test_abrkit_check_names_the_check_a_broken_algorithm_fails(tmp_path: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    plugin = tmp_path / "broken_plugin.py"
    plugin.write_text(BROKEN)
    assert main(["check", "off-by-one", "--plugin", str(plugin)]) == 1
    out = capsys.readouterr().out
    assert "FAIL  decisions_in_range: off-by-one chose quality 1 outside 0..0" in out
    assert "PASS  deterministic" in out and out.rstrip().endswith("1 check failed")


def test_abrkit_check_on_a_builtin_with_parameters_and_unknown_names(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", "bba:reservoir_s=3"]) == 0
    assert "PASS  batch_matches_scalar" in capsys.readouterr().out
    assert main(["check", "nope"]) == 2
    assert "unknown ABR 'nope'" in capsys.readouterr().err


def test_sim_runs_a_plugin_algorithm_with_parameters(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["sim", "--plugin", str(EXAMPLE), "--abr", "cautious-rate:safety=0.7,panic_s=2;bba", "--traces",
                 str(TRACES_DIR), "--video", str(ENVIVIO_DIR), "--no-optimal", "--json"]) == 0
    results = json.loads(capsys.readouterr().out)["results"]
    assert set(results) == {"cautious-rate:safety=0.7,panic_s=2", "bba"}
    assert results["cautious-rate:safety=0.7,panic_s=2"]["sessions"] == results["bba"]["sessions"] > 0


def test_list_abr_shows_plugin_parameters_with_types_and_defaults(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["sim", "--plugin", str(EXAMPLE), "--list-abr"]) == 0
    out = capsys.readouterr().out
    assert "cautious-rate: rate rule with a safety factor and a panic buffer" in out
    assert "    safety (float) = 0.8" in out and "    panic_s (float) = 4.0" in out
    assert "    horizon (int) = 5" in out  # mpc's, among the built-ins


@pytest.mark.parametrize(("script", "name"), [(GUARDED, "steady-guarded"), (UNGUARDED, "steady-bare")])
def test_run_workers_load_the_plugin_with_or_without_a_main_guard(tmp_path: Path, script: str, name: str,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    plugin = tmp_path / "user_script.py"
    plugin.write_text(script)
    out = tmp_path / "out"
    # Two spawned worker processes: each must import the plugin before it makes the algorithm.
    assert main(["run", "--plugin", str(plugin), "--abr", f"{name}:quality=2", "--abr", "bba", "--traces",
                 str(TRACES_DIR), "--video-or-title", str(ENVIVIO_DIR), "--mode", "sim", "--workers", "2",
                 "--out", str(out), "--quiet", "--timelines", "0"]) == 0
    rows = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    steady = [r for r in rows if r["abr"] == f"{name}:quality=2"]
    assert steady and all(r["error"] is None and set(r["timeline"]["quality"]) == {2} for r in steady)
    assert "sessions run" in capsys.readouterr().out


def test_play_and_train_take_the_plugin_option(capsys: pytest.CaptureFixture[str]) -> None:
    from player.cli import build_parser

    assert main(["play", "--plugin", str(EXAMPLE), "--list-abr"]) == 0
    assert "cautious-rate" in capsys.readouterr().out
    args = build_parser("train").parse_args(["train", "--traces", "x", "--video", "y", "--out", "z",
                                             "--plugin", str(EXAMPLE)])
    assert args.plugin == [str(EXAMPLE)]


def test_a_bad_parameter_is_one_error_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["sim", "--abr", "rate:safety=fast", "--traces", str(TRACES_DIR), "--video", str(ENVIVIO_DIR)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["abrkit sim: error: ABR 'rate': parameter 'safety' must be float, got 'fast'"]


def test_missing_required_options_are_named(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["sim", "--abr", "bba"]) == 2
    assert "the following arguments are required: --traces, --video" in capsys.readouterr().err
