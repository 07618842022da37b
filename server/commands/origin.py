"""`abrkit origin`: serve packaged titles from a content directory over HTTP."""

from __future__ import annotations

import argparse
from pathlib import Path

from aiohttp import web

from server.content import list_titles
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
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    config = OriginConfig(content_root=args.content, host=args.host, port=args.port)
    titles = list_titles(config.content_root)
    print(f"serving {len(titles)} title(s) from {config.content_root}: {', '.join(titles) or '(none yet)'}")
    for title in titles:
        print(f"  http://{config.host}:{config.port}/{title}/manifest.mpd")
    web.run_app(create_app(config), host=config.host, port=config.port, print=None)
    return 0
