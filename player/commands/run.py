"""`abrkit run`: an experiment - ABR algorithms x traces, simulated and/or emulated - with a report."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from netsim.sources import open_traces
from player.commands import (
    abr_specs,
    add_abr_arguments,
    add_clock_sync_arguments,
    add_hls_arguments,
    add_player_arguments,
    clock_sync_config,
    list_abrs_requested,
    load_plugins,
    mark_live_only,
    mark_vod_only,
    player_settings,
    refuse_live_only,
    refuse_vod_only,
    require,
)
from player.errors import CliError
from player.media.modes import DECODE_MODES
from player.research.experiment_live_cli import add_live_arguments, run_live
from player.research.sim import PROFILES, profile

MODE_CHOICES = {"sim": ("sim",), "emulate": ("emulate",), "both": ("sim", "emulate")}


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = subparsers.add_parser(
        "run", help="run an experiment: algorithms x traces, simulated and/or emulated, with an HTML report",
        description="Run every ABR algorithm on every trace in the simulator and/or as real headless sessions "
                    "through the shaper against a local stack, on a process pool or a Dask cluster. Results go to "
                    "OUT/results.jsonl as they finish (a rerun skips finished cells), then results.csv and "
                    "report.html.")
    add_abr_arguments(parser)
    parser.add_argument("--traces", nargs="+", metavar="DIR_OR_FILE",
                        help="trace files, directories, or synthetic specs like step:4e6,1e6@5 (required)")
    parser.add_argument("--video-or-title", metavar="X",
                        help="packaged title directory, Pensieve video_size folder or Sabre JSON (sim only), or 'demo' "
                             "(required)")
    parser.add_argument("--mode", choices=sorted(MODE_CHOICES), default="sim", help="default: %(default)s")
    parser.add_argument("--out", type=Path, help="output folder (reused: finished cells are skipped; required)")
    parser.add_argument("--profile", default="default", choices=sorted(PROFILES),
                        help="download model and player policy (default: %(default)s, the one the shaper matches)")
    parser.add_argument("--speed", type=float, default=1.0, help="emulation clock speed-up K (default 1)")
    parser.add_argument("--workers", type=int, default=0, help="local worker processes (default 0 = one per core)")
    parser.add_argument("--sessions-per-worker", type=int, default=16, metavar="M",
                        help="emulated sessions run at once in each worker task (default %(default)s)")
    parser.add_argument("--dask", metavar="SCHEDULER_ADDRESS", help="run tasks on this Dask cluster instead")
    parser.add_argument("--seed", type=int, help="start each trace at a seeded random offset (default: at 0); with "
                                                 "--live --offsets N: the first seed of the N-1 offsets after the start")
    parser.add_argument("--decode", nargs="?", const="all", default="none", choices=DECODE_MODES,
                        help="decode emulated video (--decode = all; default none)")
    parser.add_argument("--stack-processes", action="store_true", help="serve the title with one process per service")
    parser.add_argument("--players-per-link", type=int, default=1, metavar="N",
                        help="N players share each trace's link (fair-shared bottleneck; fairness figures in the "
                             "output; default 1)")
    parser.add_argument("--join-spacing-s", type=float, default=0.0, metavar="S",
                        help="with --players-per-link: player i joins i*S trace seconds after the first (default 0)")
    parser.add_argument("--timelines", type=int, default=2, metavar="N", help="traces with session timelines in the report")
    parser.add_argument("--quiet", action="store_true", help="no progress lines")
    add_player_arguments(parser)
    live_only = add_live_arguments(parser)
    live_only.append(parser.add_argument("--protocol", choices=("dash", "hls"), default="dash",
                        help="live: the emulated players play the channel's MPD, or its HLS playlists (LL-HLS "
                             "parts when --chunk-s > 0; default %(default)s)"))
    live_only += add_clock_sync_arguments(parser)  # live: the emulated players' clock sync, and so their twins' links
    live_only += add_hls_arguments(parser)
    mark_live_only(parser, live_only)
    # Read by the VOD experiment only: a live run plays its sessions in this process, on the live clock.
    mark_vod_only(parser, ("workers", "dask", "decode", "players_per_link", "join_spacing_s", "timelines", "profile",
                           "buffer_cap_s", "cap_rule", "startup_threshold_s", "rebuffer_resume_s", "initial_quality",
                           "abandon", "response_header_bytes"))
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from player.research.experiment import ExperimentConfig, check_abrs, open_content, run_experiment
    from player.research.experiment_report import sim_emulation_gaps, summaries, write_report
    from player.research.sweep_report import format_table
    from server.config import default_cache_dir

    plugins = load_plugins(args)
    if list_abrs_requested(args):
        return 0
    refuse_live_only(args)
    refuse_vod_only(args)
    if args.live:
        require(args, "abr", "traces", "video_or_title", "out")
        return run_live(args, tuple(abr_specs(args)), MODE_CHOICES[args.mode], clock_sync=clock_sync_config(args))
    require(args, "abr", "traces", "video_or_title", "out")
    abrs = abr_specs(args)
    if args.workers < 0:
        raise CliError("--workers must be >= 0")
    if args.timelines < 0:
        raise CliError("--timelines must be >= 0")
    if args.players_per_link < 1:
        raise CliError("--players-per-link must be >= 1")
    if not args.join_spacing_s >= 0:
        raise CliError("--join-spacing-s must be >= 0")
    config = ExperimentConfig(
        abrs=abrs, modes=MODE_CHOICES[args.mode], profile=profile(args.profile).with_player(**player_settings(args)),
        speed=args.speed, plugins=plugins,
        workers=args.workers or os.cpu_count() or 1, sessions_per_worker=args.sessions_per_worker,
        dask_address=args.dask, seed=args.seed, decode=args.decode, stack_processes=args.stack_processes,
        players_per_link=args.players_per_link, join_spacing_s=args.join_spacing_s,
    )
    check_abrs(config)
    traces = open_traces(args.traces)
    content = open_content(args.video_or_title, cache_dir=default_cache_dir())
    summary = run_experiment(config, content, traces, args.out, progress=not args.quiet)
    meta = {"content": f"{content.name} ({content.video.segment_count} x {content.video.ladder.segment_duration_s:g} s, "
                       f"{len(content.video.ladder)} rungs)",
            "algorithms": ", ".join(abrs), "modes": ", ".join(config.modes), "traces": len(traces),
            "profile": config.profile.name, "emulation speed": f"{config.speed:g}", "decode": config.decode,
            "seed": "none (offset 0)" if config.seed is None else config.seed,
            "executor": f"dask {config.dask_address}" if config.dask_address else f"{config.workers} local processes"}
    files = write_report(list(summary.rows), args.out, meta=meta, abrs=abrs, timeline_traces=args.timelines,
                         seed=config.seed or 0)
    print(f"{content.name}: {summary.ran} sessions run, {summary.skipped} already done, {summary.failed} failed "
          f"({summary.wall_s:.1f} s)")
    for mode, items in summaries(summary.rows).items():
        print(f"\n{mode}")
        print(format_table(items, "lin"))
    if config.players_per_link > 1:
        from player.research.experiment_shared import fairness_summary, format_fairness

        print(f"\n{config.players_per_link} players per link (means over links; QoE {config.profile.qoe.name}):")
        print(format_fairness(fairness_summary(summary.rows)))
    gaps = sim_emulation_gaps(summary.rows, seed=config.seed or 0)
    if gaps:
        print("\nemulate - sim, QoE_lin (paired per trace, 95% bootstrap CI):")
        for g in gaps:
            print(f"  {g.abr}: {g.difference.mean:+.2f} [{g.difference.low:+.2f}, {g.difference.high:+.2f}] "
                  f"({g.relative_pct:+.1f}% of sim {g.base_mean:.2f}, {g.pairs} traces)")
    print(f"\nwrote {', '.join(str(f) for f in files)} and {args.out / 'results.jsonl'}")
    if summary.failed:
        print(f"abrkit run: {summary.failed} sessions failed (see report.html); rerun to retry them", file=sys.stderr)
        return 1
    return 0
