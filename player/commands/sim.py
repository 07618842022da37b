"""`abrkit sim`: run ABR algorithms over traces in the simulator and report QoE (`--live`: live sessions,
with latency, stalls, rate changes and the MMSys 2020 live QoE)."""

from __future__ import annotations

import argparse
import csv
import json
import math
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
    mark_live_only,
    player_settings,
    refuse_live_only,
    require,
)
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
    mark_live_only(parser, add_live_arguments(parser))
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
    refuse_live_only(args)
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


# -- --live: live sessions (player.research.live_sim) -------------------------------------------------------


def add_live_arguments(parser: argparse.ArgumentParser) -> list[argparse.Action]:
    """`--live` and its options; returns the options, which apply only with it (`mark_live_only`)."""
    group = parser.add_argument_group("live (with --live)")
    group.add_argument("--live", action="store_true",
                       help="play the video looped as a live channel: join at the live edge minus the target latency, "
                            "keep latency near it by playback rate, report latency and the MMSys 2020 live QoE")
    return [
        group.add_argument("--target-latency-s", type=float, default=None, metavar="S",
                           help="target latency (default 1.5 s in low-latency mode, 4 s with whole segments)"),
        group.add_argument("--segment-duration-s", type=float, default=2.0, metavar="S",
                           help="the channel's segment duration (default %(default)s; the video's sizes are scaled to it)"),
        group.add_argument("--chunk-duration-s", type=float, default=0.5, metavar="S",
                           help="low-latency CMAF chunk duration, 0 for whole segments (default %(default)s)"),
        group.add_argument("--live-duration-s", type=float, default=300.0, metavar="S",
                           help="channel time each session plays (default %(default)s)"),
        group.add_argument("--min-rate", type=float, default=0.95, help="slowest catch-up rate (default %(default)s)"),
        group.add_argument("--max-rate", type=float, default=1.05, help="fastest catch-up rate (default %(default)s)"),
        group.add_argument("--max-drift-s", type=float, default=6.0, metavar="S",
                           help="seek to the live edge past target + this (default %(default)s; inf: never)"),
        group.add_argument("--catchup", choices=("default", "lolp"), default="default",
                           help="catch-up rule: dash.js default (latency) or LoL+'s hybrid (buffer, then latency)"),
    ]


def run_live(args: argparse.Namespace) -> int:
    from netsim.sources import open_traces
    from player.bundled import ENVIVIO_DIR
    from player.live import LiveConfig
    from player.research.live_sim import LiveSimConfig, format_live_table, run_live_session, summarize
    from player.research.provenance import ProgressLines, provenance
    from player.session import SessionConfig
    from player.video import load_video

    require(args, "abr", "traces")
    abrs = abr_specs(args)
    chunk = args.chunk_duration_s if args.chunk_duration_s > 0 else None
    target = args.target_latency_s if args.target_latency_s is not None else (1.5 if chunk else 4.0)
    try:
        live = LiveConfig(target_latency_s=target, min_rate=args.min_rate, max_rate=args.max_rate,
                          max_drift_s=args.max_drift_s, catchup=args.catchup)
        session = SessionConfig(buffer_cap_s=args.buffer_cap_s if args.buffer_cap_s is not None else 30.0)
        config = LiveSimConfig(live=live, segment_duration_s=args.segment_duration_s, chunk_duration_s=chunk,
                               duration_s=args.live_duration_s, channel_age_s=max(60.0, 2 * target), session=session)
    except ValueError as exc:
        raise CliError(f"live settings: {exc}") from None
    traces = open_traces(args.traces)
    video = load_video(args.video or str(ENVIVIO_DIR))
    if video.audio is not None:
        video = video.folded()
        print("note: live plays one media type: audio bytes are counted with each video segment", file=sys.stderr)
    results = {}
    with ProgressLines(len(abrs) * len(traces), desc="simulating live", unit="session", enabled=not args.quiet) as bar:
        for spec in abrs:
            results[spec] = []
            for trace in traces:
                results[spec].append(run_live_session(spec, video, trace, config))
                bar.update(1)
    summaries = [summarize(results[spec]) for spec in abrs]
    record = provenance(getattr(args, "argv", sys.argv[1:]), video, traces)
    summary = {"live": {"target_latency_s": target, "segment_duration_s": config.segment_duration_s,
                        "chunk_duration_s": chunk, "duration_s": config.duration_s, "min_rate": live.min_rate,
                        "max_rate": live.max_rate, "max_drift_s": live.max_drift_s, "catchup": live.catchup},
               "summaries": [s.as_dict() for s in summaries], "provenance": record}
    if args.out:
        write_live_outputs(args.out, summary, results)
    if args.json:
        print(json.dumps(summary, default=_json_default))
        return 0
    mode = f"low-latency {chunk:g} s chunks" if chunk else "whole segments"
    print(f"live: {video.name} looped as {config.segment_duration_s:g} s segments ({mode}), target latency "
          f"{target:g} s, rate {live.min_rate:g}-{live.max_rate:g}x, {len(traces)} traces, "
          f"{config.duration_s:g} s each; means with 95% CIs")
    print(format_live_table(summaries))
    if args.out:
        print(f"wrote summary.json and sessions.csv to {args.out}")
    return 0


def _json_default(value: object) -> object:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return str(value)


def write_live_outputs(out: Path, summary: dict[str, object], results: dict[str, list]) -> None:  # type: ignore[type-arg]
    out.mkdir(parents=True, exist_ok=True)
    (out / "summary.json").write_text(json.dumps(summary, indent=2, default=_json_default) + "\n")
    fields = ["abr", "trace", "segments", "join_s", "latency_p50_s", "latency_p95_s", "latency_max_s", "drift_mean_s",
              "stalls", "rebuffer_s", "rate_changes", "seeks_to_live", "avg_bitrate_bps", "qoe_live_total",
              "qoe_live_per_segment"]
    with (out / "sessions.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(fields)
        for spec, sessions in results.items():
            for r in sessions:
                s = r.stats
                writer.writerow([spec, r.trace, r.qualities.size, s.join_s, s.latency_p50_s, s.latency_p95_s,
                                 s.latency_max_s, s.drift_mean_s, s.stalls, s.rebuffer_s, s.rate_changes,
                                 s.seeks_to_live, r.avg_bitrate_bps, r.qoe["total"], r.qoe_per_segment])
