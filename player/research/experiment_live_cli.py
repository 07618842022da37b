"""The `--live` half of `abrkit run` (player/commands/run.py): live algorithms in simulation and emulation, paired per trace (latency,
stalls, the MMSys 2020 live QoE with CIs, and the sim-vs-emulation gap); player/research/experiment_live.py."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from netsim.sources import open_traces
from player.clocksync import ClockSyncConfig
from player.errors import CliError


def add_live_arguments(parser: argparse.ArgumentParser) -> list[argparse.Action]:
    """`--live` and its options; returns the options, which apply only with it."""
    group = parser.add_argument_group("live (with --live)")
    group.add_argument("--live", action="store_true",
                       help="compare live algorithms: the title looped as the stack's live channel (emulation, clock "
                            "at --speed) and in the simulator, same traces; latency, stalls, live QoE and the gap")
    return [
        group.add_argument("--live-duration-s", type=float, default=60.0, metavar="S",
                           help="channel seconds played after the join (default %(default)s)"),
        group.add_argument("--chunk-s", type=float, default=0.5, metavar="S",
                           help="low-latency CMAF chunk duration; 0: whole segments (default %(default)s)"),
        group.add_argument("--target-latency-s", type=float, metavar="S",
                           help="target latency (default: the channel's, 3 chunks + 0.5 s, or 2 segments)"),
        group.add_argument("--offsets", type=int, default=1, metavar="N",
                           help="play each trace from N start offsets, each a session: its start, then N-1 drawn "
                                "with seeds S, S+1, ... of --seed S (default 0); the gaps' CIs are over traces, a "
                                "trace's sessions averaged (default %(default)s; --seed alone: each trace once, from "
                                "the offset its seed draws)"),
        group.add_argument("--exclude-core-waits", action="store_true",
                           help="also leave each player loop's wait for a core (as Linux measures it) out of its "
                                "clock: for runs on a loaded machine (docs/LIVE-EMULATION.md, \"The loop's wait for "
                                "a core\")"),
    ]


def run_live(args: argparse.Namespace, abrs: tuple[str, ...], modes: tuple[str, ...], *,
             clock_sync: ClockSyncConfig | None = None) -> int:
    """`abrkit run --live` once the command has checked the required options (`clock_sync`: the
    players' schedule from player/commands/__init__.py's switches; the protocol and LL-HLS parts
    switches are read from `args` where the command has them)."""
    from player.research.experiment_live import (
        LiveRunConfig,
        channel_content,
        format_live_run,
        run_live_comparison,
        write_live_run,
    )
    from player.research.experiment_live_gaps import offset_traces
    from player.research.provenance import ProgressLines

    try:
        config = LiveRunConfig(
            abrs=abrs, modes=modes, duration_s=args.live_duration_s, speed=args.speed,
            low_latency=args.chunk_s > 0, chunk_s=args.chunk_s if args.chunk_s > 0 else 0.5,
            target_latency_s=args.target_latency_s, rtt_ms=args.rtt_ms if args.rtt_ms is not None else 80.0,
            concurrency=args.sessions_per_worker, stack_processes=args.stack_processes,
            clock_sync=clock_sync or ClockSyncConfig(), protocol=getattr(args, "protocol", "dash"),
            play_parts=getattr(args, "hls_low_latency_mode", True), exclude_core_waits=args.exclude_core_waits)
    except ValueError as exc:
        raise CliError(f"live run settings: {exc}") from None
    if args.offsets < 1:
        raise CliError(f"--offsets must be >= 1, got {args.offsets}")
    title_dir = _title_dir(args.video_or_title)
    content = channel_content(title_dir, low_latency=config.low_latency, chunk_s=config.chunk_s,
                              protocol=config.protocol)
    traces = offset_traces(open_traces(args.traces), args.offsets, args.seed)
    total = len(traces) * len(config.abrs) * len(config.modes)
    with ProgressLines(total, unit="session", desc="live run", enabled=not args.quiet) as bar:
        rows = run_live_comparison(config, content, traces, tick=lambda row: bar.update(1), out_dir=args.out,
                                   notify=lambda text: print(text, file=sys.stderr))
    meta = {"title": title_dir.name, "segment_duration_s": content.segment_duration_s,
            "loop_segments": content.video.segment_count, "ladder_bps": list(content.video.ladder.bitrates_bps),
            "algorithms": list(config.abrs), "modes": list(config.modes), "traces": len(traces),
            "duration_s": config.duration_s, "speed": config.speed, "low_latency": config.low_latency,
            "chunk_s": config.chunk_s if config.low_latency else None, "target_latency_s": config.target_latency_s,
            "rtt_ms": config.rtt_ms, "concurrency": config.concurrency, "protocol": config.protocol,
            "play_parts": config.play_parts, "offsets": args.offsets, "seed": args.seed,
            "exclude_core_waits": config.exclude_core_waits}
    files = write_live_run(rows, args.out, meta=meta)
    played = f"{len(traces)} sessions of {len(traces) // args.offsets} traces" if args.offsets > 1 else f"{len(traces)} traces"
    print(f"live: {title_dir.name} as a channel ({content.segment_duration_s:g} s segments, "
          f"{'%g s chunks' % config.chunk_s if config.low_latency else 'whole segments'}), {played}, "
          f"{config.duration_s:g} s each, emulation at {config.speed:g}x over {config.protocol.upper()}"
          f"{' (LL-HLS parts off)' if config.protocol == 'hls' and not config.play_parts else ''}")
    print(format_live_run(rows))
    print(f"\nwrote {', '.join(str(f) for f in files)}")
    failed = [r for r in rows if r.get("error")]
    if failed:
        print(f"abrkit run --live: {len(failed)} sessions failed (first: {failed[0]['error']})", file=sys.stderr)
        return 1
    return 0


def _title_dir(spec: str) -> Path:
    if spec == "demo":
        from server.config import default_cache_dir
        from server.stack import ensure_demo_title

        return ensure_demo_title(default_cache_dir() / "content")
    path = Path(spec)
    return path.parent if path.name == "segments.json" else path
