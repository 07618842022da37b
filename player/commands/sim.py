"""`abrkit sim`: run ABR algorithms over traces in the simulator and report QoE."""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import replace
from pathlib import Path

from abr.qoe import QOE_CONFIGS, QoeConfig, parse_qoe_weights, qoe_config, qoe_config_from_mapping
from player.commands import (
    abr_specs,
    add_abr_arguments,
    add_player_arguments,
    list_abrs_requested,
    load_plugins,
    player_settings,
    require,
)
from player.commands.sim_live import add_live_arguments, run_live
from player.errors import CliError
from player.research.sim import PROFILES, SimProfile, profile


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = subparsers.add_parser("sim", help="simulate ABR algorithms over network traces",
                                   description="Simulate ABR algorithms over network traces and report QoE.")
    add_abr_arguments(parser)
    parser.add_argument("--traces", nargs="+", metavar="DIR_OR_FILE",
                        help="trace files, directories, or synthetic specs like step:4e6,1e6@5 (required)")
    parser.add_argument("--video", help="Pensieve video_size folder, Sabre JSON, or packaged title dir (required)")
    parser.add_argument("--profile", default="default", choices=sorted(PROFILES),
                        help="download model and player: 'pensieve' reproduces Pensieve's test simulator, 'sabre' "
                             "Sabre's player and metrics (default: %(default)s)")
    qoe = parser.add_argument_group("QoE")
    qoe.add_argument("--qoe", choices=sorted(QOE_CONFIGS),
                     help="QoE of the table and of what MPC optimises (default lin; 'quality' scores the video's "
                          "per-segment quality, 'ssim' is Puffer's SSIM-dB objective)")
    qoe.add_argument("--qoe-weights", metavar="K=V,...",
                     help="change the QoE's weights: rebuffer (per stalled s; default the top rung's utility, 4.3 on "
                          "Pensieve's ladder), switch (per unit of change), startup (per s of startup)")
    qoe.add_argument("--qoe-config", type=Path, metavar="FILE",
                     help='a QoE as JSON: {"name": ..., "utility": "lin|log|hd|quality", "rebuffer": ..., '
                          '"switch": ..., "startup": ..., "quality_metric": ...}')
    parser.add_argument("--workers", type=int, default=1, help="worker processes (default 1; 0 = all cores)")
    parser.add_argument("--engine", default="auto", choices=("auto", "batch", "session"),
                        help="batch: vectorised lock-step; session: the state machine one session at a time")
    parser.add_argument("--outage", action="append", default=[], metavar="START_S:DURATION_S",
                        help="the link delivers nothing in this window of each session (link seconds from its "
                        "start, as in 'abrkit shape'; repeatable)")
    parser.add_argument("--loss-burst", action="append", default=[], metavar="START_S:DURATION_S[:RECOVERY_S]",
                        help="lose everything in this window, then stall RECOVERY_S more (default 0.2, a TCP RTO; "
                        "repeatable)")
    stats = parser.add_argument_group("sessions and statistics")
    stats.add_argument("--baseline", metavar="SPEC",
                       help="compare every algorithm with this one, session by session: mean difference with a "
                            "bootstrap 95%% CI and wins/ties/losses (added to --abr if missing)")
    stats.add_argument("--offsets", type=int, default=0, metavar="N",
                       help="N random start offsets per trace (seeded by --seed; default 0: each trace from its start)")
    stats.add_argument("--seed", type=int, default=0, help="seed of the offsets and the bootstrap (default 0)")
    optimum = stats.add_mutually_exclusive_group()
    optimum.add_argument("--optimal", dest="optimal", action="store_true", default=None,
                         help="compute the offline optimum where it is not cached (its estimated cost is printed first)")
    optimum.add_argument("--no-optimal", dest="optimal", action="store_false",
                         help="no offline optimum, not even cached (default: cached results only)")
    stats.add_argument("--optimal-grid-s", type=float, default=0.1, help="state-merging grid of the optimum (s)")
    add_player_arguments(parser)
    parser.add_argument("--out", type=Path,
                        help="write sessions.csv, per_trace.csv, segments.jsonl, summary.json and plots here")
    parser.add_argument("--plot-sessions", type=int, default=2, help="timelines to plot per algorithm with --out")
    parser.add_argument("--json", action="store_true", help="print one JSON object on stdout instead of a table")
    parser.add_argument("--quiet", action="store_true", help="no progress lines")
    add_live_arguments(parser)
    parser.set_defaults(func=run)


def configured_qoe(args: argparse.Namespace) -> QoeConfig | None:
    """The QoE from --qoe, --qoe-config and --qoe-weights (None: the profile's)."""
    if args.qoe is not None and args.qoe_config is not None:
        raise CliError("give --qoe or --qoe-config, not both")
    config = qoe_config(args.qoe) if args.qoe is not None else None
    if args.qoe_config is not None:
        try:
            data = json.loads(args.qoe_config.read_text())
        except json.JSONDecodeError as exc:
            raise CliError(f"{args.qoe_config}: not valid JSON ({exc})") from None
        config = qoe_config_from_mapping(data, str(args.qoe_config))
    if args.qoe_weights is not None:
        base = config or QOE_CONFIGS["lin"]
        config = base.with_weights(parse_qoe_weights(args.qoe_weights),
                                   name=base.name if args.qoe_config is not None else None)
    return config


