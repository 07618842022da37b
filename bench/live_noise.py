"""Two stored live runs against each other: the emulation's run-to-run noise beside the twin's gap.

    python bench/live_run.py --compare A/live_results.jsonl B/live_results.jsonl

(this module is `bench/live_run.py --compare`'s, and its tables are printed by live_run.py after
each run too). For each algorithm both runs played, paired per trace, with 95% CIs (Student t over
the traces both sides finished) and as a percentage of the reference's mean, in the form of the
sim-vs-emulate gap (player/research/experiment_live_gaps.py, which `abrkit run --live` reports with):

- each run's gap, emulate - sim; then emulate B - emulate A (the noise floor: the same code, channel
  and traces emulated twice) and sim B - sim A (the twins, which join where their emulated sessions did);
- the live QoE's gap split by term (`LiveQoe.terms`: bitrate reward, stall, latency, playback rate
  and switch penalties, each per segment), as each enters the total, so the terms add up to the
  QoE gap; in % of the reference's mean live QoE;
- how many sessions the gap's 95% CI would need to be within +-5% of the simulated mean, from the
  per-trace spread of the gap, split into the part a second run repeats (the twin's own error on
  that trace) and the part it does not (run-to-run noise), for 1 and for R runs per trace.
Asserts nothing; reads the runs, plays nothing.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from player.research.experiment_live import QOE_TERMS, Row
from player.research.experiment_live_gaps import (
    GAP_METRICS,
    GOAL_PCT,
    Pairing,
    abrs_of,
    base_trace,
    ci_text,
    finite,
    needed_text,
    run_pairing,
    traces_needed,
)
from player.research.stats import t_quantile_975

TERM_METRICS = ("qoe_per_segment", *(f"qoe_{term}_per_segment" for term in QOE_TERMS))
NAMES = {"qoe_per_segment": "live QoE/seg", "avg_bitrate_kbps": "kbit/s", "latency_p50_s": "latency p50 s",
         "stalls": "stalls", "throughput_p50_bps": "ABR sample", "ttfb_p50_s": "TTFB p50 s",
         **{f"qoe_{term}_per_segment": term for term in QOE_TERMS}}


def load_run(path: Path) -> list[Row]:
    """A stored run's finished sessions (live_results.jsonl; a later line of a session wins, as a
    resumed run reads them). Read only: a damaged line is an error, not cut."""
    rows: dict[str, Row] = {}
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if line.strip():
            try:
                row = json.loads(line)
            except ValueError:
                raise SystemExit(f"{path}:{number}: not a result line") from None
            rows[row.get("key") or f"{row['mode']}|{row['abr']}|{row['trace']}"] = row
    return [r for r in rows.values() if not r.get("error")]


def pairings(a: Sequence[Row], b: Sequence[Row]) -> list[Pairing]:
    """Each run's gap (emulate - sim), then emulate B - emulate A (the noise floor) and sim B - sim A."""
    def of(rows: Sequence[Row], mode: str) -> tuple[Row, ...]:
        return tuple(r for r in rows if r["mode"] == mode)

    return [Pairing(label="emulate A - sim A", reference=of(a, "sim"), other=of(a, "emulate")),
            Pairing(label="emulate B - sim B", reference=of(b, "sim"), other=of(b, "emulate")),
            Pairing(label="emulate B - emulate A", reference=of(a, "emulate"), other=of(b, "emulate")),
            Pairing(label="sim B - sim A", reference=of(a, "sim"), other=of(b, "sim"))]


def gap_table(pairs: Sequence[Pairing]) -> str:
    """Per algorithm and pairing: the gap of each `GAP_METRICS` figure, paired per trace."""
    columns = list(GAP_METRICS)
    lines = ["| abr | pairing | n | " + " | ".join(NAMES[m] for m in columns) + " |",
             "| --- | --- | --- |" + " --- |" * len(columns)]
    computed = [(p, p.gaps(columns)) for p in pairs]
    for abr in abrs_of(pairs):
        for pairing, gaps in computed:
            cells = [gaps.get((abr, m)) for m in columns]
            n = max((g.difference.n for g in cells if g is not None), default=0)
            if n:
                lines.append(f"| {abr} | {pairing.label} | {n} | "
                             + " | ".join("-" if g is None else ci_text(g) for g in cells) + " |")
    return "\n".join(lines)


