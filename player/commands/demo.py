"""`abrkit demo`: the first thing a new user runs.

`--sim` runs the bundled simulation demo: four algorithms over four bundled Norway HSDPA traces on
Pensieve's Envivio video, with the offline optimum for scale.
"""

from __future__ import annotations

import argparse

from netsim.formats import load_traces
from player.bundled import ENVIVIO_DIR, TRACES_DIR
from player.report import format_table
from player.sim import profile
from player.sweep import SweepConfig, run_sweep
from player.video import load_video

DEMO_ABRS = ("bba", "rate", "bola", "mpc-robust")


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = subparsers.add_parser("demo", help="run the demo (simulation of bundled traces)")
    parser.add_argument("--sim", action="store_true", help="simulation demo on bundled traces (the default for now)")
    parser.set_defaults(func=run)


def run_sim_demo() -> int:
    traces = load_traces([TRACES_DIR])
    video = load_video(ENVIVIO_DIR)
    config = SweepConfig(abrs=DEMO_ABRS, profile=profile("pensieve"), optimal=True, optimal_grid_s=0.25)
    result = run_sweep(video, traces, config)
    print(f"Simulated {len(DEMO_ABRS)} ABR algorithms on {len(traces)} Norway HSDPA traces "
          f"({', '.join(t.name for t in traces)}), Pensieve's Envivio video, profile 'pensieve'.")
    print(format_table(result.summaries(), "lin"))
    print("Try: abrkit sim --abr bba,mpc-robust --traces <dir> --video <dir> --profile pensieve --out out/")
    return 0


def run(args: argparse.Namespace) -> int:
    return run_sim_demo()
