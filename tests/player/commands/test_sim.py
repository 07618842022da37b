"""`abrkit sim` as a user runs it: outputs never change the engine, and the loader's choices are visible."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from abr.registry import parse_spec_list
from player.bundled import ENVIVIO_DIR, TRACES_DIR
from player.cli import main
from player.research.stats import mean_ci


def test_out_keeps_the_engine_and_writes_every_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    assert main(["sim", "--abr", "bba,bola", "--traces", str(TRACES_DIR), "--video", str(ENVIVIO_DIR),
                 "--no-optimal", "--out", str(out), "--plot-sessions", "0"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["results"]["bba"]["engine"] == ["batch"]  # as without --out
    assert summary["results"]["bola"]["engine"] == ["session"]  # no vectorised twin
    segments = [json.loads(line) for line in (out / "segments.jsonl").read_text().splitlines()]
    assert {s["reason"] is None for s in segments if s["abr"] == "bba"} == {True}
    assert all(s["reason"] for s in segments if s["abr"] == "bola")
    assert "plays 48 of 49 segments" in capsys.readouterr().err


def test_a_repeated_algorithm_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["sim", "--abr", "bba,rate,bba", "--traces", str(TRACES_DIR), "--video", str(ENVIVIO_DIR),
                 "--no-optimal"]) == 2
    assert "names bba more than once" in capsys.readouterr().err


@pytest.mark.parametrize("text, message", [("bba,,rate", "empty algorithm"), (" ", "empty algorithm"),
                                           ("rate,rate", "names rate more than once")])
def test_spec_lists_refuse_empties_and_repeats(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_spec_list(text)


def test_one_session_has_no_confidence_interval_to_show() -> None:
    assert str(mean_ci([3.0])) == "3.00 (n=1, no CI)"
    assert str(mean_ci([1.0, 3.0])).startswith("2.00 ± ")


def test_an_outage_option_stalls_every_session(capsys: pytest.CaptureFixture[str]) -> None:
    def run(*extra: str) -> dict:
        assert main(["sim", "--abr", "bba,bola", "--traces", str(TRACES_DIR), "--video", str(ENVIVIO_DIR),
                     "--no-optimal", "--json", *extra]) == 0
        return json.loads(capsys.readouterr().out)

    clear = run()
    faulted = run("--outage", "20:30", "--loss-burst", "100:2")
    assert "faults" not in clear
    assert faulted["faults"] == [
        {"kind": "outage", "start_s": 20.0, "duration_s": 30.0, "recovery_s": 0.0},
        {"kind": "loss_burst", "start_s": 100.0, "duration_s": 2.0, "recovery_s": 0.2},
    ]
    for name in ("bba", "bola"):  # the batch engine and the state machine
        assert faulted["results"][name]["rebuffer_s_mean"] > clear["results"][name]["rebuffer_s_mean"] + 1.0


def test_a_bad_outage_is_one_error_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["sim", "--abr", "bba", "--traces", str(TRACES_DIR), "--video", str(ENVIVIO_DIR),
                 "--no-optimal", "--outage", "20"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "expected START_S:DURATION_S" in err[0]