def simulation_profile(args: argparse.Namespace) -> SimProfile:
    """--profile with the player settings and the QoE the command line gives."""
    prof = profile(args.profile).with_player(**player_settings(args))
    qoe = configured_qoe(args)
    return prof.with_qoe(qoe) if qoe is not None else prof


def run(args: argparse.Namespace) -> int:
    from netsim.faults import parse_faults
    from netsim.sources import open_traces
    from player.research.provenance import ProgressLines, format_duration, provenance
    from player.research.sweep import SweepConfig, optimal_cost, plan_starts, run_sweep
    from player.research.sweep_report import (
        format_comparisons,
        format_sabre_table,
        format_table,
        to_json,
        write_outputs,
    )
    from player.video import load_video
    from server.config import default_cache_dir

    plugins = load_plugins(args)
    if list_abrs_requested(args):
        return 0
    if args.live:
        return run_live(args)
    require(args, "abr", "traces", "video")
    abrs = abr_specs(args)
    if args.baseline is not None:
        (baseline,) = abr_specs(argparse.Namespace(abr=[args.baseline]))
        if baseline not in abrs:
            abrs = (baseline, *abrs)
            print(f"note: baseline {baseline} added to the algorithms", file=sys.stderr)
    if args.workers < 0:
        raise CliError("--workers must be >= 0")
    faults = parse_faults(outages=args.outage, loss_bursts=args.loss_burst)
    prof = simulation_profile(args)
    traces = open_traces(args.traces)
    video = load_video(args.video)
    for note in video.notes:
        print(f"note: {note}", file=sys.stderr)
    prof.qoe_models(video)  # a quality-aware QoE on a video without quality fails here, saying so
    workers = (os.cpu_count() or 1) if args.workers == 0 else args.workers
    config = SweepConfig(
        abrs=abrs, profile=prof, workers=workers, engine=args.engine, optimal=args.optimal is not False,
        optimal_cached_only=args.optimal is None, optimal_grid_s=args.optimal_grid_s, cache_dir=default_cache_dir(),
        faults=faults, offsets=args.offsets, seed=args.seed, baseline=args.baseline and baseline, plugins=plugins,
    )
    starts = plan_starts(traces, config.offsets, config.seed)
    note = ""
    if args.optimal is not False:
        cost = optimal_cost(video, starts, config, budget_s=1.0)
        wall = cost.wall_s(workers)
        estimate = (f"about {format_duration(cost.cpu_s)} CPU, {format_duration(wall)} on {workers} worker(s); "
                    f"{cost.measured}")
        if cost.missing == 0:
            note = f"offline optimum: all {cost.cached} sessions cached"
        elif args.optimal:
            print(f"offline optimum: computing {cost.missing} sessions ({cost.cached} cached), {estimate}",
                  file=sys.stderr)
            config = replace(config, optimal_cached_only=False)
            note = f"offline optimum: computed {cost.missing} sessions ({cost.cached} cached)"
        else:
            note = (f"offline optimum: skipped, {cost.missing} of {len(starts)} sessions not cached ({estimate}); "
                    "--optimal computes and caches it")
        if not args.json:
            print(note, file=sys.stderr)
    total = len(starts) * len(abrs) + (len(starts) if config.optimal and not config.optimal_cached_only else 0)
    with ProgressLines(total, desc="simulating", unit="session", enabled=not args.quiet) as bar:
        result = run_sweep(video, traces, config, progress=bar.update)
    result = replace(result, optimal_note=note)
    record = provenance(getattr(args, "argv", sys.argv[1:]), video, traces)
    if args.out:
        files = write_outputs(result, args.out, plot_sessions=args.plot_sessions, provenance=record)
    if args.json:
        print(json.dumps(to_json(result, record)))
        return 0
    offsets = f", {args.offsets} start offsets each (seed {args.seed})" if args.offsets else ""
    print(f"video {video.name} ({video.segment_count} x {video.ladder.segment_duration_s:g} s, "
          f"{len(video.ladder)} rungs), {len(traces)} traces{offsets}, profile {prof.name}"
          + (f", {len(faults)} link faults" if faults else ""))
    if prof.sabre_gamma_p is not None:
        print(format_sabre_table(result))
        print()
    print(format_table(result.summaries(), config.table_qoe))
    comparisons = result.comparisons()
    if comparisons:
        print(format_comparisons(comparisons, config.table_qoe))
    if result.optimal:
        mean = sum(result.optimal.values()) / len(result.optimal)
        print(f"offline optimal: mean qoe_{config.table_qoe} {mean:.2f} (grid {args.optimal_grid_s:g} s)")
    if args.out:
        print(f"wrote {len(files)} files to {args.out}")
    return 0

