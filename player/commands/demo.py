"""`abrkit demo`: the first thing a new user runs (`make demo`).

Starts an embedded stack with the bundled demo title (packaged on first use, then cached) and plays
it over a link shaped by a bundled Norway HSDPA trace: in a window when a display exists, else
headless with a QoE summary. `--sim` instead runs the simulation demo: four algorithms over the
bundled traces on Pensieve's Envivio video, with the offline optimum for scale.
"""

from __future__ import annotations

import argparse
import asyncio
import sys

from netsim.formats import load_trace, load_traces
from player.bundled import ENVIVIO_DIR, TRACES_DIR
from player.research.sim import profile
from player.research.sweep import SweepConfig, run_sweep
from player.research.sweep_report import format_table
from player.video import load_video

DEMO_ABRS = ("bba", "rate", "bola", "mpc-robust")
DEMO_TRACE = "norway_bus_1"


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = subparsers.add_parser("demo", help="play the demo title (window, or headless with a QoE summary)")
    parser.add_argument("--sim", action="store_true", help="run the simulation demo instead")
    parser.add_argument("--headless", action="store_true", help="no window even if a display exists")
    parser.add_argument("--abr", default="dynamic", help="ABR algorithm (default dynamic, as dash.js plays)")
    parser.add_argument("--speed", type=float, help="clock speed-up (default 1 in a window, 4 headless)")
    parser.add_argument("--exit-after", type=float, help="window: quit after this many seconds")
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
    if args.sim:
        return run_sim_demo()
    from player.client.harness import DemoTarget, LinkConfig, headless_session
    from player.client.headless import PlayerConfig, print_report
    from player.desktop import DesktopUnavailable, display_available

    trace = load_trace(TRACES_DIR / DEMO_TRACE)
    windowed = not args.headless and display_available()
    speed = args.speed or (1.0 if windowed else 4.0)
    config = PlayerConfig(abr=args.abr, speed=speed)
    link = LinkConfig(trace=trace)
    print(f"abrkit demo: the demo title over a link shaped by {DEMO_TRACE} (Norway HSDPA bus), ABR {args.abr}; "
          "the first run packages the demo clip (a few minutes), later runs reuse it.", file=sys.stderr, flush=True)
    if windowed:
        from player.desktop.app import run_desktop

        try:
            return run_desktop(DemoTarget(), config, link, exit_after_s=args.exit_after, screenshot=None)
        except DesktopUnavailable as exc:
            print(f"abrkit demo: {exc}; playing headless instead", file=sys.stderr)
            config = PlayerConfig(abr=args.abr, speed=args.speed or 4.0)
    report = asyncio.run(headless_session(DemoTarget(), config, link, None))
    print_report(report, as_json=False)
    return 0 if report.error is None else 1