def term_table(pairs: Sequence[Pairing]) -> str:
    """Per algorithm and pairing: the live QoE/segment gap and each term's part of it, as the term
    enters the total (the reward as it is, the penalties negated: the parts add up to the gap), in
    % of the reference's mean live QoE/segment, with 95% CIs."""
    lines = ["| abr | pairing | n | live QoE/seg | " + " | ".join(QOE_TERMS) + " |",
             "| --- | --- | --- | --- |" + " --- |" * len(QOE_TERMS)]
    for abr in abrs_of(pairs):
        for pairing in pairs:
            gaps = pairing.gaps(TERM_METRICS)
            total = gaps.get((abr, "qoe_per_segment"))
            if total is None or (abr, "qoe_bitrate_per_segment") not in gaps:
                continue  # rows from before the terms were stored
            cells = []
            for term in QOE_TERMS:
                d = gaps[(abr, f"qoe_{term}_per_segment")].difference
                sign = 1.0 if term == "bitrate" else -1.0
                cells.append(_pct_of(sign * d.mean, d.half_width, total.sim_mean))
            lines.append(f"| {abr} | {pairing.label} | {total.difference.n} | "
                         f"{_pct_of(total.difference.mean, total.difference.half_width, total.sim_mean)} | "
                         + " | ".join(cells) + " |")
    return "\n".join(lines)


def term_scale_table(rows: Sequence[Row]) -> str:
    """Per algorithm and mode: each term's mean per segment and the live QoE's: where the QoE is a
    small difference of large terms, a 1% change of one term is many % of the QoE."""
    lines = ["| abr | mode | n | " + " | ".join(QOE_TERMS) + " | live QoE/seg | QoE / bitrate term |",
             "| --- | --- | --- |" + " --- |" * (len(QOE_TERMS) + 2)]
    for abr in dict.fromkeys(r["abr"] for r in rows):
        for mode in ("sim", "emulate"):
            chosen = [r for r in rows if r["abr"] == abr and r["mode"] == mode and finite(r.get("qoe_bitrate_per_segment"))]
            if chosen:
                means = {m: float(np.mean([r[m] for r in chosen])) for m in TERM_METRICS}
                lines.append(f"| {abr} | {mode} | {len(chosen)} | "
                             + " | ".join(f"{means[f'qoe_{t}_per_segment']:.1f}" for t in QOE_TERMS)
                             + f" | {means['qoe_per_segment']:.1f} | "
                             + f"{means['qoe_per_segment'] / means['qoe_bitrate_per_segment']:.0%} |")
    return "\n".join(lines)


def _pct_of(mean: float, half_width: float, reference: float) -> str:
    mean += 0.0  # no "-0.0%" for a penalty's unchanged term negated
    if not reference:
        return f"{mean:+.1f} ± {half_width:.1f}"
    return f"{100 * mean / abs(reference):+.1f}% ± {100 * half_width / abs(reference):.1f}%"


@dataclass(frozen=True, kw_only=True, slots=True)
class SpreadSplit:
    """One algorithm's figure: the per-trace gap's spread (sd over traces, emulate - sim), the part of
    its variance a second run does not repeat (`noise_var`: half the variance of gap B - gap A per
    trace), the rest (`stable_var`: the twin's own error on that trace), and the simulated mean."""

    abr: str
    metric: str
    traces: int
    sim_mean: float
    gap_sd: float
    noise_var: float

    @property
    def stable_var(self) -> float:
        return max(self.gap_sd ** 2 - self.noise_var, 0.0)

    def sessions_needed(self, runs_per_trace: int = 1, goal_pct: float = GOAL_PCT) -> float:
        """Traces for the gap's 95% CI half-width to be `goal_pct`% of the simulated mean, each played
        `runs_per_trace` times (its gap the mean of those: the noise's variance divided by them)."""
        return traces_needed(math.sqrt(self.stable_var + self.noise_var / runs_per_trace), self.sim_mean, goal_pct)


def spread_split(a: Sequence[Row], b: Sequence[Row], metric: str) -> list[SpreadSplit]:
    """Per algorithm, over the traces both runs finished in both modes."""
    gap_a, gap_b = pairings(a, b)[:2]
    out = []
    for abr in abrs_of([gap_a, gap_b]):
        da, db = gap_a.differences(abr, metric), gap_b.differences(abr, metric)
        common = sorted(set(da) & set(db))
        if len(common) < 3:
            continue
        ga, gb = np.array([da[t] for t in common]), np.array([db[t] for t in common])
        sims = [float(r[metric]) for r in (*gap_a.reference, *gap_b.reference)
                if r["abr"] == abr and r["trace"] in common and finite(r.get(metric))]
        # each run's spread over traces, pooled; the noise: Var(gB - gA) = 2 Var(one run's noise)
        out.append(SpreadSplit(abr=abr, metric=metric, traces=len(common), sim_mean=float(np.mean(sims)),
                               gap_sd=math.sqrt((ga.var(ddof=1) + gb.var(ddof=1)) / 2),
                               noise_var=float(np.var(gb - ga, ddof=1)) / 2))
    return out


