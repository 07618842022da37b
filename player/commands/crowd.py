"""`abrkit crowd`: a release-night flash crowd against a local stack, with the figures an operator asks for."""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
from pathlib import Path

from player.errors import CliError


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = subparsers.add_parser(
        "crowd", help="start K sessions of a new title within T seconds and measure what the service does",
        description="Start the stack (one process per service), play M sessions of one title, then let K sessions "
                    "of a new title (cold at the edges) press play within T seconds, at a time-warp of --speed. "
                    "Sessions are headless players without decoding on modeled access links. Reports start-up "
                    "p50/p95, service latency per bootstrap step, origin requests per media segment (coalescing), "
                    "the edges' hit ratio, gateway shedding (429/503) and the QoE of the M playing sessions "
                    "against a quiet baseline run. See docs/FLEET.md.")
    parser.add_argument("--sessions", type=int, default=1000, help="K: sessions in the crowd (default 1000)")
    parser.add_argument("--within-s", type=float, default=60.0, help="T: the crowd arrives within T session seconds")
    parser.add_argument("--arrival", choices=("uniform", "poisson"), default="uniform",
                        help="evenly spaced arrivals, or a Poisson process (default uniform)")
    parser.add_argument("--speed", type=float, default=10.0, help="time-warp: session time runs K times wall time")
    parser.add_argument("--title", default="demo",
                        help="the new title: a title under --content, or 'demo' (packaged on first use)")
    parser.add_argument("--content", type=Path, help="content root of packaged titles (default: the demo's)")
    parser.add_argument("--playing-title", help="title the playing sessions watch (default: a copy of --title)")
    parser.add_argument("--playing", type=int, default=20, help="M: sessions already playing (default 20)")
    parser.add_argument("--lead-s", type=float, default=20.0, help="the crowd comes this long after the first playing "
                                                                   "session (session seconds, default 20)")
    parser.add_argument("--watch-s", type=float, help="crowd sessions leave after this much media (default: all)")
    parser.add_argument("--abr", default="bba", help="ABR algorithm of every session (default bba)")
    parser.add_argument("--traces", nargs="+", metavar="DIR_OR_FILE",
                        help="access links, assigned in turn at seeded offsets (files, folders or synthetic specs; "
                             "default a seeded random walk per session around --link-mbps)")
    parser.add_argument("--link-mbps", type=float, default=4.0, help="mean of the default random-walk links")
    parser.add_argument("--rtt-ms", type=float, default=40.0, help="round-trip time of every access link")
    parser.add_argument("--buffer-cap", type=float, default=30.0, metavar="S", help="player buffer cap (default 30)")
    parser.add_argument("--login", choices=("device", "each"), default="device",
                        help="device: viewers signed in before the crowd (default); each: every session logs in")
    parser.add_argument("--sessions-per-account", type=int, default=10, help="crowd sessions per account (default 10)")
    parser.add_argument("--workers", type=int, default=2, help="crowd processes (0: this process; default 2)")
    parser.add_argument("--dask", metavar="SCHEDULER_ADDRESS", help="run the crowd on this Dask cluster instead")
    parser.add_argument("--sessions-per-task", type=int, default=250,
                        help="with --dask: crowd sessions per task (default 250; locally, one task per worker)")
    parser.add_argument("--edges", type=int, default=2, help="edge caches in the stack (default 2)")
    parser.add_argument("--host", default="127.0.0.1",
                        help="address the stack listens on: one the --dask workers can reach (default 127.0.0.1)")
    parser.add_argument("--cache-mb", type=float, default=256.0, help="cache bound per edge, MiB (default 256)")
    parser.add_argument("--no-baseline", action="store_true", help="skip the quiet run of the playing sessions")
    parser.add_argument("--seed", type=int, default=0, help="links and Poisson arrivals (default 0)")
    parser.add_argument("--out", type=Path, default=Path("crowd-run"),
                        help="write crowd.json (figures and every session) and the service logs here "
                             "(default ./crowd-run)")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON instead of a summary")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from abr.registry import make
    from netsim.sources import open_traces
    from player.research.crowd import CrowdConfig, CrowdSetup, run_crowd_stack, summary_lines

    make(args.abr)  # unknown names fail here, listing the known ones
    config = CrowdConfig(
        sessions=args.sessions, within_s=args.within_s, arrival=args.arrival, speed=args.speed, playing=args.playing,
        lead_s=args.lead_s, watch_s=args.watch_s, abr=args.abr, traces=tuple(open_traces(args.traces or [])),
        link_mean_bps=args.link_mbps * 1e6, rtt_ms=args.rtt_ms, buffer_cap_s=args.buffer_cap, login=args.login,
        sessions_per_account=args.sessions_per_account, workers=args.workers, dask_address=args.dask,
        sessions_per_task=args.sessions_per_task, baseline=not args.no_baseline, seed=args.seed)
    if args.edges < 1 or not args.cache_mb > 0:
        raise CliError("--edges must be >= 1 and --cache-mb > 0")
    release_dir, catalogue_dir = _titles(args)
    out = args.out.expanduser().resolve()
    if out.exists() and not out.is_dir():
        raise CliError(f"{out}: exists and is not a directory")
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="abrkit-crowd-") as tmp:
        work = Path(tmp)
        setup = CrowdSetup(release_dir=release_dir, catalogue_dir=catalogue_dir, work_dir=work, edges=args.edges,
                           edge_cache_bytes=int(args.cache_mb * 1024 * 1024), host=args.host)
        report = asyncio.run(run_crowd_stack(config, setup))
        logs = out / "logs"
        logs.mkdir(exist_ok=True)
        for log in (work / "logs").glob("*.log"):
            log.replace(logs / log.name)
    (out / "crowd.json").write_text(json.dumps(report.as_dict(), indent=1, default=str) + "\n")
    if args.json:
        print(json.dumps(report.figures, default=str))
    else:
        print("\n".join(summary_lines(report)))
        print(f"  report: {out / 'crowd.json'}, service logs: {logs}")
    return 0


def _titles(args: argparse.Namespace) -> tuple[Path, Path | None]:
    """The packaged directories of the release and of the playing sessions' title."""
    if args.content is None:
        if args.title != "demo" or args.playing_title:
            raise CliError("--title and --playing-title name titles under --content (without it: --title demo)")
        from server.config import default_cache_dir
        from server.stack import ensure_demo_title

        return ensure_demo_title(default_cache_dir() / "content"), None
    content = args.content.expanduser().resolve()
    release = content / args.title
    if not (release / "manifest.mpd").is_file():
        raise CliError(f"no packaged title {args.title!r} under {content} (missing manifest.mpd)")
    if args.playing_title is None:
        return release, None
    catalogue = content / args.playing_title
    if args.playing_title == args.title or not (catalogue / "manifest.mpd").is_file():
        raise CliError(f"--playing-title must be another packaged title under {content}")
    return release, catalogue
