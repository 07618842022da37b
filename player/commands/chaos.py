"""`abrkit chaos SCENARIO`: headless sessions against a stack in processes mode while a real fault plays out."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from player.errors import CliError

if TYPE_CHECKING:
    from player.research.chaos import ChaosConfig, ChaosReport


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    from player.research.chaos import SCENARIOS

    parser = subparsers.add_parser(
        "chaos", help="inject a real fault into a local stack and measure QoE and recovery",
        description="Start the stack (one process per service) on the demo title or --content/--title, play N "
                    "headless sessions through shaped links, inject a fault on a schedule and report per-session "
                    "QoE, rebuffering in the fault window, failover and recovery times, and where every failed "
                    "request is logged. Scenarios: " + "; ".join(f"{s.name}: {s.description}"
                                                                  for s in SCENARIOS.values()) + ".")
    parser.add_argument("scenario", choices=sorted(SCENARIOS), help="the fault to inject")
    parser.add_argument("--sessions", type=int, default=4, help="concurrent sessions (default 4)")
    parser.add_argument("--abr", default="bba", help="ABR algorithm of every session (default bba)")
    parser.add_argument("--trace", help="shape each session's link to this trace (file or synthetic spec; "
                                        "default a constant 3 Mbit/s)")
    parser.add_argument("--rtt-ms", type=float, default=40.0, help="round-trip time of the shaped links")
    parser.add_argument("--speed", type=float, default=1.0, help="run trace time and the clock K times faster")
    parser.add_argument("--fault-at", type=float, default=14.0, metavar="S",
                        help="start the fault S session seconds after the sessions start playing (default 14)")
    parser.add_argument("--fault-s", type=float, help="how long the fault lasts, session seconds "
                                                      "(default: the scenario's)")
    parser.add_argument("--buffer-cap", type=float, default=16.0, metavar="S", help="player buffer cap (default 16)")
    parser.add_argument("--slow-delay", type=float, default=2.0, metavar="S",
                        help="slow-edge: session seconds added before each response's first byte (default 2)")
    parser.add_argument("--edges", type=int, default=2, help="edge caches in the stack (default 2)")
    parser.add_argument("--content", type=Path, help="content root of packaged titles (default: the demo title)")
    parser.add_argument("--title", help="title to play from --content")
    parser.add_argument("--regions", type=Path, metavar="FILE",
                        help="start the stack with these regions (docs/STEERING.md; region-outage default: two "
                             "regions eu and us, two edges each)")
    parser.add_argument("--client-regions", metavar="LIST",
                        help="comma-separated client region of each session, cycled (region-outage default: eu,us; "
                             "the first one's edges die)")
    parser.add_argument("--out", type=Path, help="write chaos.json, session-<i>.jsonl and the service logs here")
    parser.add_argument("--json", action="store_true", help="print the report as JSON instead of a summary")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from abr.registry import make
    from netsim.sources import open_trace
    from player.research.chaos import ChaosConfig

    make(args.abr)  # unknown names fail here, listing the known ones
    if (args.content is None) != (args.title is None):
        raise CliError("--content and --title go together")
    config = ChaosConfig(scenario=args.scenario, sessions=args.sessions, abr=args.abr,
                         trace=open_trace(args.trace) if args.trace else None, rtt_ms=args.rtt_ms, speed=args.speed,
                         fault_at_s=args.fault_at, fault_s=args.fault_s, buffer_cap_s=args.buffer_cap,
                         slow_delay_s=args.slow_delay, client_regions=_client_regions(args))
    report = asyncio.run(_run(args, config))
    if args.json:
        print(json.dumps(report.as_dict(), default=str))
    else:
        from player.research.chaos import summary_lines

        print("\n".join(summary_lines(report)))
        if args.scenario == "region-outage":
            from player.research.chaos_region import region_summary_lines

            print("\n".join(region_summary_lines(report)))
        if args.out is not None:
            print(f"  report: {args.out / 'chaos.json'}, events: {args.out}/session-<i>.jsonl, logs: {args.out}/logs")
    bad = [s for s in report.sessions if s.crashed or s.hung]
    if bad or report.log_problems or "fault_error" in report.service:
        print("chaos: a session crashed or hung, a service logged an unhandled error, or the fault failed",
              file=sys.stderr)
        return 1
    return 0


async def _run(args: argparse.Namespace, config: ChaosConfig) -> ChaosReport:
    from player.research.chaos import ChaosStackConfig, chaos_stack, run_chaos

    if args.content is not None:
        content, title = args.content.expanduser().resolve(), args.title
        if not (content / title / "manifest.mpd").is_file():
            raise CliError(f"no packaged title {title!r} under {content} (missing manifest.mpd)")
    else:
        from server.config import default_cache_dir
        from server.stack import ensure_demo_title

        content = default_cache_dir() / "content"
        title = (await asyncio.to_thread(ensure_demo_title, content)).name
    out = args.out.expanduser().resolve() if args.out is not None else None
    with tempfile.TemporaryDirectory(prefix="abrkit-chaos-") as tmp:
        regions = args.regions.expanduser().resolve() if args.regions is not None else None
        if regions is None and config.scenario == "region-outage":
            from player.research.chaos_region import write_default_regions

            regions = write_default_regions(Path(tmp) / "regions.json")
        stack_config = ChaosStackConfig(content_root=content, work_dir=Path(tmp),
                                        log_dir=(out or Path(tmp)) / "logs", edges=args.edges, regions_path=regions)
        async with chaos_stack(stack_config) as (stack, password):
            return await run_chaos(config, stack, title=title, password=password, out_dir=out)


def _client_regions(args: argparse.Namespace) -> tuple[str, ...]:
    if args.client_regions:
        return tuple(r.strip() for r in args.client_regions.split(",") if r.strip())
    if args.scenario == "region-outage":
        from player.research.chaos_region import DEFAULT_CLIENT_REGIONS

        return DEFAULT_CLIENT_REGIONS
    return ()