def sessions_table(a: Sequence[Row], b: Sequence[Row], *, runs: Sequence[int] = (1, 2, 4)) -> str:
    """Per algorithm, stalls and live QoE: the gap's spread split, and the traces the 5% goal needs."""
    lines = [f"| abr | figure | traces | sim mean | gap sd/trace | noise share of its variance | "
             f"95% CI half-width now | traces for ±{GOAL_PCT:g}% with " + ", ".join(f"{r} run{'s' * (r > 1)}" for r in runs)
             + " per trace |", "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for metric in ("stalls", "qoe_per_segment"):
        for s in spread_split(a, b, metric):
            half_pct = 100 * t_quantile_975(s.traces - 1) * s.gap_sd / math.sqrt(s.traces) / abs(s.sim_mean)
            share = s.noise_var / s.gap_sd ** 2 if s.gap_sd else math.nan
            needed = ", ".join(needed_text(s.sessions_needed(r)) for r in runs)
            lines.append(f"| {s.abr} | {NAMES[metric]} | {s.traces} | {s.sim_mean:.2f} | {s.gap_sd:.2f} | "
                         f"{min(share, 1.0):.0%} | ±{half_pct:.1f}% | {needed} |")
    return "\n".join(lines)


def agreement_lines(a: Sequence[Row], b: Sequence[Row]) -> list[str]:
    """Per algorithm: how many traces' two emulated sessions had the same number of stalls (as
    `--twins-of` counts twins), and the stall totals."""
    ea = {(r["abr"], r["trace"]): r for r in a if r["mode"] == "emulate"}
    eb = {(r["abr"], r["trace"]): r for r in b if r["mode"] == "emulate"}
    lines = []
    for abr in dict.fromkeys(k[0] for k in ea if k in eb):
        both = [(ea[k], eb[k]) for k in ea if k[0] == abr and k in eb]
        lines.append(f"  {abr}: {sum(x['stalls'] == y['stalls'] for x, y in both)} of {len(both)} traces' two emulated "
                     f"sessions agree on their number of stalls, {sum((x['stalls'] > 0) == (y['stalls'] > 0) for x, y in both)} "
                     f"on stall / no stall; stalls A {sum(x['stalls'] for x, _ in both)}, B {sum(y['stalls'] for _, y in both)}")
    return lines


def compare_runs(path_a: Path, path_b: Path) -> str:
    """The whole `--compare` report."""
    a, b = load_run(path_a), load_run(path_b)
    pairs = pairings(a, b)
    return "\n".join([f"A: {path_a} ({len(a)} sessions)", f"B: {path_b} ({len(b)} sessions)",
                      *agreement_lines(a, b), "",
                      "Paired per trace: other - reference, mean ± 95% CI (% of the reference's mean):", "",
                      gap_table(pairs), "",
                      "The live QoE/segment gap by term, as each enters the total (% of the reference's mean QoE):", "",
                      term_table(pairs), "", "The terms' means per segment, run A:", "", term_scale_table(a), "",
                      "The gap's spread over traces (emulate - sim), the share of its variance a second run does not "
                      "repeat, and the traces its CI needs:", "",
                      sessions_table(a, b)])


def run_tables(rows: Sequence[Row]) -> str:
    """One run's gap (emulate - sim) with its CIs over traces (`Pairing.gaps`: a trace's offsets
    are one sample) and its live QoE gap by term (`term_table`)."""
    pairs = [run_pairing(rows)]
    traces = {base_trace(r["trace"]) for r in pairs[0].other}
    return "\n".join([f"emulate - sim, paired per session, 95% CIs over the {len(traces)} traces "
                      f"({len(pairs[0].other)} emulated sessions):", "", gap_table(pairs), "",
                      "The live QoE/segment gap by term, as each enters the total (% of the simulated mean QoE):", "",
                      term_table(pairs), "", "The terms' means per segment:", "", term_scale_table(rows)])
