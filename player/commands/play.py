"""`abrkit play`: play a stream in a window, or headless with a QoE report.

This module loads only the standard library and `player.commands` at import (the parser of
`abrkit play` must not cost the player's imports: docs/DESKTOP.md, "Cold start"); the player, the
window, PyAV and the HTTP client are imported when `run` needs them, and the demo stack runs in a
process of its own (`player.desktop.demostack`), started before any of them.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from player.commands import (
    abr_specs,
    add_abr_arguments,
    add_clock_sync_arguments,
    add_hls_arguments,
    clock_sync_config,
    list_abrs_requested,
    load_plugins,
)
from player.errors import CliError
from player.media.modes import DECODE_MODES

if TYPE_CHECKING:
    from player.client.harness import PlayTarget
    from player.client.headless import PlayerConfig
    from player.client.liveconfig import LivePlayConfig
    from player.client.streamkind import StreamOptions, TargetKind
    from player.desktop.demostack import DemoStackProcess

# `player.client.bootstrap.PROTOCOLS`, spelled out so that building the parser does not import the
# HTTP client (tests/player/test_import_chain.py checks the two agree).
PROTOCOLS = ("auto", "dash", "hls")

DEFAULT_GATEWAY = "http://127.0.0.1:8000"


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = subparsers.add_parser(
        "play", help="play a stream (window, or --headless with a QoE report)",
        description="Play a DASH or HLS stream with an ABR algorithm. With no argument: start a local stack with "
                    "the demo title and play it. A title name plays through a running stack's gateway; an http(s) "
                    "MPD or HLS playlist URL plays directly.")
    parser.add_argument("target", nargs="?", metavar="URL_OR_TITLE", help="MPD or HLS playlist URL, or title name (default: demo)")
    parser.add_argument("--headless", action="store_true", help="no window: fetch, decode and report QoE")
    add_abr_arguments(parser, default="dynamic, dash.js's default")
    parser.add_argument("--trace", help="shape the link to this trace (file or synthetic spec, e.g. step:4e6,1e6@5)")
    traced = [parser.add_argument("--rtt-ms", type=float, default=80.0, help="base round-trip time of the shaped link"),
              parser.add_argument("--offset-s", type=float, default=0.0, help="start this far into the trace")]
    parser.add_argument("--speed", type=float, default=1.0, help="run trace time and the clock K times faster")
    headless = [parser.add_argument("--decode", choices=DECODE_MODES, default="all",
                                    help="headless decoding (default all; a window decodes every frame)")]
    on_demand = [parser.add_argument("--max-segments", type=int, help="on demand: stop after this many segments")]
    live = [
        parser.add_argument("--duration-s", type=float, default=None,
                            help="live: play this many seconds from the join (session time; default 60 headless, "
                                 "until you quit in a window)"),
        parser.add_argument("--target-latency-s", type=float,
                            help="live: latency to hold (default: the MPD's ServiceDescription target, else its "
                                 "suggestedPresentationDelay, else 3 s)")]
    live_hls = add_hls_arguments(parser)
    parser.add_argument("--log", type=Path, help="write the event log (JSON lines) here")
    parser.add_argument("--json", action="store_true", help="print the session report as one JSON object")
    title = [
        parser.add_argument("--gateway", default=None, help=f"title: gateway of a running stack (default {DEFAULT_GATEWAY})"),
        parser.add_argument("--user", default=None, help="title: username for the gateway (default: demo)"),
        parser.add_argument("--region", help="title: the client region to tell the playback API (a stack started with "
                                             "--regions ranks its edges for it; docs/STEERING.md)"),
        parser.add_argument("--password-stdin", action="store_true", help="title: read the password from stdin")]
    parser.add_argument("--protocol", choices=PROTOCOLS, default="auto",
                        help="dash or hls; auto (default): a title plays its MPD, a URL is HLS when its content "
                             "type, .m3u8 suffix or first line says so")
    url = [parser.add_argument("--key", action="append", default=[], metavar="KID:KEY",
                               help="URL: content key for a plain MPD or HLS URL (hex; repeatable)")]
    window = [parser.add_argument("--exit-after", type=float, help="window: quit after this many seconds"),
              parser.add_argument("--screenshot", type=Path, help="window: save the last frame as PNG on exit")]
    live_dash = add_clock_sync_arguments(parser)
    # Which kinds of session each of these options applies to (`player.client.streamkind.SessionKind`):
    # one given for another kind is refused, the player's and the target's before anything starts, the
    # stream's once the bootstrap has read its manifest.
    parser.set_defaults(func=run, option_kinds=tuple(
        (a.dest, "/".join(a.option_strings), a.default, kinds)
        for actions, kinds in ((on_demand, ("on-demand",)), (live, ("live DASH", "live HLS")),
                               (live_dash, ("live DASH",)), (live_hls, ("live HLS",)), (window, ("window",)),
                               (headless, ("headless",)), (title, ("title",)), (url, ("URL",)),
                               (traced, ("with --trace",)))
        for a in actions))


def _password(args: argparse.Namespace) -> str | None:
    if args.password_stdin:
        return sys.stdin.readline().rstrip("\n")
    if os.environ.get("ABRKIT_PASSWORD"):
        return os.environ["ABRKIT_PASSWORD"]
    if (args.user or "demo") == "demo":
        from server.config import default_config_path, load_stack_config
        from server.stack import stored_demo_password

        path = default_config_path()
        if path.exists():
            return stored_demo_password(load_stack_config(path))
    return None


def build_player_config(args: argparse.Namespace) -> PlayerConfig:
    from player.client.headless import PlayerConfig

    specs = abr_specs(args, default="dynamic")  # unknown names fail here, listing the known ones
    if len(specs) != 1:
        raise CliError(f"play takes one algorithm, got {len(specs)}: {', '.join(specs)}")
    return PlayerConfig(abr=specs[0], speed=args.speed, decode=args.decode, max_segments=args.max_segments)


def play_target(args: argparse.Namespace) -> PlayTarget:
    """What the command line asks to play: an http(s) MPD or playlist URL, a title name, or (nothing) the demo."""
    from player.client.bootstrap import parse_key_args
    from player.client.harness import DemoTarget, TitleTarget, UrlTarget

    kind = target_kind(args)
    if kind == "demo":
        return DemoTarget(protocol=args.protocol)
    if kind == "URL":
        return UrlTarget(url=args.target, keys=parse_key_args(args.key), protocol=args.protocol)
    password = _password(args)
    if password is None:
        raise CliError("no password: use --password-stdin or ABRKIT_PASSWORD (or play the demo with no argument)")
    return TitleTarget(title=args.target, gateway_url=args.gateway or DEFAULT_GATEWAY, username=args.user or "demo",
                       password=password, protocol=args.protocol, region=args.region)


def target_kind(args: argparse.Namespace) -> TargetKind:
    """The demo (no target), an http(s) URL played directly, or a title played through a gateway."""
    if not args.target:
        return "demo"
    return "URL" if args.target.startswith(("http://", "https://")) else "title"


def stream_options(args: argparse.Namespace) -> StreamOptions:
    """The options given that apply to some kinds of session only (those left at their defaults are not
    given): the player and the target are checked here, the stream by the harness once it is known."""
    from player.client.streamkind import StreamOptions

    return StreamOptions(applies_to=tuple((name, frozenset(kinds)) for dest, name, default, kinds in args.option_kinds
                                          if getattr(args, dest) != default))


def check_player_and_target(args: argparse.Namespace, *, windowed: bool) -> None:
    """`CliError` for an option the player (window or headless), the target or the link would ignore."""
    options = stream_options(args)
    options.check("with --trace" if args.trace else "without --trace", "the session")
    if windowed:
        options.check("window", "the session")
    else:
        options.check("headless", "with --headless, the session" if args.headless
                      else "with no display (DISPLAY unset), the session")
    kind = target_kind(args)
    options.check(kind, args.target if kind == "URL" else f"title {args.target!r}" if kind == "title"
                  else "the demo (no URL or title given)")


def run(args: argparse.Namespace) -> int:
    started_unix_s = time.time()
    from player.desktop import display_available

    windowed = not args.headless and display_available()
    check_player_and_target(args, windowed=windowed)
    demo_stack = None
    if windowed and not args.target and not args.list_abr:
        from player.desktop.demostack import DemoStackProcess

        # First of all: the stack starts on the other core while this process imports the player.
        demo_stack = DemoStackProcess(protocol=args.protocol).start()
    try:
        return _run(args, windowed=windowed, demo_stack=demo_stack, started_unix_s=started_unix_s)
    finally:
        if demo_stack is not None:
            demo_stack.stop()


def _live_config(args: argparse.Namespace, *, default_duration_s: float) -> LivePlayConfig:
    from player.client.liveconfig import LivePlayConfig

    duration_s = args.duration_s if args.duration_s is not None else default_duration_s
    try:
        return LivePlayConfig(duration_s=duration_s, target_latency_s=args.target_latency_s,
                              clock_sync=clock_sync_config(args), play_parts=args.hls_low_latency_mode)
    except ValueError as exc:
        raise CliError(str(exc)) from None


def _run(args: argparse.Namespace, *, windowed: bool, demo_stack: DemoStackProcess | None,
         started_unix_s: float) -> int:
    from player.client.harness import LinkConfig, headless_session

    load_plugins(args)
    if list_abrs_requested(args):
        return 0
    config = build_player_config(args)
    trace = None
    if args.trace:
        from netsim.sources import open_trace

        trace = open_trace(args.trace)
    link = LinkConfig(trace=trace, rtt_ms=args.rtt_ms, offset_s=args.offset_s)
    target = play_target(args)
    if windowed:
        from player.desktop.app import run_desktop
        from player.desktop.player_thread import WINDOW_LIVE_DURATION_S

        live = _live_config(args, default_duration_s=WINDOW_LIVE_DURATION_S)
        return run_desktop(target, config, link, exit_after_s=args.exit_after, screenshot=args.screenshot,
                           as_json=args.json, log_path=args.log, demo_stack=demo_stack,
                           command_start_unix_s=started_unix_s, live=live, stream_options=stream_options(args))
    live = _live_config(args, default_duration_s=60.0)
    from player.client.headless import print_report

    report = asyncio.run(headless_session(target, config, link, args.log, live, stream_options(args)))
    print_report(report, as_json=args.json)
    return 0 if report.error is None else 1
