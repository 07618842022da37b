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
