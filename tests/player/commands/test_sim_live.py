"""`abrkit sim --live` as a user runs it."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from player.cli import main


def test_sim_live_reports_latency_and_live_qoe_per_algorithm(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "live"
    assert main(["sim", "--live", "--abr", "l2a,dynamic", "--traces", "profile:spike@scale=4", "constant:5e6@600",
                 "--live-duration-s", "60", "--quiet", "--json", "--out", str(out)]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["live"]["target_latency_s"] == 1.5 and summary["live"]["chunk_duration_s"] == 0.5
    assert [s["abr"] for s in summary["summaries"]] == ["l2a", "dynamic"]
    for s in summary["summaries"]:
        assert s["sessions"] == 2
        assert s["latency_p50_s"]["low"] <= s["latency_p50_s"]["mean"] <= s["latency_p50_s"]["high"]
        assert "qoe" in s and "stalls" in s
    rows = list(csv.DictReader((out / "sessions.csv").open()))
    assert len(rows) == 4 and {r["trace"] for r in rows} == {"profile-spike-x4", "constant-5e+06bps"}
    steady = [r for r in rows if r["trace"] == "constant-5e+06bps"]
    assert all(float(r["latency_p50_s"]) < 2.5 and r["stalls"] == "0" for r in steady)


def test_sim_live_table_and_whole_segment_mode(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["sim", "--live", "--abr", "bola", "--traces", "constant:3e6@600", "--chunk-duration-s", "0",
                 "--live-duration-s", "40", "--quiet"]) == 0
    text = capsys.readouterr().out
    assert "whole segments" in text and "target latency 4 s" in text and "bola" in text


@pytest.mark.parametrize(("option", "value", "message"), [
    ("--chunk-duration-s", "0.3", "divide"), ("--min-rate", "1.2", "playback rates"),
    ("--target-latency-s", "0", "target latency")])
def test_sim_live_rejects_bad_settings_clearly(option: str, value: str, message: str,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["sim", "--live", "--abr", "l2a", "--traces", "constant:3e6", option, value, "--quiet"]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
