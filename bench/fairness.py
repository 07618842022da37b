"""Shared bottlenecks: N players behind one link, simulated and emulated, in one run.

For each ABR and N in {1, 2, 4, 8}: every trace's link carries N players of the demo title (the
trace's bandwidth x N, so each player's fair share is the trace), the later players joining
`--join-spacing-s` trace seconds apart. The same groups run in the shared-link simulator and as
real headless players through one shaper each (`abrkit run --players-per-link N --mode both`).
Prints, per ABR x N: Jain's index of the players' bitrates, mean QoE, QoE spread, FESTIVE
instability and link utilisation, sim and emulation side by side, with the emulation - sim gap of
mean QoE and Jain's index relative to the simulator. The reference measured in the same run is
N = 1 (one player alone, today's simulator and emulation): its gap is what one player already
shows, before any sharing.

    python bench/fairness.py [--abr bba,bola,mpc-robust] [--players 1,2,4,8] [--traces 6] [--speed 4]
                             [--join-spacing-s 2] [--sessions-per-worker 8] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from netsim.sources import open_traces
from netsim.trace import Trace
from player.research.experiment import ExperimentConfig, open_content, run_experiment
from player.research.experiment_shared import fairness_summary
from player.research.fairness import festive_instability, jain_index
from player.research.sim import profile
from server.config import default_cache_dir

TRACE_DIR = Path(__file__).resolve().parents[1].parent / "shared" / "traces" / "pensieve" / "test-public"


def widened(trace: Trace, factor: int) -> Trace:
    """`trace` with `factor` times its bandwidth (N players: each one's fair share is the trace)."""
    return Trace(name=trace.name, durations_s=trace.durations_s, bandwidth_bps=trace.bandwidth_bps * factor,
                 latency_s=trace.latency_s)


def figures(rows: list[dict[str, Any]], players: int, seg_s: float) -> dict[tuple[str, str], dict[str, float]]:
    """Per (mode, ABR): the group figures (for N = 1, computed here the same way from the lone players)."""
    if players > 1:
        return fairness_summary(rows)
    out: dict[tuple[str, str], dict[str, float]] = {}
    for key in {(r["mode"], r["abr"]) for r in rows if not r.get("error")}:
        mine = [r for r in rows if (r["mode"], r["abr"]) == key and not r.get("error")]
        out[key] = {"links": float(len(mine)), "link_jain_bitrate": jain_index([r["avg_bitrate_bps"] for r in mine[:1]]),
                    "link_qoe_mean": float(np.mean([r["qoe_lin"] for r in mine])), "link_qoe_spread": 0.0,
                    "link_instability_mean": float(np.mean([festive_instability(r["timeline"]["bitrate_bps"], seg_s)
                                                             for r in mine])),
                    "link_utilisation": float("nan")}  # a lone player's audio bytes are not in its row
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--abr", default="bba,bola,mpc-robust")
    parser.add_argument("--players", default="1,2,4,8")
    parser.add_argument("--traces", type=int, default=6, help="Pensieve test traces (default 6)")
    parser.add_argument("--speed", type=float, default=4.0)
    parser.add_argument("--join-spacing-s", type=float, default=2.0)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--sessions-per-worker", type=int, default=8, help="emulated players per event loop")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    if not TRACE_DIR.is_dir():
        print(f"skipped: no traces at {TRACE_DIR}", file=sys.stderr)
        return 0
    abrs = tuple(args.abr.split(","))
    ns = [int(n) for n in args.players.split(",")]
    files = sorted(p for p in TRACE_DIR.iterdir() if p.name != "README.md")[:: max(1, 72 // args.traces)][: args.traces]
    base = open_traces([str(p) for p in files])
    content = open_content("demo", cache_dir=default_cache_dir())
    results: dict[str, Any] = {}
    print(f"demo title ({content.video.segment_count} x {content.video.ladder.segment_duration_s:g} s), "
          f"{len(base)} Pensieve test traces x N bandwidth, join spacing {args.join_spacing_s:g} s, "
          f"emulation at {args.speed:g}x", flush=True)
    header = (f"{'abr':12} {'N':>2} | {'jain sim':>8} {'emu':>6} | {'QoE sim':>8} {'emu':>8} {'gap':>7} | "
              f"{'spread sim':>10} {'emu':>7} | {'instab sim':>10} {'emu':>6} | {'util sim':>8} {'emu':>6}")
    lines = []
    with tempfile.TemporaryDirectory(prefix="bench-fairness-") as tmp:
        for n in ns:
            traces = [widened(t, n) for t in base]
            config = ExperimentConfig(abrs=abrs, modes=("sim", "emulate"), profile=profile("default"), speed=args.speed,
                                      workers=args.workers, sessions_per_worker=args.sessions_per_worker, players_per_link=n,
                                      join_spacing_s=args.join_spacing_s)
            summary = run_experiment(config, content, traces, Path(tmp) / f"n{n}", progress=False,
                                     notify=lambda m: None)
            if summary.failed:
                errors = Counter(str(r.get("error"))[:160] for r in summary.rows if r.get("error"))
                print(f"warning: N={n}: {summary.failed} sessions failed (left out): {dict(errors)}", file=sys.stderr)
            got = figures(list(summary.rows), n, content.video.ladder.segment_duration_s)
            for abr in abrs:
                sim, emu = got.get(("sim", abr)), got.get(("emulate", abr))
                if sim is None or emu is None:
                    continue
                gap = (emu["link_qoe_mean"] - sim["link_qoe_mean"]) / abs(sim["link_qoe_mean"]) * 100
                jain_gap = (emu["link_jain_bitrate"] - sim["link_jain_bitrate"]) / sim["link_jain_bitrate"] * 100
                results[f"{abr}/N={n}"] = {"sim": sim, "emulate": emu, "qoe_gap_pct": gap, "jain_gap_pct": jain_gap,
                                           "wall_s": summary.wall_s}
                lines.append(f"{abr:12} {n:2d} | {sim['link_jain_bitrate']:8.3f} {emu['link_jain_bitrate']:6.3f} | "
                             f"{sim['link_qoe_mean']:8.2f} {emu['link_qoe_mean']:8.2f} {gap:+6.1f}% | "
                             f"{sim['link_qoe_spread']:10.2f} {emu['link_qoe_spread']:7.2f} | "
                             f"{sim['link_instability_mean']:10.3f} {emu['link_instability_mean']:6.3f} | "
                             f"{sim['link_utilisation']:8.3f} {emu['link_utilisation']:6.3f}")
                print(lines[-1], flush=True)
    print()
    print(header)
    print("\n".join(lines))
    print("\nreference: N = 1 rows (one player alone; Jain's index is 1 by definition). gap = (emu - sim) / |sim| "
          "of the mean QoE_lin over the traces' links.")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2, default=float))
    return 0


if __name__ == "__main__":
    sys.exit(main())
