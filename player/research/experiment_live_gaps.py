"""The live run's sim-vs-emulation gap, judged: each trace played from several start offsets, the
gap paired per session and averaged per trace (a trace's sessions are not independent), its 95% CI
over traces, how many session pairs agree on their stalls, and how many traces a CI of +-5% of the
simulated mean would need (issue 16's goal). `abrkit run --live` prints it (experiment_live.py's
report); bench/live_run.py and bench/live_noise.py (two runs against each other) build on it."""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from netsim.trace import Trace
from player.research.experiment import trace_offsets_s
from player.research.stats import Interval, mean_ci, relative_pct

Row = dict[str, Any]
# The figures compared: the live QoE, bitrate, latency and stalls, then the median of the ABR's
# throughput samples, per download, which the load moves little (a clock drifting from the channel's
# showed there first: docs/LIVE-EMULATION.md, "Wave 5's merge and its bisect"); and the median time
# to first byte, per request: what the emulated link and player add to each one (docs/LIVE-SIM.md,
# "The twin against emulation").
GAP_METRICS = ("qoe_per_segment", "avg_bitrate_kbps", "latency_p50_s", "stalls", "throughput_p50_bps", "ttfb_p50_s")
GOAL_PCT = 5.0  # issue 16: the twin within 5% of emulation
NEEDED_METRICS = ("stalls", "qoe_per_segment")  # the goal's figures
_OFFSET = re.compile(r"@\d+(\.\d+)?s$")  # a trace played from a start offset: `offset_traces`'s names


def offset_traces(traces: Sequence[Trace], offsets: int, seed: int | None = None) -> list[Trace]:
    """The traces a live run plays, each a session per algorithm and mode. `offsets` 1 and no `seed`:
    the traces as they are. `seed` alone (`offsets` 1): each trace from the offset that seed draws
    (`trace_offsets_s`, as `abrkit run --seed` starts a VOD session). `offsets` N > 1: each trace
    from its start, then from the offsets seeds `seed`, `seed` + 1, ... draw (`seed` None: 0), so
    `--seed S`'s sessions are `--offsets 2 --seed S`'s second ones. An offset trace is rotated
    (`Trace.rotated`: the emulated link and the twin both start there) and named `name@<offset>s`;
    the traces at 0 come first with their own names, so they pair with a run played without offsets."""
    if offsets < 1:
        raise ValueError(f"offsets per trace must be >= 1, got {offsets}")
    if offsets == 1:
        return list(traces) if seed is None else _rotated(traces, seed)
    out = list(traces)
    for k in range(offsets - 1):
        out += _rotated(traces, (seed or 0) + k)
    return out


def _rotated(traces: Sequence[Trace], seed: int) -> list[Trace]:
    return [dataclasses.replace(trace.rotated(offset_s), name=f"{trace.name}@{offset_s:g}s")
            for trace, offset_s in zip(traces, trace_offsets_s(traces, seed))]


def base_trace(name: str) -> str:
    """The trace a session's trace name was played from (`offset_traces`)."""
    return _OFFSET.sub("", name)


@dataclass(frozen=True, kw_only=True, slots=True)
class LiveGap:
    """`other` - reference (emulate - sim) for one algorithm and metric: the mean over traces of each
    trace's mean paired difference, with its 95% CI over traces, and relative to the reference's mean."""

    abr: str
    metric: str
    sim_mean: float
    emulate_mean: float
    difference: Interval

    @property
    def relative_pct(self) -> float:
        return relative_pct(self.difference.mean, self.sim_mean)

    @property
    def half_width_pct(self) -> float:
        """The CI's half-width as a % of the reference's mean (NaN where that is 0 or there is no CI)."""
        if self.difference.n < 2:
            return math.nan
        return relative_pct(self.difference.half_width, self.sim_mean)


