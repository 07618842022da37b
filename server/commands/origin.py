"""`abrkit origin`: serve packaged titles from a content directory over HTTP."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from aiohttp import web

from server.commands import CommandError
from server.content import list_titles
from server.formats.urls import url_host
from server.live.channel import LiveConfig
from server.origin import OriginConfig, create_app


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "origin",
        help="serve packaged DASH titles (ROOT/<title>/manifest.mpd) over HTTP",
        description="Serve every title directory under --content at http://HOST:PORT/<title>/manifest.mpd.",
    )
    parser.add_argument("--content", type=Path, required=True, help="content root: a directory of title directories")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    parser.add_argument("--live-title", metavar="T", help="also publish a live channel looping title T (docs/LIVE-SERVER.md)")
    parser.add_argument("--live-channel", default="live", metavar="NAME", help="the live channel's name (default live)")
    parser.add_argument("--low-latency", action="store_true", help="publish the live channel in CMAF chunks")
    parser.add_argument("--chunk-s", type=float, default=0.5, help="chunk duration at low latency (default 0.5 s)")
    parser.add_argument("--speed", type=float, default=1.0, metavar="K",
                        help="run the live channel's clock and /time K times faster (default 1: the wall clock)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    live = None
    if args.speed != 1.0 and not args.live_title:
        raise CommandError("--speed runs a live channel's clock: give --live-title too")
    if args.live_title:
        # Players reach this origin directly: the MPD's UTCTiming names its own /time.
        start_s = float(int(time.time()))
        live = LiveConfig(channel=args.live_channel, source_title=args.live_title,
                          availability_start_s=start_s, low_latency=args.low_latency, chunk_s=args.chunk_s,
                          time_url=f"http://{url_host(args.host)}:{args.port}/time", speed=args.speed,
                          clock_origin_s=start_s)
    config = OriginConfig(content_root=args.content, host=args.host, port=args.port, live=live)
    app = create_app(config)  # a live title that cannot loop is refused here (ValueError: one line)
    titles = list_titles(config.content_root)
    print(f"serving {len(titles)} title(s) from {config.content_root}: {', '.join(titles) or '(none yet)'}")
    for title in titles:
        print(f"  http://{config.host}:{config.port}/{title}/manifest.mpd")
    if live is not None:
        clock = (f", clock at {live.speed:g}x from {live.clock_origin_s:.0f}: edges need --live-speed {live.speed:g} "
                 f"--live-clock-origin-s {live.clock_origin_s:.0f}") if live.speed != 1.0 else ""
        print(f"  http://{config.host}:{config.port}/{live.channel}/manifest.mpd (live, looping {live.source_title}"
              f"{clock})")
    web.run_app(app, host=config.host, port=config.port, print=None)
    return 0
