"""Shared bottlenecks: N players behind one link, simulated and emulated, in one run.

For each ABR and N in {1, 2, 4, 8}: every trace's link carries N players of the demo title (the
trace's bandwidth x N, so each player's fair share is the trace), the later players joining
`--join-spacing-s` trace seconds apart. The same groups run in the shared-link simulator and as
real headless players through one shaper each (`abrkit run --players-per-link N --mode both`).
Prints, per ABR x N, sim and emulation side by side: Jain's index of the players' bitrates, mean
QoE_lin with the emulation - sim gap relative to the simulator, and QoE_lin's three terms apart
(bitrate utility, rebuffering penalty, switching penalty: their sum is QoE_lin), so a gap shows where
it comes from; the load average and the emulation's event-loop lag beside each N. The reference
measured in the same run is N = 1 (one player alone, today's simulator and emulation): its gap is
what one player already shows, before any sharing. Speed 1 by default: at K x, every wall-clock
cost of a request (server, event loop, shaper quantum) counts K times in session time.

A second table says how far each cell's gap can be told from chaos, per link (a trace from one
start offset; `--offsets K` plays each trace from K seeded random offsets, K times the links and the
emulation's run time): the gap's paired bootstrap 95% interval over links; the range of gaps a
perfect model would show when every player's start moves later by at most 0.1 s (the simulator
against itself, `--moves` runs per link); the emulated mean against the simulator's mean over those
moves; a verdict (within 10%, chaos, chaos or bias, not significant, model error); and the load-insensitive
agreement: the gap over the sum of the terms' magnitudes (BBA's mean is a small difference of large
terms), the emulated downloads' median error against the link model at their request times (every
player's requests on the link), and the share of identical quality decisions.

    python bench/fairness.py [--abr bba,bola,dynamic] [--players 1,2,4,8] [--traces 8] [--offsets 1]
                             [--moves 12] [--seed 0] [--speed 1] [--join-spacing-s 2]
                             [--sessions-per-worker 16] [--keep DIR] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from abr.qoe import QoeModel
from netsim.sources import open_traces
from netsim.trace import Trace
from player.research.experiment import ExperimentConfig, open_content, run_experiment, trace_offsets_s
from player.research.experiment_shared import fairness_summary
from player.research.fairness import ModeGap, mode_gap
from player.research.sim import profile
from player.research.sim_shared import RESPONSE_HEADER_BYTES
from player.research.sweep import trace_keys
from server.config import default_cache_dir

TRACE_DIR = Path(__file__).resolve().parents[1].parent / "shared" / "traces" / "pensieve" / "test-public"


def widened(trace: Trace, factor: int) -> Trace:
    """`trace` with `factor` times its bandwidth (N players: each one's fair share is the trace)."""
    return Trace(name=trace.name, durations_s=trace.durations_s, bandwidth_bps=trace.bandwidth_bps * factor,
                 latency_s=trace.latency_s)


def qoe_terms(row: dict[str, Any], model: QoeModel, ladder_bps: np.ndarray) -> tuple[float, float, float]:
    """QoE_lin of one results row split into its terms: (bitrate utility, -rebuffer penalty, -switch
    penalty), summed over the counted segments as `QoeModel.score` sums them (no startup weight)."""
    t = row["timeline"]
    utility = model.segment_utility(np.asarray(t["bitrate_bps"], dtype=np.float64), ladder_bps)
    rebuffer = np.asarray(t["rebuffer_s"], dtype=np.float64)
    switch = np.abs(np.diff(utility, prepend=utility[:1]))
    first = model.first_counted_segment
    return (float(utility[first:].sum()), -model.rebuffer_penalty * float(rebuffer[first:].sum()),
            -model.switch_penalty * float(switch[first:].sum()))


def figures(rows: list[dict[str, Any]], players: int, model: QoeModel, ladder_bps: np.ndarray,
            ) -> dict[tuple[str, str], dict[str, float]]:
    """Per (mode, ABR): means over every player of QoE_lin and its terms, and the links' mean Jain index."""
    out: dict[tuple[str, str], dict[str, float]] = {}
    # Paired: a link counts only if every player of it played in both modes (a failed emulated session
    # leaves its link out of the simulator's figures too).
    failed = {(r["abr"], r["trace"]) for r in rows if r.get("error")}
    rows = [r for r in rows if (r["abr"], r["trace"]) not in failed]
    links = fairness_summary(rows) if players > 1 else {}
    for key in sorted({(r["mode"], r["abr"]) for r in rows}):
        mine = [r for r in rows if (r["mode"], r["abr"]) == key]
        terms = np.array([qoe_terms(r, model, ladder_bps) for r in mine])
        qoe = np.array([r["qoe_lin"] for r in mine])
        if not np.allclose(terms.sum(axis=1), qoe, atol=1e-3):
            raise AssertionError(f"{key}: QoE_lin's terms do not add up to it")
        out[key] = {"players": float(len(mine)), "qoe": float(qoe.mean()), "bitrate_term": float(terms[:, 0].mean()),
                    "rebuffer_term": float(terms[:, 1].mean()), "switch_term": float(terms[:, 2].mean()),
                    "jain": links[key]["link_jain_bitrate"] if key in links else 1.0,
                    "loop_lag_p99_ms": float(max((r.get("loop_lag_p99_ms") or 0.0) for r in mine))}
    return out


def agreement(rows: list[dict[str, Any]], abr: str) -> dict[str, float]:
    """Load-insensitive agreement of one ABR's emulated sessions with the simulated ones: the median
    per-download error of the emulation against the link model at the emulated request times (all
    the link's players' requests), and the share of segments whose quality both modes chose alike
    (paired by link and player)."""
    mine = [r for r in rows if r["abr"] == abr and not r.get("error")]
    emulated = [r for r in mine if r["mode"] == "emulate"]
    measured = np.concatenate([r["timeline"]["download_s"] for r in emulated]) if emulated else np.zeros(0)
    model = np.concatenate([r["timeline"]["model_download_s"] for r in emulated]) if emulated else np.zeros(0)
    paired: dict[tuple[str, int], dict[str, list[int]]] = {}
    for r in mine:
        paired.setdefault((r["trace"], int(r.get("link_player") or 0)), {})[r["mode"]] = r["timeline"]["quality"]
    same = total = 0
    for both in paired.values():
        if "sim" in both and "emulate" in both:
            same += sum(a == b for a, b in zip(both["sim"], both["emulate"]))
            total += len(both["sim"])
    return {"model_error_median": float(np.median(np.abs(measured / model - 1))) if len(model) else float("nan"),
            "identical_decisions": same / total if total else float("nan")}


MOVE_S = 0.1  # how far the timing moves: less than the emulated requests drift from the simulated ones (0.1-0.5 s)


def timing_moves(abr: str, n: int, links: list[tuple[Trace, float]], content: Any, prof: Any, join_spacing_s: float,
                 moves: int, seed: int) -> list[list[float]]:
    """Per link (trace, start offset): the simulator's mean QoE_lin over the link's players, `moves`
    times, each time every player's start moved later by its own uniform draw in [0, MOVE_S] s (player
    0's through the link's start in the trace, the others' through their joins); seeded per link.
    How far these answers spread is how well a single realisation's gap can be told from chaos."""
    from player.research.sim_shared import join_times_s, run_shared

    nominal = join_times_s(n, join_spacing_s)
    out = []
    for index, (trace, offset) in enumerate(links):
        rng = np.random.default_rng([seed, index])
        means = []
        for _ in range(moves):
            shift = rng.uniform(0.0, MOVE_S, size=n)
            joins = [0.0] + [j + u - shift[0] for j, u in zip(nominal[1:], shift[1:])]
            if min(joins) < 0:  # joins closer than MOVE_S: move them together instead
                joins = list(nominal)
            played = run_shared([abr] * n, content.video, trace, prof, offset_s=offset + float(shift[0]), joins_s=joins)
            means.append(float(np.mean([r.metrics.qoe["lin"] for r in played.players])))
        out.append(means)
    return out


def link_means(rows: list[dict[str, Any]], abr: str) -> dict[str, dict[str, float]]:
    """Per mode, per link (trace key): the mean QoE_lin of its players; links with a failed player in
    either mode left out (paired)."""
    mine = [r for r in rows if r["abr"] == abr]
    failed = {r["trace"] for r in mine if r.get("error")}
    out: dict[str, dict[str, list[float]]] = {}
    for r in mine:
        if r["trace"] not in failed:
            out.setdefault(r["mode"], {}).setdefault(r["trace"], []).append(float(r["qoe_lin"]))
    return {mode: {k: float(np.mean(v)) for k, v in links.items()} for mode, links in out.items()}


def _row(abr: str, n: int, sim: dict[str, float], emu: dict[str, float], load: str) -> str:
    gap = (emu["qoe"] - sim["qoe"]) / abs(sim["qoe"]) * 100 if sim["qoe"] else float("nan")
    return (f"{abr:10} {n:2d} | {sim['jain']:6.3f} {emu['jain']:6.3f} | {sim['qoe']:7.2f} {emu['qoe']:7.2f} {gap:+7.1f}% | "
            f"{sim['bitrate_term']:6.2f} {emu['bitrate_term']:6.2f} | {sim['rebuffer_term']:6.2f} "
            f"{emu['rebuffer_term']:6.2f} | {sim['switch_term']:6.2f} {emu['switch_term']:6.2f} | "
            f"{int(sim['players']):3d} {int(emu['players']):3d} | {load:>11} {emu['loop_lag_p99_ms']:6.0f}")


CHECK_HEADER = (f"{'abr':10} {'N':>2} {'links':>5} | {'gap/|sim| [boot 95%]':>24} | {'chaos 95%':>17} "
                f"{'moves':>6} | {'vs moves mean [95%]':>24} | {'verdict':>15} | {'gap/terms':>9} {'model err':>9} "
                f"{'same q':>6}")


def _check_row(abr: str, n: int, gap: ModeGap, fit: dict[str, float]) -> str:
    ci, chaos, centre = gap.gap_ci_pct, gap.chaos_pct, gap.gap_to_jitter_mean_ci_pct
    return (f"{abr:10} {n:2d} {gap.links:5d} | {gap.gap_pct:+7.1f}% [{ci[0]:+6.1f}, {ci[1]:+6.1f}] | "
            f"{chaos[0]:+7.1f}..{chaos[1]:+6.1f}% {gap.jitter_spread_pct:5.1f}% | {gap.gap_to_jitter_mean_pct:+7.1f}% "
            f"[{centre[0]:+6.1f}, {centre[1]:+6.1f}] | {gap.verdict:>15} | {fit['qoe_gap_of_terms_pct']:+8.1f}% "
            f"{fit['model_error_median'] * 100:8.1f}% {fit['identical_decisions'] * 100:5.1f}%")


HEADER = (f"{'abr':10} {'N':>2} | {'Jain sim':>8} {'emu':>4} | {'QoE sim':>7} {'emu':>7} {'gap':>8} | "
          f"{'bitrate term':>13} | {'rebuffer term':>13} | {'switch term':>13} | {'players':>7} | "
          f"{'load 1-min':>11} {'lag99':>6}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--abr", default="bba,bola,dynamic")
    parser.add_argument("--players", default="1,2,4,8")
    parser.add_argument("--traces", type=int, default=8, help="Pensieve test traces (default 8)")
    parser.add_argument("--speed", type=float, default=1.0)
    parser.add_argument("--join-spacing-s", type=float, default=2.0)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--sessions-per-worker", type=int, default=16, help="emulated players per event loop")
    parser.add_argument("--start-spacing-s", type=float, default=0.3,
                        help="wall seconds between emulated players' bootstraps (a login storm times out on a loaded machine)")
    parser.add_argument("--offsets", type=int, default=1,
                        help="start offsets per trace (1: each link from the trace's start; K > 1: K seeded random "
                             "offsets, so K times the links and the emulation's run time)")
    parser.add_argument("--moves", type=int, default=12, help="simulator runs per link with the timing moved")
    parser.add_argument("--seed", type=int, default=0, help="offsets, timing moves and bootstrap")
    parser.add_argument("--keep", type=Path, help="keep each N's results (results.jsonl) under this folder")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    if not TRACE_DIR.is_dir():
        print(f"skipped: no traces at {TRACE_DIR}", file=sys.stderr)
        return 0
    if args.offsets < 1 or args.moves < 1:
        parser.error("--offsets and --moves must be >= 1")
    seed = args.seed if args.offsets > 1 else None
    abrs = tuple(args.abr.split(","))
    ns = [int(n) for n in args.players.split(",")]
    files = sorted(p for p in TRACE_DIR.iterdir() if p.name != "README.md")[:: max(1, 72 // args.traces)][: args.traces]
    base = open_traces([str(p) for p in files])
    content = open_content("demo", cache_dir=default_cache_dir())
    # Each response's header bytes on every link: N > 1 carries them (sim_shared); N = 1 (`run_session`) too.
    prof = profile("default").with_player(response_header_bytes=RESPONSE_HEADER_BYTES)
    (model,) = [m for m in prof.qoe_models(content.video) if m.name == "lin"]
    ladder_bps = np.asarray(content.video.ladder.bitrates_bps, dtype=np.float64)
    results: dict[str, Any] = {}
    print(f"demo title ({content.video.segment_count} x {content.video.ladder.segment_duration_s:g} s), "
          f"{len(base)} Pensieve test traces x N bandwidth ({', '.join(t.name for t in base)}), join spacing "
          f"{args.join_spacing_s:g} s, emulation at {args.speed:g}x", flush=True)
    print(HEADER, flush=True)
    lines: list[str] = []
    checks: list[str] = []
    with tempfile.TemporaryDirectory(prefix="bench-fairness-") as tmp:
        root = args.keep or Path(tmp)
        for n in ns:
            traces = [widened(t, n) for t in base] * args.offsets
            links = dict(zip(trace_keys([t.name for t in traces]), zip(traces, trace_offsets_s(traces, seed))))
            config = ExperimentConfig(abrs=abrs, modes=("sim", "emulate"), profile=prof, speed=args.speed, seed=seed,
                                      workers=args.workers, sessions_per_worker=args.sessions_per_worker,
                                      players_per_link=n, join_spacing_s=args.join_spacing_s,
                                      start_spacing_s=args.start_spacing_s)
            load_before = os.getloadavg()[0]
            summary = run_experiment(config, content, traces, root / f"n{n}", progress=False, notify=lambda m: None)
            load = f"{load_before:.1f}-{os.getloadavg()[0]:.1f}"
            if summary.failed:
                errors = Counter(str(r.get("error"))[:160] for r in summary.rows if r.get("error"))
                print(f"warning: N={n}: {summary.failed} sessions failed (left out): {dict(errors)}", file=sys.stderr)
            got = figures(list(summary.rows), n, model, ladder_bps)
            for abr in abrs:
                sim, emu = got.get(("sim", abr)), got.get(("emulate", abr))
                if sim is None or emu is None:
                    continue
                sim_started = time.monotonic()
                gap = (emu["qoe"] - sim["qoe"]) / abs(sim["qoe"]) * 100 if sim["qoe"] else float("nan")
                terms = abs(sim["bitrate_term"]) + abs(sim["rebuffer_term"]) + abs(sim["switch_term"])
                per_link = link_means(list(summary.rows), abr)
                keys = [k for k in per_link.get("sim", {}) if k in per_link.get("emulate", {})]
                moved = timing_moves(abr, n, [links[k] for k in keys], content, prof, args.join_spacing_s,
                                     args.moves, args.seed)
                stats = mode_gap([per_link["sim"][k] for k in keys], [per_link["emulate"][k] for k in keys], moved,
                                 seed=args.seed)
                fit = {**agreement(list(summary.rows), abr), "qoe_gap_of_terms_pct": (emu["qoe"] - sim["qoe"]) / terms * 100}
                results[f"{abr}/N={n}"] = {"sim": sim, "emulate": emu, "qoe_gap_pct": gap, "load": load,
                                           "jain_gap_pct": (emu["jain"] - sim["jain"]) / sim["jain"] * 100,
                                           "wall_s": summary.wall_s, "statistics": stats.as_dict(),
                                           "sim_wall_s": time.monotonic() - sim_started, **fit}
                lines.append(_row(abr, n, sim, emu, load))
                checks.append(_check_row(abr, n, stats, fit))
                print(lines[-1], flush=True)
    print()
    print(HEADER)
    print("\n".join(lines))
    print("\nPer cell: sim / emulation. QoE = QoE_lin, the mean over every player of every link; its terms (bitrate "
          "utility, -rebuffer penalty, -switch penalty) add up to it. gap = (emu - sim) / |sim|. N = 1 is the "
          "reference (one player alone). load: 1-minute load average before-after (2 cores); lag99: p99 "
          "event-loop lag of the emulation, ms.")
    print()
    print(CHECK_HEADER)
    print("\n".join(checks))
    print("\nHow well-posed each gap is, and the load-insensitive agreement. links: traces x start offsets "
          "(--offsets), paired (a link with a failed player in either mode is left out). gap/|sim|: as above, with a "
          "paired percentile-bootstrap 95% interval over links. chaos 95%: the gap a perfect model would show when "
          f"every player's start moves later by at most {MOVE_S:g} s (less than emulated requests drift): per link, "
          "one of the simulator's own answers with the starts moved (--moves per link, each player its own uniform "
          "draw) against its unmoved answer, drawn per link 4000 times. moves: how far the simulator's mean moves "
          "over those moves (max - min over |sim|). vs moves mean: the emulated mean against the simulator's mean "
          "over its moves (the unmoved run included), with its bootstrap interval. verdict: within 10%; else chaos "
          "(the gap lies in the chaos range and the bootstrap interval holds 0: these links cannot tell it from a "
          "perfect model), chaos or bias (in the range, but one sign over the links: look per link), not "
          "significant (outside the range, the interval holds 0) or model error (neither). gap/terms: emu - sim over the sum of the simulator's "
          "term magnitudes. model err: median |download / link model - 1| of the emulated downloads (every "
          "player's requests on the link, abandoned ones with the bytes they had, each response with its header "
          "bytes); same q: share of segments whose quality both modes chose alike.")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2, default=float))
    return 0


if __name__ == "__main__":
    sys.exit(main())
