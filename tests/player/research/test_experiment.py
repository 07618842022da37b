"""`abrkit run` end to end: simulated and emulated cells, resumability, the Dask path, bad inputs."""

from __future__ import annotations

import asyncio
import csv
import json
import re
import signal
import sys
from pathlib import Path

import numpy as np
import pytest

from player.bundled import ENVIVIO_DIR, TRACES_DIR
from player.cli import main
from player.research.experiment_report import CSV_FIELDS
from tests.conftest import CLEAR_TITLE, REPO_ROOT, PackagedTitles

TRACES = [str(TRACES_DIR / name) for name in ("norway_bus_1", "norway_ferry_10", "norway_train_12")]


def _rows(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]


def _sim(out: Path, *extra: str) -> int:
    return main(["run", "--abr", "bba,mpc-robust", "--traces", *TRACES, "--video-or-title", str(ENVIVIO_DIR),
                 "--mode", "sim", "--out", str(out), "--workers", "2", "--quiet", *extra])


def test_sim_mode_writes_results_csv_and_a_self_contained_report(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    assert _sim(out, "--seed", "7") == 0
    rows = _rows(out)
    assert len(rows) == 6 and len({r["key"] for r in rows}) == 6
    assert {(r["abr"], r["trace"]) for r in rows} == {(a, Path(t).name) for a in ("bba", "mpc-robust") for t in TRACES}
    assert all(r["mode"] == "sim" and r["error"] is None and r["segments"] == 48 for r in rows)
    assert len({r["trace_offset_s"] for r in rows}) == 3  # seeded offsets: one per trace, shared by both algorithms
    with (out / "results.csv").open() as fh:
        table = list(csv.DictReader(fh))
    assert tuple(table[0]) == CSV_FIELDS and len(table) == 6
    by_key = {(r["abr"], r["trace"]): r for r in rows}
    for line in table:
        assert float(line["qoe_lin"]) == pytest.approx(by_key[(line["abr"], line["trace"])]["qoe_lin"])
    page = (out / "report.html").read_text()
    # CDF, scatter and 2 traces x 2 algorithms of timelines, all inline; no external assets.
    assert len(re.findall(r'src="data:image/png;base64,[A-Za-z0-9+/=]{200,}"', page)) == 2 + 4
    assert not re.search(r'(src|href)="(https?:)?//', page)
    assert "Summary per algorithm and mode" in page and page.count("<td>mpc-robust</td>") >= 1
    assert "run with --mode both" in page  # no emulated sessions, so no gap
    printed = capsys.readouterr().out
    assert "mpc-robust" in printed and "6 sessions run" in printed


def test_rerun_runs_only_missing_cells_and_tolerates_a_truncated_last_line(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    # No timelines in the reports of the first two runs (nothing reads them; the plots are most of a run's time).
    assert _sim(out, "--timelines", "0") == 0
    lines = (out / "results.jsonl").read_text().splitlines()
    removed = json.loads(lines[2])["key"]
    (out / "results.jsonl").write_text("\n".join(lines[:2] + lines[3:]) + "\n")
    capsys.readouterr()
    assert _sim(out, "--timelines", "0") == 0
    captured = capsys.readouterr()
    assert "skipping 5 of 6 cells" in captured.err and "1 sessions run" in captured.out
    rows = _rows(out)
    assert len(rows) == 6 and rows[-1]["key"] == removed
    # An interrupted write leaves half a line: it is dropped with a warning, and its cell runs again.
    with (out / "results.jsonl").open("a") as fh:
        fh.write(lines[0][: len(lines[0]) // 2])
    assert _sim(out, "--timelines", "1") == 0
    captured = capsys.readouterr()
    assert "truncated last line" in captured.err and "skipping 6 of 6 cells" in captured.err
    assert len(_rows(out)) == 6  # every line parses again
    # The report is rebuilt from every row, run now or before: CDF, scatter, one trace's 2 timelines.
    assert len(re.findall(r'src="data:image/png;base64,', (out / "report.html").read_text())) == 2 + 2


def _emulate_args(packaged: PackagedTitles, out: Path, mode: str) -> list[str]:
    return ["run", "--abr", "bba,mpc-robust", "--traces", *TRACES[:2], "--video-or-title",
            str(packaged.content_root / CLEAR_TITLE), "--mode", mode, "--speed", "4", "--out", str(out), "--quiet"]


def test_emulate_mode_plays_real_sessions_through_the_shaper(tmp_path: Path, packaged: PackagedTitles,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    assert main(_emulate_args(packaged, out, "both")) == 0, capsys.readouterr().err
    rows = _rows(out)
    emulated = [r for r in rows if r["mode"] == "emulate"]
    simulated = {(r["abr"], r["trace"]): r for r in rows if r["mode"] == "sim"}
    assert len(emulated) == 4 and len(simulated) == 4
    for row in emulated:
        assert row["error"] is None and row["speed"] == 4
        assert row["segments"] == simulated[(row["abr"], row["trace"])]["segments"] == 3
        assert row["requests"] >= 6 and row["frames_decoded"] == 0  # video and audio per segment; no decoding
        # The shaper holds every download to at least the link model's time (a little slack for rounding).
        timeline = row["timeline"]
        assert sum(timeline["download_s"]) >= 0.97 * sum(timeline["model_download_s"]) > 0
        # Scored as the simulator scores: the ladder's top rung per stalled second (1.4 here, not
        # Pensieve's 4.3), and the packaged title's per-segment quality.
        rates, stalls = np.array(timeline["bitrate_bps"]) / 1e6, np.array(timeline["rebuffer_s"])
        expected = rates[1:].sum() - 1.4 * stalls[1:].sum() - np.abs(np.diff(rates)).sum()
        assert row["qoe_lin"] == pytest.approx(expected, abs=1e-3) and "qoe_quality" in row
    page = (out / "report.html").read_text()
    assert "Simulation vs emulation" in page and "mean difference (95% bootstrap CI)" in page
    assert "run with --mode both" not in page
    with (out / "results.csv").open() as fh:
        assert sum(1 for line in csv.DictReader(fh) if line["mode"] == "emulate" and line["frames_decoded"] == "0") == 4


# `python -m player` as an interactive shell starts it: SIGINT at its default, not blocked. A command started in
# the background of a non-interactive shell inherits SIGINT ignored (POSIX: asynchronous lists ignore SIGINT when
# job control is off), and Python keeps it ignored - the run then rightly shrugs off Ctrl-C. A test suite run as
# `make test > log &` or by a CI runner starts that way, so the test must not hand its own disposition down.
_AS_FROM_A_TERMINAL = ("import runpy, signal; signal.signal(signal.SIGINT, signal.default_int_handler); "
                       "signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT}); "
                       "runpy.run_module('player', run_name='__main__', alter_sys=True)")


@pytest.mark.slow
async def test_interrupted_emulation_resumes_with_the_missing_cells(tmp_path: Path, packaged: PackagedTitles) -> None:
    out = tmp_path / "out"
    args = [*_emulate_args(packaged, out, "emulate"), "--workers", "1", "--sessions-per-worker", "1", "--timelines", "0"]
    process = await asyncio.create_subprocess_exec(sys.executable, "-c", _AS_FROM_A_TERMINAL, *args, cwd=REPO_ROOT,
                                                   stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    results = out / "results.jsonl"
    for _ in range(1200):
        if results.is_file() and results.read_text().count("\n") >= 1:
            break
        await asyncio.sleep(0.05)
    process.send_signal(signal.SIGINT)
    _, stderr = await asyncio.wait_for(process.communicate(), timeout=60)
    assert process.returncode == 130, stderr.decode()
    done = _rows(out)  # every line written before the interrupt is whole
    assert 1 <= len(done) < 4
    process = await asyncio.create_subprocess_exec(sys.executable, "-m", "player", *args, cwd=REPO_ROOT,
                                                   stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    _, stderr = await asyncio.wait_for(process.communicate(), timeout=120)
    assert process.returncode == 0, stderr.decode()
    assert f"skipping {len(done)} of 4 cells" in stderr.decode()
    rows = _rows(out)
    assert len(rows) == 4 and [r["key"] for r in rows[: len(done)]] == [r["key"] for r in done]


def test_dask_executor_runs_both_modes(tmp_path: Path, packaged: PackagedTitles,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    distributed = pytest.importorskip("distributed", reason="dask.distributed is not installed (extra 'dist')")
    out = tmp_path / "out"
    with distributed.LocalCluster(processes=False, n_workers=1, threads_per_worker=2, dashboard_address=None) as cluster:
        code = main([*_emulate_args(packaged, out, "both"), "--dask", cluster.scheduler_address, "--timelines", "0"])
    assert code == 0, capsys.readouterr().err
    rows = _rows(out)
    assert sorted(r["mode"] for r in rows) == ["emulate"] * 4 + ["sim"] * 4
    assert all(r["error"] is None for r in rows)
    assert f"dask {cluster.scheduler_address}" in (out / "report.html").read_text()


@pytest.mark.parametrize(("change", "message"), [
    ({"--abr": "bba,nope"}, "unknown ABR 'nope'"),
    ({"--traces": "EMPTY"}, "no trace files found"),
    ({"--video-or-title": "MISSING"}, "no such title or video"),
    ({"--mode": "emulate"}, "emulation needs a packaged title"),
    ({"--speed": "0", "--mode": "emulate"}, "speed must be > 0"),
])
def test_bad_input_is_one_clear_error_line(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                           change: dict[str, str], message: str) -> None:
    (tmp_path / "empty").mkdir()
    values = {"--abr": "bba", "--traces": TRACES[0], "--video-or-title": str(ENVIVIO_DIR), "--mode": "sim",
              "--out": str(tmp_path / "out"), **change}
    values["--traces"] = values["--traces"].replace("EMPTY", str(tmp_path / "empty"))
    values["--video-or-title"] = values["--video-or-title"].replace("MISSING", str(tmp_path / "missing"))
    args = ["run", "--quiet"] + [item for pair in values.items() for item in pair]
    assert main(args) == 2
    lines = [line for line in capsys.readouterr().err.strip().splitlines() if not line.startswith("note: ")]
    assert len(lines) == 1 and lines[0].startswith("abrkit run: error:") and message in lines[0], lines
    assert not (tmp_path / "out" / "results.jsonl").exists()
