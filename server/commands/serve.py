"""`abrkit serve`: run the whole server stack (origin, edges, auth, playback, license, gateway)."""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
from pathlib import Path
from typing import Any

from server.commands import CommandError


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = subparsers.add_parser(
        "serve", help="run the streaming server stack",
        description="Start the origin, N edge caches, auth, the playback API, the license service and the gateway. "
                    "With no arguments: the demo title (packaged on first use) and a demo user. "
                    "Prints the URLs, then a line starting with 'ready'. Ctrl-C stops it gracefully.")
    parser.add_argument("--content", type=Path, help="content root of packaged titles (default: the demo title)")
    parser.add_argument("--config", type=Path,
                        help="stack file (default: $ABRKIT_CONFIG_DIR or ~/.config/abrkit/stack.json; created "
                             "with a demo user on first run)")
    parser.add_argument("--edges", type=int, help="number of edge caches (default 2)")
    parser.add_argument("--processes", action="store_true", default=None,
                        help="one OS process per service (an edge can then be killed on its own)")
    parser.add_argument("--host", help="bind address (default 127.0.0.1)")
    parser.add_argument("--port", type=int, help="gateway port (default 8000; 0 = any free port)")
    parser.add_argument("--allow-origin", action="append", dest="allowed_origins", metavar="ORIGIN",
                        help="browser origin allowed by CORS, e.g. http://localhost:3000, the origin of a page "
                             "playing in dash.js or Shaka (repeatable; '*' = any origin, but never with credentials, "
                             "which dash.js needs for the license)")
    parser.add_argument("--regions", type=Path, metavar="FILE",
                        help="regions, their edges (RTT to each client region, capacity, ISP) and client networks: "
                             "steering ranks edges by locality, health, load and title (docs/STEERING.md)")
    parser.add_argument("--no-access-log", action="store_true", help="do not write the JSON access log")
    parser.add_argument("--log-console", action="store_true",
                        help="print the JSON access and audit logs on the console (default: files in the logs/ "
                             "folder beside the stack file, named in the output)")
    live = parser.add_argument_group("live", "a live channel looping a packaged title on the wall clock (docs/LIVE-SERVER.md)")
    live.add_argument("--live", action="store_true", help="also publish the live channel (default title: the demo "
                      "title, or the content root's only title)")
    live.add_argument("--live-title", metavar="T", help="the packaged title the live channel loops (implies --live)")
    live.add_argument("--live-channel", metavar="NAME", help="the channel's name in URLs (default 'live')")
    live.add_argument("--low-latency", action="store_true",
                      help="publish segments as CMAF chunks over chunked transfer (implies --live)")
    live.add_argument("--chunk-s", type=float, help="chunk duration at low latency (default 0.5 s)")
    live.add_argument("--speed", type=float, metavar="K",
                      help="run the live channel's clock (and every edge's /time) K times faster, for players at "
                           "`abrkit play live --speed K` (default 1: the wall clock)")
    parser.set_defaults(func=run)


def _stack_config(args: argparse.Namespace) -> tuple[object, bool]:
    """(StackConfig, whether it is the default demo setup)."""
    from server.config import (
        StackConfig,
        default_cache_dir,
        default_config_path,
        save_stack_config,
        stack_config_from_json,
        with_overrides,
    )

    path = (args.config or default_config_path()).expanduser().resolve()
    demo_content = (default_cache_dir() / "content").resolve()
    content = args.content.expanduser().resolve() if args.content else None
    if path.exists():
        data = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(data, dict):
            raise CommandError(f"{path}: expected a JSON object")
        needs_save = "content_root" not in data
        if needs_save:  # a users-only file from `abrkit user add`: complete it
            data["content_root"] = str(content or demo_content)
        config = stack_config_from_json(data, path)
        if needs_save:
            save_stack_config(config)
    else:
        if args.config is not None and content is None:
            raise CommandError(f"no stack file at {path}: pass --content DIR to create one")
        config = StackConfig(config_path=path, content_root=content or demo_content)
        save_stack_config(config)
    config = with_overrides(config, content_root=content, edges=args.edges, processes=args.processes,
                            host=args.host, port=args.port,
                            allowed_origins=tuple(args.allowed_origins) if args.allowed_origins else None,
                            access_log=False if args.no_access_log else None,
                            regions_path=args.regions.expanduser().resolve() if args.regions else None)
    is_demo = args.config is None and config.content_root.resolve() == demo_content
    return with_overrides(config, **_live_overrides(args, config, is_demo)), is_demo


