"""`abrkit shape`: run the trace-shaping TCP proxy standalone, for any client (curl, a browser)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys

from netsim.faults import parse_faults
from netsim.formats import FORMATS, load_trace
from netsim.shaper import Shaper, ShaperConfig, ShaperStats
from player.errors import CliError


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "shape",
        help="relay TCP to an upstream, shaped to a bandwidth trace",
        description="Listen on HOST:PORT and relay each connection to the upstream; the downstream "
        "direction is paced to the trace (the simulator's link model), the request direction carries "
        "the RTT. Fault times are seconds of trace time from the link's start.",
    )
    parser.add_argument("--trace", required=True, help="trace file (Pensieve, Mahimahi or Sabre JSON)")
    parser.add_argument("--trace-format", choices=FORMATS, help="trace format (default: detect)")
    parser.add_argument("--listen", required=True, metavar="HOST:PORT", help="address to listen on (port 0: any)")
    parser.add_argument("--upstream", required=True, metavar="HOST:PORT", help="server to relay to")
    parser.add_argument("--rtt-ms", type=float, default=80.0, help="base round-trip time in ms (default 80)")
    parser.add_argument(
        "--delay-split",
        choices=("request", "symmetric"),
        default="request",
        help="where the RTT goes: all on the request direction (as the simulator) or half each way",
    )
    parser.add_argument(
        "--ignore-trace-latency", action="store_true", help="use --rtt-ms even if the trace has per-interval latency"
    )
    parser.add_argument("--speed", type=float, default=1.0, help="play the trace K times faster (bandwidth x K, delays / K)")
    parser.add_argument("--offset-s", type=float, default=0.0, help="start this many seconds into the trace")
    parser.add_argument(
        "--outage", action="append", default=[], metavar="START_S:DURATION_S", help="deliver nothing in this window (repeatable)"
    )
    parser.add_argument(
        "--loss-burst",
        action="append",
        default=[],
        metavar="START_S:DURATION_S[:RECOVERY_S]",
        help="lose everything in this window, then stall RECOVERY_S more (default 0.2, a TCP RTO; repeatable)",
    )
    parser.add_argument("--per-connection", action="store_true", help="give each connection its own link and trace clock")
    parser.add_argument("--upload-trace", help="also shape the client->server direction to this trace")
    parser.add_argument(
        "--quantum-ms", type=float, help="pacing period while backlogged (default: 10 ms of trace time, at least 2 ms)"
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log connections (debug)")
    parser.set_defaults(func=run)


def parse_address(text: str, what: str) -> tuple[str, int]:
    """`HOST:PORT`, `[IPv6]:PORT` or `:PORT` (host 127.0.0.1)."""
    host, sep, port_text = text.rpartition(":")
    if not sep:
        raise CliError(f"{what} {text!r}: expected HOST:PORT")
    host = host.strip("[]") or "127.0.0.1"
    try:
        port = int(port_text)
    except ValueError:
        raise CliError(f"{what} {text!r}: port must be an integer") from None
    if not 0 <= port <= 65535:
        raise CliError(f"{what} {text!r}: port must be in 0..65535")
    return host, port


def config_from_args(args: argparse.Namespace) -> ShaperConfig:
    listen_host, listen_port = parse_address(args.listen, "--listen")
    upstream_host, upstream_port = parse_address(args.upstream, "--upstream")
    faults = parse_faults(outages=args.outage, loss_bursts=args.loss_burst)
    return ShaperConfig(
        listen_host=listen_host,
        listen_port=listen_port,
        upstream_host=upstream_host,
        upstream_port=upstream_port,
        trace=load_trace(args.trace, args.trace_format),
        upload_trace=None if args.upload_trace is None else load_trace(args.upload_trace, args.trace_format),
        rtt_ms=args.rtt_ms,
        delay_split=args.delay_split,
        use_trace_latency=not args.ignore_trace_latency,
        speed=args.speed,
        start_offset_s=args.offset_s,
        faults=faults,
        per_connection=args.per_connection,
        quantum_ms=args.quantum_ms,
    )


def run(args: argparse.Namespace) -> int:
    config = config_from_args(args)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    stats = asyncio.run(_serve(config))
    mbit = stats.down_bytes * 8 / 1e6
    print(f"abrkit shape: stopped after {stats.connections_accepted} connections, {mbit:.3f} Mbit delivered", file=sys.stderr)
    return 0


async def _serve(config: ShaperConfig) -> ShaperStats:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    async with Shaper(config) as shaper:
        trace = config.trace
        latency = "from trace" if config.use_trace_latency and trace.latency_s is not None else f"{config.rtt_ms:g} ms"
        link = "per connection" if config.per_connection else "shared"
        print(
            f"abrkit shape: listening on {config.listen_host}:{shaper.port} -> {config.upstream_host}:{config.upstream_port}"
            f" | trace {trace.name} (mean {trace.mean_bandwidth_bps / 1e6:.3f} Mbit/s), speed {config.speed:g},"
            f" rtt {latency}, {len(config.faults)} faults, {link} link",
            flush=True,
        )
        await stop.wait()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)  # a second Ctrl-C interrupts the shutdown itself
        return shaper.stats()
