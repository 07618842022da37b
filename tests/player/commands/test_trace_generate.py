"""`abrkit trace generate`: seeded trace sets our loaders read, clear errors for bad parameters."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from netsim.formats import load_traces
from player.cli import main


def _files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.name != "README.md"}


@pytest.mark.parametrize("fmt", ["pensieve", "mahimahi"])
def test_same_seed_writes_identical_files_that_the_loaders_read(tmp_path: Path, fmt: str,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    args = ["trace", "generate", "--count", "3", "--seed", "7", "--duration-s", "60", "--format", fmt,
            "--outage-prob", "0.02:0.05", "--scale", "0.5:2"]
    assert main([*args, str(tmp_path / "a")]) == 0
    assert "wrote 3 " + fmt in capsys.readouterr().out
    assert main([*args, str(tmp_path / "b")]) == 0
    first = _files(tmp_path / "a")
    assert list(first) == ["markov-s7-0000", "markov-s7-0001", "markov-s7-0002"]
    assert first == _files(tmp_path / "b")
    traces = load_traces([tmp_path / "a"])  # README.md (the provenance) is skipped
    assert [t.name for t in traces] == list(first)
    assert all(t.duration_s == pytest.approx(60.0, abs=0.01) and 0.1e6 < t.mean_bandwidth_bps < 20e6 for t in traces)
    assert '"seed": 7' in (tmp_path / "a" / "README.md").read_text()
    assert main([*args[:-4], "--seed", "8", str(tmp_path / "c")]) == 0
    assert _files(tmp_path / "c").keys().isdisjoint(first)


def test_generated_rates_follow_the_options(tmp_path: Path) -> None:
    assert main(["trace", "generate", str(tmp_path), "--count", "2", "--levels-mbps", "2", "--noise", "0",
                 "--duration-s", "30"]) == 0
    for trace in load_traces([tmp_path]):
        np.testing.assert_allclose(trace.bandwidth_bps, 2e6)


@pytest.mark.parametrize(("options", "message"), [
    (["--switch-prob", "1.5"], "switch probability must lie in"),
    (["--noise", "a:b"], "--noise must be a number or lo:hi"),
    (["--levels-mbps", "1,x"], "--levels-mbps must be comma-separated numbers"),
    (["--outage-prob", "0.1:0.05"], "lo <= hi"),
    (["--count", "0"], "count must be >= 1"),
    (["--seed", "-2"], "--seed must be >= 0"),
    (["--prefix", "../x"], "--prefix must be a plain file name"),
])
def test_bad_parameters_are_one_line_errors(tmp_path: Path, options: list[str], message: str,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["trace", "generate", str(tmp_path / "out"), *options]) != 0
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert not (tmp_path / "out").exists()


def test_existing_traces_are_not_overwritten_without_force(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = ["trace", "generate", str(tmp_path), "--count", "2", "--duration-s", "20"]
    assert main(args) == 0
    (tmp_path / "markov-s0-0000").write_text("mine\n")
    assert main(args) != 0
    assert "use --force" in capsys.readouterr().err
    assert (tmp_path / "markov-s0-0000").read_text() == "mine\n"
    assert main([*args, "--force"]) == 0
    assert (tmp_path / "markov-s0-0000").read_text() != "mine\n"