@dataclass(frozen=True, kw_only=True, slots=True)
class Pairing:
    """`other` - `reference`, paired per (algorithm, trace name): `label` says which runs and modes."""

    label: str
    reference: tuple[Row, ...]
    other: tuple[Row, ...]

    def gaps(self, metrics: Sequence[str]) -> dict[tuple[str, str], LiveGap]:
        """(abr, metric) -> the paired gap (the reference as `LiveGap`'s "sim"): the mean over traces
        of each trace's difference, with its 95% CI. A trace played from several start offsets
        (`offset_traces`) is one sample, the mean of its sessions' differences, as they are not
        independent."""
        out = {}
        for abr in abrs_of([self]):
            for metric in metrics:
                differences = self.differences(abr, metric)
                if not differences:
                    continue
                ref = [float(r[metric]) for r in self.reference if r["abr"] == abr and r["trace"] in differences]
                other = [float(r[metric]) for r in self.other if r["abr"] == abr and r["trace"] in differences]
                out[(abr, metric)] = LiveGap(abr=abr, metric=metric, sim_mean=float(np.mean(ref)),
                                             emulate_mean=float(np.mean(other)),
                                             difference=mean_ci(list(per_trace(differences).values())))
        return out

    def differences(self, abr: str, metric: str) -> dict[str, float]:
        """trace -> other - reference, where both have the figure."""
        ref = {r["trace"]: r.get(metric) for r in self.reference if r["abr"] == abr}
        return {r["trace"]: float(r[metric]) - float(ref[r["trace"]]) for r in self.other
                if r["abr"] == abr and finite(r.get(metric)) and finite(ref.get(r["trace"]))}


def per_trace(differences: dict[str, float]) -> dict[str, float]:
    """Session name -> difference, as base trace -> the mean of its sessions' differences."""
    by_trace: dict[str, list[float]] = {}
    for name, difference in differences.items():
        by_trace.setdefault(base_trace(name), []).append(difference)
    return {trace: float(np.mean(v)) for trace, v in by_trace.items()}


def run_pairing(rows: Sequence[Row]) -> Pairing:
    """One run's emulate - sim over its finished sessions."""
    return Pairing(label="emulate - sim", reference=tuple(r for r in rows if r["mode"] == "sim" and not r.get("error")),
                   other=tuple(r for r in rows if r["mode"] == "emulate" and not r.get("error")))


def live_gaps(rows: Sequence[Row]) -> list[LiveGap]:
    """Per algorithm and `GAP_METRICS`: emulate - sim over the sessions both finished, paired per
    session, each trace's sessions averaged first, the CI over traces."""
    return list(run_pairing(rows).gaps(GAP_METRICS).values())


@dataclass(frozen=True, kw_only=True, slots=True)
class StallAgreement:
    """One algorithm's session pairs (emulated, simulated twin) and how many agree on their stalls."""

    abr: str
    pairs: int
    same_count: int  # the same number of stalls
    same_kind: int  # both stalled, or neither
    emulated_stalls: float
    simulated_stalls: float


def stall_agreement(rows: Sequence[Row]) -> list[StallAgreement]:
    """Per algorithm, over the sessions finished in both modes."""
    pairing = run_pairing(rows)
    out = []
    for abr in abrs_of([pairing]):
        sim = {r["trace"]: r for r in pairing.reference if r["abr"] == abr and finite(r.get("stalls"))}
        both = [(e["stalls"], sim[e["trace"]]["stalls"]) for e in pairing.other
                if e["abr"] == abr and e["trace"] in sim and finite(e.get("stalls"))]
        if both:
            out.append(StallAgreement(abr=abr, pairs=len(both), same_count=sum(e == s for e, s in both),
                                      same_kind=sum((e > 0) == (s > 0) for e, s in both),
                                      emulated_stalls=sum(e for e, _ in both), simulated_stalls=sum(s for _, s in both)))
    return out


def traces_needed(sd: float, reference_mean: float, goal_pct: float = GOAL_PCT) -> float:
    """Traces for a 95% CI half-width of `goal_pct`% of `reference_mean`, at a per-trace gap spread
    of `sd` (normal quantile: a first estimate, the t quantile adds a few for small counts). NaN
    where the reference's mean is 0 (no percentage)."""
    if not reference_mean:
        return math.nan
    return 1.96 ** 2 * sd ** 2 / (goal_pct / 100 * reference_mean) ** 2


