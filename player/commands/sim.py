"""`abrkit sim`: run ABR algorithms over traces in the simulator and report QoE."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from tqdm import tqdm

from abr.qoe import QOE_MODELS
from abr.registry import make, names, parse_spec_list
from netsim.faults import parse_faults
from netsim.sources import open_traces
from player.errors import CliError
from player.research.sim import PROFILES, profile
from player.research.sweep import SweepConfig, run_sweep
from player.research.sweep_report import format_table, to_json, write_outputs
from player.video import load_video


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = subparsers.add_parser("sim", help="simulate ABR algorithms over network traces",
                                   description="Simulate ABR algorithms over network traces and report QoE.")
    parser.add_argument("--abr", required=True, help=f"comma-separated algorithms ({', '.join(names())})")
    parser.add_argument("--traces", required=True, nargs="+", metavar="DIR_OR_FILE",
                        help="trace files, directories, or synthetic specs like step:4e6,1e6@5")
    parser.add_argument("--video", required=True, help="Pensieve video_size folder, Sabre JSON, or packaged title dir")
    parser.add_argument("--profile", default="default", choices=sorted(PROFILES),
                        help="download model: 'pensieve' reproduces Pensieve's test simulator (default: %(default)s)")
    parser.add_argument("--qoe", default="lin", choices=sorted(QOE_MODELS), help="QoE model for the table")
    parser.add_argument("--workers", type=int, default=1, help="worker processes (default 1; 0 = all cores)")
    parser.add_argument("--engine", default="auto", choices=("auto", "batch", "session"),
                        help="batch: vectorised lock-step; session: the state machine one session at a time")
    parser.add_argument("--outage", action="append", default=[], metavar="START_S:DURATION_S",
                        help="the link delivers nothing in this window of each session (link seconds from its "
                        "start, as in 'abrkit shape'; repeatable)")
    parser.add_argument("--loss-burst", action="append", default=[], metavar="START_S:DURATION_S[:RECOVERY_S]",
                        help="lose everything in this window, then stall RECOVERY_S more (default 0.2, a TCP RTO; "
                        "repeatable)")
    parser.add_argument("--no-optimal", dest="optimal", action="store_false", help="skip the offline optimum")
    parser.add_argument("--optimal-grid-s", type=float, default=0.1, help="state-merging grid of the optimum (s)")
    parser.add_argument("--out", type=Path, help="write sessions.csv, segments.jsonl, summary.json and plots here")
    parser.add_argument("--plot-sessions", type=int, default=2, help="timelines to plot per algorithm with --out")
    parser.add_argument("--json", action="store_true", help="print one JSON object on stdout instead of a table")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    abrs = parse_spec_list(args.abr)
    faults = parse_faults(outages=args.outage, loss_bursts=args.loss_burst)
    for spec in abrs:
        make(spec)  # fails early with the list of known names
    traces = open_traces(args.traces)
    video = load_video(args.video)
    for note in video.notes:
        print(f"note: {note}", file=sys.stderr)
    workers = os.cpu_count() or 1 if args.workers == 0 else args.workers
    if args.workers < 0:
        raise CliError("--workers must be >= 0")
    from server.config import default_cache_dir

    config = SweepConfig(
        abrs=abrs, profile=profile(args.profile), qoe=args.qoe, workers=workers,
        engine=args.engine, record_events=False, optimal=args.optimal,
        optimal_grid_s=args.optimal_grid_s, cache_dir=default_cache_dir(), faults=faults,
    )
    total = len(traces) * (len(abrs) + (1 if args.optimal else 0))
    with tqdm(total=total, unit="session", desc="simulating", disable=None, file=sys.stderr, leave=False) as bar:
        result = run_sweep(video, traces, config, progress=bar.update)
    if args.out:
        files = write_outputs(result, args.out, plot_sessions=args.plot_sessions)
    if args.json:
        print(json.dumps(to_json(result)))
        return 0
    print(f"video {video.name} ({video.segment_count} x {video.ladder.segment_duration_s:g} s, "
          f"{len(video.ladder)} rungs), {len(traces)} traces, profile {args.profile}"
          + (f", {len(faults)} link faults" if faults else ""))
    print(format_table(result.summaries(), args.qoe))
    if result.optimal:
        mean = sum(result.optimal.values()) / len(result.optimal)
        print(f"offline optimal: mean qoe_{args.qoe} {mean:.2f} (grid {args.optimal_grid_s:g} s)")
    if args.out:
        print(f"wrote {len(files)} files to {args.out}")
    return 0
