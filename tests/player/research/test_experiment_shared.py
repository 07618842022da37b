"""`abrkit run --players-per-link N`: groups of players on one link, simulated and emulated, with
fairness figures; one player per link leaves every result as it was."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from player.bundled import ENVIVIO_DIR, TRACES_DIR
from player.cli import main
from tests.player.conftest import LONG_TITLE

TRACES = [str(TRACES_DIR / name) for name in ("norway_bus_1", "norway_ferry_10")]


def _rows(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]


def _sim(out: Path, *extra: str) -> int:
    return main(["run", "--abr", "bba,bola", "--traces", *TRACES, "--video-or-title", str(ENVIVIO_DIR),
                 "--mode", "sim", "--out", str(out), "--workers", "1", "--quiet", "--timelines", "0", *extra])


def test_one_player_per_link_leaves_the_results_byte_identical(tmp_path: Path) -> None:
    assert _sim(tmp_path / "today") == 0
    assert _sim(tmp_path / "one", "--players-per-link", "1") == 0
    for name in ("results.jsonl", "results.csv"):
        assert (tmp_path / "one" / name).read_bytes() == (tmp_path / "today" / name).read_bytes()


def test_players_per_link_writes_a_row_per_player_with_the_links_fairness(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    assert _sim(out, "--players-per-link", "3", "--join-spacing-s", "2") == 0
    rows = _rows(out)
    assert len(rows) == 2 * 2 * 3 and len({r["key"] for r in rows}) == 12
    for row in rows:
        assert row["link_players"] == 3 and row["link_join_s"] == 2.0 * row["link_player"]
        assert 1 / 3 <= row["link_jain_bitrate"] <= 1 and 0 < row["link_utilisation"] <= 1
    groups = {(r["abr"], r["trace"]) for r in rows}
    assert len(groups) == 4
    with (out / "results.csv").open() as fh:
        table = list(csv.DictReader(fh))
    assert len(table) == 12
    by_key = {(r["mode"], r["abr"], r["trace"], r["link_player"]): r for r in table}
    for row in rows:
        line = by_key[(row["mode"], row["abr"], row["trace"], str(row["link_player"]))]
        for field in ("link_players", "link_join_s", "link_jain_bitrate", "link_qoe_mean", "link_utilisation",
                      "instability"):
            assert float(line[field]) == pytest.approx(row[field])
    printed = capsys.readouterr().out
    assert "3 players per link" in printed and "jain" in printed
    # A rerun skips every finished group; a lost row runs its whole group again.
    lines = (out / "results.jsonl").read_text().splitlines()
    (out / "results.jsonl").write_text("\n".join(lines[1:]) + "\n")
    capsys.readouterr()
    assert _sim(out, "--players-per-link", "3", "--join-spacing-s", "2") == 0
    assert "3 sessions run" in capsys.readouterr().out


@pytest.mark.parametrize(("flag", "value", "message"), [("--players-per-link", "0", "--players-per-link must be >= 1"),
                                                        ("--join-spacing-s", "-1", "--join-spacing-s must be >= 0")])
def test_bad_link_settings_are_one_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str], flag: str,
                                               value: str, message: str) -> None:
    assert _sim(tmp_path / "out", flag, value) == 2
    assert message in capsys.readouterr().err


@pytest.mark.slow  # about 40 s: 40 s of media at 2x, plus a stack
def test_two_emulated_players_share_one_shaper_and_agree_with_the_simulator(
        tmp_path: Path, long_content: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # 2 Mbit/s each once both play: BBA settles on the 800k rung after its start-up ramp. Speed 2, not
    # more: at K x, a wake-up of the loaded machine's event loop lands K times later in session time.
    # The second player joins 1 s later, on the link's warp clock (which by then lags loop time by the
    # first player's server time: its session clock must not start in the past).
    out = tmp_path / "out"
    args = ["run", "--abr", "bba", "--traces", "constant:4e6", "--video-or-title", str(long_content / LONG_TITLE),
            "--mode", "both", "--speed", "2", "--out", str(out), "--quiet", "--players-per-link", "2",
            "--join-spacing-s", "1", "--workers", "1"]
    assert main(args) == 0, capsys.readouterr().err
    rows = _rows(out)
    emulated = [r for r in rows if r["mode"] == "emulate"]
    simulated = [r for r in rows if r["mode"] == "sim"]
    assert len(emulated) == len(simulated) == 2
    assert all(r["error"] is None and r["segments"] == 10 for r in emulated)
    sim, emu = simulated[0], emulated[0]
    assert emu["link_jain_bitrate"] == pytest.approx(sim["link_jain_bitrate"], rel=0.10)
    assert emu["link_qoe_mean"] == pytest.approx(sim["link_qoe_mean"], rel=0.10)
    assert emu["link_utilisation"] == pytest.approx(sim["link_utilisation"], rel=0.10)
