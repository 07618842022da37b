"""The live run's gap judged (player/research/experiment_live_gaps.py): start offsets per trace,
the gap averaged per trace with its CI over traces, stall agreement and the traces a 5% CI needs,
in `abrkit run --live`'s report."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from netsim.sources import open_trace
from player.cli import main
from player.research.experiment_live import format_live_run, write_live_run
from player.research.experiment_live_gaps import (
    Pairing,
    base_trace,
    ci_text,
    judgement,
    live_gaps,
    offset_traces,
    stall_agreement,
    traces_needed,
)
from tests.conftest import CLEAR_TITLE, PackagedTitles


def row(mode: str, trace: str, *, stalls: float, qoe: float = 100.0) -> dict[str, object]:
    return {"mode": mode, "abr": "x", "trace": trace, "error": None, "stalls": stalls, "qoe_per_segment": qoe,
            "latency_p50_s": 2.0, "latency_p95_s": 2.5, "rebuffer_s": 0.0, "avg_bitrate_kbps": 2000.0}


def test_a_traces_start_offsets_are_more_sessions_and_one_sample_of_the_ci() -> None:
    traces = [open_trace("step:1e6,4e6@30"), open_trace("step:3e6,1e6@50")]
    played = offset_traces(traces, 3, seed=7)
    assert [t.name for t in played[:2]] == [t.name for t in traces]  # at 0: pairs with a run without offsets
    assert len(played) == 6 and len({t.name for t in played}) == 6
    assert [base_trace(t.name) for t in played] == [t.name for t in traces] * 3
    again = offset_traces(traces, 3, seed=7)
    assert [t.name for t in again] == [t.name for t in played]  # the same for every algorithm and mode
    offset_s = float(played[2].name.rsplit("@", 1)[1][:-1])
    assert 0 < offset_s < traces[0].duration_s
    assert played[2].bandwidth_at(0.0) == traces[0].bandwidth_at(offset_s)  # rotated: it starts there
    with pytest.raises(ValueError):
        offset_traces(traces, 0)
    # Two traces, two sessions each: the CI is over the 2 traces' mean differences, not 4 sessions
    sim = [row("sim", n, stalls=1) for n in ("a", "a@5s", "b", "b@7.5s")]
    emu = [row("emulate", n, stalls=s) for n, s in zip(("a", "a@5s", "b", "b@7.5s"), (1, 3, 2, 4))]
    (gap,) = Pairing(label="x", reference=tuple(sim), other=tuple(emu)).gaps(["stalls"]).values()
    assert gap.difference.n == 2 and gap.difference.mean == pytest.approx(1.5)  # traces: (0 + 2) / 2, (1 + 3) / 2
    assert gap.difference.half_width == pytest.approx(12.706 * 0.5 ** 0.5 / 2 ** 0.5)  # t(1) x sd / sqrt(2)


def test_a_seed_alone_plays_the_offset_it_draws_the_same_as_the_offsets_second_session() -> None:
    traces = [open_trace("step:1e6,4e6@30"), open_trace("step:3e6,1e6@50")]
    assert offset_traces(traces, 1) == traces  # neither: the traces as they are
    alone = offset_traces(traces, 1, seed=11)
    assert len(alone) == 2 and all("@" in t.name for t in alone)  # not from the start
    with_start = offset_traces(traces, 3, seed=11)
    assert [t.name for t in with_start[2:4]] == [t.name for t in alone]  # seed 11 draws the same offsets
    assert [t.name for t in with_start[4:]] == [t.name for t in offset_traces(traces, 1, seed=12)]  # then 12
    assert [t.name for t in offset_traces(traces, 2)] == [t.name for t in offset_traces(traces, 2, seed=0)]


def test_the_runs_gap_averages_a_traces_sessions_and_counts_its_ci_over_traces(tmp_path: Path) -> None:
    # a: 2 sessions agreeing on stalls and 1 not; b: its 3 sessions each 1 stall more in emulation
    names = ("a", "a@3s", "a@9s", "b", "b@4s", "b@8s")
    sim = [row("sim", n, stalls=2, qoe=100.0) for n in names]
    emu = [row("emulate", n, stalls=s, qoe=q) for n, s, q in
           zip(names, (2, 2, 5, 3, 3, 3), (100.0, 100.0, 70.0, 90.0, 92.0, 88.0))]
    gaps = {g.metric: g for g in live_gaps(sim + emu)}
    stalls = gaps["stalls"]
    assert stalls.difference.n == 2 and stalls.difference.mean == pytest.approx(1.0)  # traces: 1 and 1
    assert stalls.relative_pct == pytest.approx(50.0) and stalls.half_width_pct == pytest.approx(0.0)
    qoe = gaps["qoe_per_segment"]
    assert qoe.difference.n == 2 and qoe.difference.mean == pytest.approx(-10.0)  # -10 on both
    (agree,) = stall_agreement(sim + emu)
    assert (agree.pairs, agree.same_count, agree.same_kind) == (6, 2, 6)
    assert (agree.emulated_stalls, agree.simulated_stalls) == (18, 12)
    text = format_live_run(sim + emu)
    assert "x          2 of 6 pairs agree on their number of stalls, 6 on stall / no stall" in text
    assert "(3 sessions per trace and algorithm" in text
    assert "n 2   sim      2.00  emulate      3.00  diff +1.00 [+1.00, +1.00]  (+50.0% ± 0.0%)" in text
    write_live_run(sim + emu, tmp_path, meta={})
    written = json.loads((tmp_path / "summary.json").read_text())
    (entry,) = written["judgement"]
    assert entry["same_count"] == 2 and entry["stalls"]["traces"] == 2


def test_the_traces_a_five_percent_ci_needs_follow_the_per_trace_spread() -> None:
    # 95% CI half-width 5% of a mean of 10 = 0.5: n = 1.96^2 x sd^2 / 0.25
    assert traces_needed(2.0, 10.0) == pytest.approx(1.96 ** 2 * 4 / 0.25)
    assert math.isnan(traces_needed(1.0, 0.0))
    names = [f"t{i}" for i in range(5)]
    extra = (0.0, 2.0, -1.0, 3.0, 1.0)
    rows = [row("sim", n, stalls=10) for n in names] + [row("emulate", n, stalls=10 + e) for n, e in zip(names, extra)]
    (entry,) = judgement(rows)
    sd = float(__import__("numpy").std(extra, ddof=1))
    assert entry["stalls"]["sd_per_trace"] == pytest.approx(sd)
    assert entry["stalls"]["traces_needed"] == pytest.approx(1.96 ** 2 * sd ** 2 / 0.25)
    assert f"±5% needs {math.ceil(1.96 ** 2 * sd ** 2 / 0.25)} traces" in format_live_run(rows)
    calm = [{**r, "stalls": 0} for r in rows]  # no stalls in sim: a gap, but no percentage of it
    assert "stalls gap +0.00, no % (sim's mean 0); live QoE CI" in format_live_run(calm)
    assert "stalls no CI (1 trace)" in format_live_run([r for r in rows if r["trace"] == "t0"])


def test_abrkit_run_live_plays_each_trace_from_its_offsets(packaged: PackagedTitles, tmp_path: Path,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    common = ["run", "--live", "--abr", "dynamic", "--traces", "profile:spike@scale=4", "constant:5e6@600",
              "--video-or-title", str(packaged.content_root / CLEAR_TITLE), "--mode", "sim",
              "--live-duration-s", "10", "--quiet"]
    assert main([*common, "--offsets", "3", "--seed", "5", "--out", str(tmp_path / "three")]) == 0
    assert "6 sessions of 2 traces" in capsys.readouterr().out
    three = [json.loads(line)["trace"] for line in (tmp_path / "three" / "live_results.jsonl").read_text().splitlines()]
    assert len(three) == 6 and len(set(three)) == 6
    names = [open_trace(spec).name for spec in ("profile:spike@scale=4", "constant:5e6@600")]
    assert three[:2] == names and sorted(base_trace(t) for t in three) == sorted(names * 3)
    # --seed alone: each trace once, from the offset the same seed draws as --offsets' first
    assert main([*common, "--seed", "5", "--out", str(tmp_path / "one")]) == 0
    one = [json.loads(line)["trace"] for line in (tmp_path / "one" / "live_results.jsonl").read_text().splitlines()]
    assert one == three[2:4]
    summary = json.loads((tmp_path / "three" / "summary.json").read_text())
    assert summary["settings"]["offsets"] == 3 and summary["settings"]["seed"] == 5
    assert main([*common, "--offsets", "0", "--out", str(tmp_path / "none")]) != 0
    assert "--offsets must be >= 1" in capsys.readouterr().err


def test_a_time_gap_is_given_to_the_millisecond() -> None:
    # the emulation's own time per request is a few ms: at 2 decimals a 4 ms latency gap read +0.00
    sim = [row("sim", n, stalls=1) for n in "abc"]
    emu = [{**row("emulate", n, stalls=1), "latency_p50_s": 2.0 + d} for n, d in zip("abc", (0.003, 0.004, 0.005))]
    gaps = Pairing(label="x", reference=tuple(sim), other=tuple(emu)).gaps(["latency_p50_s", "stalls"])
    assert ci_text(gaps[("x", "latency_p50_s")]).startswith("+0.004 ± 0.002 (+0.2% ± ")
    assert ci_text(gaps[("x", "stalls")]).startswith("+0.00 ± 0.00")