def _live_overrides(args: argparse.Namespace, config: Any, is_demo: bool) -> dict[str, object]:
    """The stack settings of the live flags (none when no live flag is given)."""
    from server.content import list_titles

    wanted = (args.live or args.live_title or args.low_latency or args.live_channel or args.chunk_s
              or args.speed is not None)
    if not wanted:
        return {}
    title = args.live_title or config.live_title
    if title is None:
        titles = list_titles(config.content_root)
        if is_demo:
            from server.packager import DEMO_TITLE
            title = DEMO_TITLE
        elif len(titles) == 1:
            title = titles[0]
        else:
            raise CommandError(f"--live needs --live-title: {config.content_root} holds "
                               f"{len(titles)} titles ({', '.join(titles[:5]) or 'none'})")
    return {"live_title": title, "live_channel": args.live_channel, "low_latency": args.low_latency or None,
            "live_chunk_s": args.chunk_s, "live_speed": args.speed}


def run(args: argparse.Namespace) -> int:
    from server.stack import configure_stack_logging, ensure_demo_user

    config, is_demo = _stack_config(args)
    log_dir = configure_stack_logging(config, console=args.log_console)
    credentials = None
    if is_demo:
        from server.packager import ensure_demo_title
        print("abrkit serve: preparing the demo title (packaged once, then cached)...", file=sys.stderr, flush=True)
        ensure_demo_title(config.content_root, progress=sys.stderr.isatty())
        credentials = ensure_demo_user(config)
    if not config.content_root.is_dir():
        raise CommandError(f"content root {config.content_root} does not exist")
    from server.stack import with_regions
    config = with_regions(config)  # a bad regions file is a one-line error naming the field, before anything starts
    if config.live_title is not None:  # a title that cannot loop fails here, in one line, not in a service
        from server.live.channel import LiveChannel
        from server.stack import live_config
        LiveChannel(live_config(config), config.content_root)  # type: ignore[arg-type]
    return asyncio.run(_serve(config, credentials, log_dir))


async def _serve(config: object, credentials: object, log_dir: Path | None) -> int:
    from server.stack import log_files, stack_regions, start_stack

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    async with start_stack(config, log_dir=log_dir) as stack:  # type: ignore[arg-type]
        mode = "one process per service" if stack.config.processes else "embedded"
        print(f"abrkit stack ({mode}), content {stack.config.content_root}, config {stack.config.config_path}")
        for name in stack.service_names:
            print(f"  {name:<9} {stack.url(name)}")
        regions = stack_regions(stack.config)
        for region in regions.regions if regions is not None else ():
            edges = ", ".join(f"{edge_id} ({name})" for name, edge_id in stack.edge_services(region).items())
            print(f"  region {region}: {edges or 'no edges'}")
        print(f"  API: POST {stack.gateway_url}/auth/token, {stack.gateway_url}/playback/<title>, "
              f"{stack.license_url}")
        if stack.config.live_title is not None:
            live = stack.config
            mode = f"low latency, {live.live_chunk_s:g} s chunks" if live.low_latency else "whole segments"
            if live.live_speed != 1.0:
                mode += f", clock at {live.live_speed:g}x: play it with --speed {live.live_speed:g}"
            print(f"  live: POST {stack.gateway_url}/playback/{live.live_channel} (channel {live.live_channel!r} "
                  f"looping {live.live_title!r}, {mode}; UTCTiming at <edge>/time)")
        if credentials is not None:
            print(f"  demo user: {credentials.username}  password: {credentials.password}")  # type: ignore[attr-defined]
        if log_dir is not None:
            print(f"  logs: {log_dir} ({', '.join(log_files(stack.config))}; --log-console prints them here)")
        hint = browser_hint(stack.config.allowed_origins)
        if hint:
            print(f"  {hint}")
        print(f"ready {stack.gateway_url}", flush=True)
        await stop.wait()
        print("abrkit serve: shutting down (in-flight requests finish)...", file=sys.stderr, flush=True)
    return 0


def browser_hint(allowed_origins: tuple[str, ...]) -> str | None:
    """What to tell at startup about browser players (a web page on its own origin), or None when
    the stack already grants a page's origin by name."""
    if not allowed_origins:
        return ("browser players (dash.js, Shaka Player) need --allow-origin ORIGIN, the page's origin "
                "(e.g. http://localhost:3000): without it the stack sends no CORS headers and browsers "
                "block every request (docs/BROWSER.md)")
    if all(origin == "*" for origin in allowed_origins):
        return ("--allow-origin '*' never grants credentials: dash.js sends license requests with them (it "
                "does whenever they carry an Authorization header), so encrypted titles need the page's "
                "origin by name, e.g. --allow-origin http://localhost:3000 (docs/BROWSER.md)")
    return None