def needed_text(value: float) -> str:
    return "-" if not math.isfinite(value) else str(max(2, math.ceil(value)))


def gap_text(difference: float, relative_pct: float) -> str:
    """A gap with its percentage of the simulated mean, or alone where that mean is 0 (no percentage)."""
    return f"{difference:+.2f}" + (f" ({relative_pct:+.1f}%)" if math.isfinite(relative_pct) else "")


def ci_text(gap: LiveGap) -> str:
    """The gap's mean and 95% CI half-width, with both as a % of the reference mean where it is not 0;
    times (`_s`) to the millisecond, as the emulation's own time per request is a few of them."""
    d = gap.difference
    if d.n < 2:  # one pair has no spread to estimate (as `Interval` prints it)
        return gap_text(d.mean, gap.relative_pct) + " (n=1, no CI)"
    digits = 3 if gap.metric.endswith("_s") else 2
    text = f"{d.mean:+.{digits}f} ± {d.half_width:.{digits}f}"
    if math.isfinite(gap.relative_pct):
        return text + f" ({gap.relative_pct:+.1f}% ± {gap.half_width_pct:.1f}%)"
    return text


def judgement(rows: Sequence[Row]) -> list[dict[str, Any]]:
    """Per algorithm: sessions and traces paired, the stall agreement, and for the goal's figures the
    gap, its CI's half-width in % and the traces (at this run's sessions per trace) a +-5% CI needs."""
    pairing = run_pairing(rows)
    gaps = pairing.gaps(NEEDED_METRICS)
    agreement = {a.abr: a for a in stall_agreement(rows)}
    out = []
    for abr in abrs_of([pairing]):
        if abr not in agreement:
            continue
        entry: dict[str, Any] = {"abr": abr, **dataclasses.asdict(agreement[abr])}
        for metric in NEEDED_METRICS:
            gap = gaps.get((abr, metric))
            if gap is None:
                continue
            values = list(per_trace(pairing.differences(abr, metric)).values())
            sd = float(np.std(values, ddof=1)) if len(values) > 1 else math.nan
            entry[metric] = {"traces": gap.difference.n, "gap": gap.difference.mean, "gap_pct": gap.relative_pct,
                             "half_width_pct": gap.half_width_pct, "sd_per_trace": sd,
                             "traces_needed": traces_needed(sd, gap.sim_mean)}
        out.append(entry)
    return out


def format_judgement(rows: Sequence[Row]) -> str:
    """`judgement` as report lines (empty without pairs)."""
    entries = judgement(rows)
    if not entries:
        return ""
    emulated = run_pairing(rows).other
    traces = len({(r["abr"], base_trace(r["trace"])) for r in emulated})
    per = f"{len(emulated) / traces:g} session{'s' * (len(emulated) != traces)}"
    lines = [f"issue 16's goal, the gap within ±{GOAL_PCT:g}% of sim's mean ({per} per trace and algorithm, a trace's "
             f"averaged, the 95% CI over traces; the traces needed at as many sessions per trace):"]
    for e in entries:
        cells = []
        for metric, name in (("stalls", "stalls"), ("qoe_per_segment", "live QoE")):
            m = e.get(metric)
            if m is not None:
                if m["traces"] < 2:
                    cells.append(f"{name} no CI (1 trace)")
                elif not math.isfinite(m["half_width_pct"]):
                    cells.append(f"{name} gap {m['gap']:+.2f}, no % (sim's mean 0)")
                else:
                    cells.append(f"{name} CI ±{m['half_width_pct']:.1f}%, ±{GOAL_PCT:g}% needs "
                                 f"{needed_text(m['traces_needed'])} traces")
        lines.append(f"  {e['abr']:<10} {e['same_count']} of {e['pairs']} pairs agree on their number of stalls, "
                     f"{e['same_kind']} on stall / no stall; " + "; ".join(cells))
    return "\n".join(lines)


def abrs_of(pairs: Sequence[Pairing]) -> list[str]:
    return list(dict.fromkeys(r["abr"] for p in pairs for r in (*p.reference, *p.other)))


def finite(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
