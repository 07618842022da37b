"""`abrkit sim --live`: live sessions in the simulator, reporting latency, stalls, rate changes and live QoE."""

from __future__ import annotations

import argparse
import csv
import json
import math
import sys
from pathlib import Path

from player.errors import CliError


def add_live_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("live (with --live)")
    group.add_argument("--live", action="store_true",
                       help="play the video looped as a live channel: join at the live edge minus the target latency, "
                            "keep latency near it by playback rate, report latency and the MMSys 2020 live QoE")
    group.add_argument("--target-latency-s", type=float, default=None, metavar="S",
                       help="target latency (default 1.5 s in low-latency mode, 4 s with whole segments)")
    group.add_argument("--segment-duration-s", type=float, default=2.0, metavar="S",
                       help="the channel's segment duration (default %(default)s; the video's sizes are scaled to it)")
    group.add_argument("--chunk-duration-s", type=float, default=0.5, metavar="S",
                       help="low-latency CMAF chunk duration, 0 for whole segments (default %(default)s)")
    group.add_argument("--live-duration-s", type=float, default=300.0, metavar="S",
                       help="channel time each session plays (default %(default)s)")
    group.add_argument("--min-rate", type=float, default=0.95, help="slowest catch-up rate (default %(default)s)")
    group.add_argument("--max-rate", type=float, default=1.05, help="fastest catch-up rate (default %(default)s)")
    group.add_argument("--max-drift-s", type=float, default=6.0, metavar="S",
                       help="seek to the live edge past target + this (default %(default)s; inf: never)")
    group.add_argument("--catchup", choices=("default", "lolp"), default="default",
                       help="catch-up rule: dash.js default (latency) or LoL+'s hybrid (buffer, then latency)")


def run_live(args: argparse.Namespace) -> int:
    from netsim.sources import open_traces
    from player.bundled import ENVIVIO_DIR
    from player.commands import abr_specs, require
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
