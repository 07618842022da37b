"""bench/live_run.py --compare (bench/live_noise.py): two stored live runs paired per trace, the
live QoE gap by term, and the traces a 5% CI needs at the measured run-to-run noise."""

from __future__ import annotations

import importlib.util
import json
import math
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

from tests.conftest import CLEAR_TITLE, PackagedTitles

BENCH = Path(__file__).resolve().parents[3] / "bench"


@pytest.fixture(scope="module")
def noise() -> ModuleType:
    spec = importlib.util.spec_from_file_location("live_noise", BENCH / "live_noise.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["live_noise"] = module  # (dataclasses look their module up)
    spec.loader.exec_module(module)
    return module


def row(mode: str, trace: str, *, stalls: float, bitrate: float = 8000.0, rebuffer: float = 0.0,
        latency: float = 1000.0, speed: float = 5.0, switch: float = 500.0) -> dict[str, object]:
    terms = {"bitrate": bitrate, "rebuffer": rebuffer, "latency": latency, "speed": speed, "switch": switch}
    return {"mode": mode, "abr": "x", "trace": trace, "error": None, "key": f"{mode}|x|{trace}", "stalls": stalls,
            "qoe_per_segment": bitrate - rebuffer - latency - speed - switch, "latency_p50_s": 2.0,
            "avg_bitrate_kbps": 2000.0, **{f"qoe_{t}_per_segment": v for t, v in terms.items()}}


def test_the_qoe_gap_by_term_adds_up_to_the_gap_each_term_as_it_enters_the_total(noise: ModuleType) -> None:
    # Emulation stalls more (rebuffer penalty +400/seg) and is a little later (latency +100/seg): the
    # QoE gap is -500/seg, -500/6495 of the sim's mean, made of the two penalties negated.
    sim = [row("sim", t, stalls=1) for t in "abc"]
    emu = [row("emulate", t, stalls=2, rebuffer=400.0 + i, latency=1100.0 - i) for i, t in enumerate("abc")]
    table = noise.run_tables(sim + emu)
    # the scale: each term's mean per segment, and the QoE as a share of the reward
    assert "| x | sim | 3 | 8000.0 | 0.0 | 1000.0 | 5.0 | 500.0 | 6495.0 | 81% |" in table
    cells = [c.strip() for c in noise.term_table(noise.pairings(sim + emu, [])[:1]).splitlines()[-1].split("|")[1:-1]]
    assert cells[:3] == ["x", "emulate A - sim A", "3"]
    reference = 8000 - 1000 - 5 - 500
    assert cells[3].startswith(f"{100 * -500 / reference:+.1f}% ± ")
    by_term = dict(zip(noise.QOE_TERMS, cells[4:]))
    assert by_term["rebuffer"].startswith(f"{100 * -401 / reference:+.1f}%")  # a penalty: its rise lowers the QoE
    assert by_term["latency"].startswith(f"{100 * -99 / reference:+.1f}%")
    assert by_term["bitrate"].startswith("+0.0%") and by_term["switch"].startswith("+0.0%")


def test_two_runs_are_paired_per_trace_emulate_against_emulate(noise: ModuleType, tmp_path: Path) -> None:
    a = [row("sim", t, stalls=2) for t in "abcd"] + [row("emulate", t, stalls=s) for t, s in zip("abcd", (2, 3, 2, 1))]
    b = [row("sim", t, stalls=2) for t in "abcd"] + [row("emulate", t, stalls=s) for t, s in zip("abcd", (3, 3, 1, 4))]
    b.append({**row("emulate", "e", stalls=9), "key": "emulate|x|e"})  # no partner in A: left out
    paths = []
    for name, rows in (("a", a), ("b", b)):
        path = tmp_path / f"{name}.jsonl"
        failed = {**rows[-1], "error": "boom", "stalls": 99}  # an earlier failed try of a session: the later line wins
        path.write_text("\n".join(json.dumps(r) for r in [failed, *rows]) + "\n")
        paths.append(path)
    floor = {p.label: p for p in noise.pairings(noise.load_run(paths[0]), noise.load_run(paths[1]))}
    gap = floor["emulate B - emulate A"].gaps(["stalls"])[("x", "stalls")]
    assert gap.difference.n == 4 and gap.difference.mean == pytest.approx(0.75)  # (1 + 0 - 1 + 3) / 4
    assert gap.sim_mean == pytest.approx(2.0) and gap.relative_pct == pytest.approx(37.5)  # of A's emulated mean
    assert floor["sim B - sim A"].gaps(["stalls"])[("x", "stalls")].difference.mean == 0
    report = noise.compare_runs(*paths)
    assert "x: 1 of 4 traces' two emulated sessions agree on their number of stalls" in report
    assert "| x | emulate B - emulate A | 4 | " in report


def test_the_gaps_spread_is_split_into_what_a_second_run_repeats_and_its_noise(noise: ModuleType) -> None:
    # Per trace the gap is a stable part (the twin's own error there) plus each run's own noise; the
    # split recovers the noise's variance from gap B - gap A, and the traces needed fall with runs.
    rng = np.random.default_rng(1)
    traces = [f"t{i}" for i in range(400)]
    stable = rng.normal(0.0, 1.0, len(traces))
    runs = []
    for _ in range(2):
        extra = stable + rng.normal(0.0, 2.0, len(traces))  # noise sd 2: variance 4 against the stable 1
        runs.append([row("sim", t, stalls=10.0) for t in traces]
                    + [row("emulate", t, stalls=10.0 + e) for t, e in zip(traces, extra)])
    (split,) = noise.spread_split(*runs, "stalls")
    assert split.traces == 400 and split.sim_mean == 10.0
    assert split.noise_var == pytest.approx(4.0, rel=0.2) and split.stable_var == pytest.approx(1.0, abs=0.6)
    # 95% CI half-width 5% of 10 = 0.5: n = 1.96^2 x variance / 0.25
    one = split.sessions_needed(1)
    assert one == pytest.approx(1.96 ** 2 * split.gap_sd ** 2 / 0.25)
    assert split.sessions_needed(4) == pytest.approx(1.96 ** 2 * (split.stable_var + split.noise_var / 4) / 0.25)
    assert split.sessions_needed(4) < one / 2
    assert math.isnan(noise.SpreadSplit(abr="x", metric="stalls", traces=3, sim_mean=0.0, gap_sd=1.0,
                                        noise_var=0.5).sessions_needed())


def test_with_one_session_per_trace_the_pairing_is_the_runs_own_gap(noise: ModuleType) -> None:
    from player.research.experiment_live import live_gaps

    rows = [row("sim", t, stalls=s) for t, s in zip("abcde", (1, 2, 0, 4, 2))]
    rows += [row("emulate", t, stalls=s, latency=1000.0 + s) for t, s in zip("abcde", (2, 2, 1, 7, 2))]
    own = {(g.abr, g.metric): g for g in live_gaps(rows)}
    (pairing,) = [p for p in noise.pairings(rows, rows) if p.label == "emulate A - sim A"]
    ours = pairing.gaps(["stalls", "qoe_per_segment"])
    for key in ours:
        assert ours[key] == own[key]


def test_twins_of_with_a_join_shift_pairs_each_twin_with_one_joining_later(packaged: PackagedTitles, tmp_path: Path,
                                                                           capsys: pytest.CaptureFixture[str]) -> None:
    # bench/live_run.py --twins-of RUN --join-shift-s S: the stored session's twin against one joining S s later
    from netsim.sources import open_trace
    from player.research.experiment_live import LiveRunConfig, channel_content, sim_row

    spec = importlib.util.spec_from_file_location("live_run", BENCH / "live_run.py")
    assert spec is not None and spec.loader is not None
    live_run = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(live_run)
    content = channel_content(packaged.content_root / CLEAR_TITLE)
    config = LiveRunConfig(abrs=("dynamic",), duration_s=20.0, speed=4.0)
    trace = open_trace("step:3e6,6e5,3e6@5")
    stored = {**sim_row("dynamic", trace, config, content, channel_age_s=37.5), "mode": "emulate", "joined_at_s": 0.0}
    run = tmp_path / "live_results.jsonl"
    run.write_text(json.dumps(stored) + "\n")
    live_run.twins_of(run, config, content, [trace], join_shift_s=1.7)
    out = capsys.readouterr().out
    line = next(x for x in out.splitlines() if x.startswith("| dynamic | twin 1.7 s later - twin | 1 |"))
    later = sim_row("dynamic", trace, config, content, channel_age_s=37.5 + 1.7, trace_time_s=0.0)
    twin = sim_row("dynamic", trace, config, content, channel_age_s=37.5, trace_time_s=0.0)
    assert later["latency_p50_s"] != twin["latency_p50_s"]  # the shift moves this session
    assert f"{later['latency_p50_s'] - twin['latency_p50_s']:+.2f}" in line.split("|")[6]
    live_run.twins_of(run, config, content, [trace])
    assert "later - twin" not in capsys.readouterr().out
