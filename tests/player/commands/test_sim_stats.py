"""`abrkit sim` for publication: paired comparisons against a baseline, start offsets, provenance,
progress lines in logs, the offline optimum only when asked for or cached, and configured QoE."""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import numpy as np
import pytest

from player.bundled import ENVIVIO_DIR, TRACES_DIR
from player.cli import main
from player.research.stats import paired_comparison

SIM = ["sim", "--traces", str(TRACES_DIR), "--video", str(ENVIVIO_DIR)]


@pytest.fixture(autouse=True)
def private_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    cache = tmp_path / "cache"
    monkeypatch.setenv("ABRKIT_CACHE", str(cache))
    return cache


def test_baseline_comparison_pairs_sessions_and_counts_wins(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    assert main([*SIM, "--abr", "bba,rate", "--baseline", "mpc-robust", "--offsets", "2", "--seed", "7",
                 "--no-optimal", "--out", str(out), "--plot-sessions", "0"]) == 0
    captured = capsys.readouterr()
    assert "note: baseline mpc-robust added to the algorithms" in captured.err
    assert "against mpc-robust (qoe_lin, paired by session, 95% bootstrap CI; wins/ties/losses):" in captured.out
    summary = json.loads((out / "summary.json").read_text())
    per_trace = summary["results"]["bba"]["per_trace"]
    traces = len(list(TRACES_DIR.iterdir()))
    assert len(per_trace) == 2 * traces and all("@" in key for key in per_trace)  # two offsets per trace
    base = summary["results"]["mpc-robust"]["per_trace"]
    comparison = summary["baseline"]["comparisons"]["bba"]
    diffs = np.array([per_trace[k] - base[k] for k in per_trace])
    assert comparison["pairs"] == len(diffs)
    assert comparison["difference_mean"] == pytest.approx(diffs.mean())
    assert comparison["wins"] == int((diffs > 1e-9).sum()) and comparison["losses"] == int((diffs < -1e-9).sum())
    low, high = comparison["difference_ci95"]
    assert low <= diffs.mean() <= high
    line = next(l for l in captured.out.splitlines() if l.strip().startswith("bba:"))
    assert f"{comparison['wins']}/{comparison['ties']}/{comparison['losses']} of {len(diffs)}" in line
    # The per-trace table: one row per session, each algorithm's QoE and its difference from the baseline.
    rows = list(csv.DictReader((out / "per_trace.csv").open()))
    assert len(rows) == len(diffs)
    row = rows[0]
    assert float(row["bba - mpc-robust"]) == pytest.approx(float(row["bba:qoe_lin"]) - float(row["mpc-robust:qoe_lin"]))


def test_offsets_are_seeded_and_change_with_the_seed(capsys: pytest.CaptureFixture[str]) -> None:
    def keys(seed: int) -> list[str]:
        assert main([*SIM, "--abr", "bba", "--offsets", "3", "--seed", str(seed), "--no-optimal", "--json"]) == 0
        return sorted(json.loads(capsys.readouterr().out)["results"]["bba"]["per_trace"])

    assert keys(1) == keys(1) != keys(2)


def test_summary_records_the_command_version_commit_and_digests(tmp_path: Path,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    argv = [*SIM, "--abr", "bba", "--no-optimal", "--out", str(out), "--plot-sessions", "0"]
    assert main(argv) == 0
    record = json.loads((out / "summary.json").read_text())["provenance"]
    assert record["command"].startswith("abrkit sim --traces ") and "--abr bba" in record["command"]
    assert record["abrkit_version"] and record["python"]
    assert record["git_commit"] is None or re.fullmatch(r"[0-9a-f]{40}(\+dirty)?", record["git_commit"])
    assert re.fullmatch(r"[0-9a-f]{12}", record["video"]["digest"])
    assert len(record["traces"]) == len(list(TRACES_DIR.iterdir()))
    assert all(re.fullmatch(r"[0-9a-f]{12}", t["digest"]) for t in record["traces"])


def test_progress_lines_reach_a_log_that_is_not_a_terminal(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([*SIM, "--abr", "bba,bola", "--no-optimal"]) == 0
    err = capsys.readouterr().err
    assert re.search(r"simulating: (\d+)/\1 sessions \(100%\)", err)  # capsys is no terminal: plain lines
    assert main([*SIM, "--abr", "bba", "--no-optimal", "--quiet"]) == 0
    assert "simulating" not in capsys.readouterr().err


def test_the_optimum_runs_only_when_asked_and_is_then_reused(capsys: pytest.CaptureFixture[str]) -> None:
    fast = ["--abr", "bba", "--optimal-grid-s", "0.5"]
    assert main([*SIM, *fast]) == 0
    captured = capsys.readouterr()
    assert re.search(r"offline optimum: skipped, \d+ of \d+ sessions not cached \(about .* CPU", captured.err)
    assert "offline optimal" not in captured.out and re.search(r"bba .* - *$", captured.out, re.M)
    assert main([*SIM, *fast, "--optimal"]) == 0
    captured = capsys.readouterr()
    assert re.search(r"offline optimum: computing \d+ sessions \(0 cached\), about", captured.err)
    computed = re.search(r"offline optimal: mean qoe_lin (\S+)", captured.out)
    assert computed
    assert main([*SIM, *fast]) == 0  # now cheap: every session is cached
    captured = capsys.readouterr()
    assert "offline optimum: all" in captured.err and "sessions cached" in captured.err
    assert f"offline optimal: mean qoe_lin {computed.group(1)}" in captured.out


def test_paired_comparison_counts_ties() -> None:
    result = paired_comparison("a", {"x": 1.0, "y": 2.0, "z": 3.0, "w": 0.0}, "b", {"x": 1.0, "y": 1.0, "z": 4.0})
    assert (result.pairs, result.wins, result.ties, result.losses) == (3, 1, 1, 1)
    assert result.difference.mean == pytest.approx(0.0)


# -- QoE from the command line ------------------------------------------------------------------------------


def test_qoe_weights_change_the_score_and_what_mpc_optimises(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    def run(*extra: str) -> dict:
        assert main([*SIM, "--abr", "mpc-robust,bba", "--no-optimal", "--json", *extra]) == 0
        return json.loads(capsys.readouterr().out)

    plain = run()
    heavy = run("--qoe-weights", "rebuffer=50,startup=2")
    assert plain["qoe"] == "lin" and heavy["qoe"] == "custom"
    assert heavy["qoe_config"] == {"name": "custom", "utility": "lin", "rebuffer": 50.0, "switch": 1.0,
                                   "startup": 2.0, "quality_metric": None}
    for name in ("mpc-robust", "bba"):  # everyone is scored on it; lin is still reported beside it
        assert heavy["results"][name]["qoe_custom_mean"] < heavy["results"][name]["qoe_lin_mean"]
    assert heavy["results"]["bba"]["qoe_lin_mean"] == plain["results"]["bba"]["qoe_lin_mean"]  # bba ignores QoE
    # MPC plans with a 50-per-second stall penalty: it stalls less than when it plans with 4.3.
    assert heavy["results"]["mpc-robust"]["rebuffer_s_mean"] < plain["results"]["mpc-robust"]["rebuffer_s_mean"]
    path = tmp_path / "qoe.json"
    path.write_text(json.dumps({"name": "mine", "utility": "log", "rebuffer": 10, "switch": 0.5}))
    mine = run("--qoe-config", str(path))
    assert mine["qoe"] == "mine" and "qoe_mine_mean" in mine["results"]["bba"]


@pytest.mark.parametrize(("extra", "message"), [
    (["--qoe-weights", "stall=3"], "unknown QoE weight(s) stall"),
    (["--qoe-weights", "rebuffer=x"], "QoE weight 'rebuffer' must be a number"),
    (["--qoe", "quality"], "carries no per-segment quality"),
    (["--qoe", "ssim"], "carries no per-segment quality"),
])
def test_bad_qoe_options_are_one_error_line(extra: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main([*SIM, "--abr", "bba", "--no-optimal", *extra]) == 2
    err = [line for line in capsys.readouterr().err.strip().splitlines() if not line.startswith("note: ")]
    assert len(err) == 1 and message in err[0]


def test_a_bad_qoe_config_file_names_the_file_and_field(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "qoe.json"
    path.write_text(json.dumps({"utility": "lin", "rebufer": 3}))
    assert main([*SIM, "--abr", "bba", "--no-optimal", "--qoe-config", str(path)]) == 2
    assert f"{path}: unknown field(s) rebufer" in capsys.readouterr().err


def test_player_settings_from_the_command_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([*SIM, "--abr", "bba", "--no-optimal", "--json", "--buffer-cap-s", "12", "--cap-rule", "room"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["player"]["buffer_cap_s"] == 12.0 and summary["player"]["cap_rule"] == "room"
    assert summary["profile"] == "default[buffer_cap_s=12.0,cap_rule=room]"
