"""Run one service of the stack in this process: `python -m server.run SERVICE --config stack.json`.

`abrkit serve --processes` starts one of these per service, hands each its listening socket
(`--fd`) and restarts it if it dies (server/supervisor.py); by hand, give every service's port in the
stack file's `service_ports` (or `--ports`). Prints `ready <url>` on stdout once listening;
SIGTERM/SIGINT shut it down gracefully, and with `--fd` so does the death of the process that started it.
Its secrets come on stdin (`--secrets-stdin`, what the stack sends: only what its kind needs), or by
hand from the stack's secrets file, of which it keeps only what its kind needs.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import sys
from collections.abc import Sequence
from pathlib import Path

from aiohttp import web

from server.config import load_stack_config, stack_config_from_json
from server.formats.urls import url_host
from server.keys import ServiceSecrets, load_secrets, secrets_for
from server.observability import configure_logging
from server.stack import bind_host, bind_socket, build_app, make_runner, requested_port, service_kind, service_names
from server.supervisor import READY_LINE, until_stopped


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m server.run", description=__doc__.splitlines()[0])
    parser.add_argument("service", help="origin, edge-<i>, auth, playback, license or gateway")
    parser.add_argument("--config", type=Path, required=True, help="the stack file (users, settings)")
    parser.add_argument("--stack-json", help="settings overriding the file's (as `abrkit serve` passes them)")
    parser.add_argument("--ports", help='JSON {"service": port} of every service (default: the file\'s)')
    parser.add_argument("--fd", type=int, help="an inherited listening socket to serve on")
    parser.add_argument("--secrets-stdin", action="store_true",
                        help="read this service's secrets (JSON) from stdin instead of the stack's secrets file")
    return parser.parse_args(argv)


async def _serve(args: argparse.Namespace) -> int:
    config_path = args.config.expanduser().resolve()
    config = (stack_config_from_json(json.loads(args.stack_json), config_path) if args.stack_json
              else load_stack_config(config_path))
    configure_logging("-" if config.access_log else None)
    names = service_names(config)
    if args.service not in names:
        raise ValueError(f"unknown service {args.service!r}; this stack has {', '.join(names)}")
    if args.ports:
        ports = {str(k): int(v) for k, v in json.loads(args.ports).items()}
    else:
        ports = {name: requested_port(config, name) for name in names}
    missing = [name for name in names if not ports.get(name) and not (name == args.service and args.fd is None)]
    if missing:
        raise ValueError(f"ports unknown for {', '.join(missing)}: set service_ports in {config_path} or pass --ports")
    if args.secrets_stdin:
        secrets = ServiceSecrets.from_json(json.loads(sys.stdin.buffer.read() or b"null"))
    else:
        secrets = secrets_for(service_kind(args.service), load_secrets(config.resolved_secrets_path))
    if args.fd is not None:
        sock = socket.socket(fileno=args.fd)
    else:
        sock = bind_socket(bind_host(config, args.service), ports[args.service])
    ports[args.service] = sock.getsockname()[1]
    app = build_app(args.service, config, ports, secrets)
    runner: web.AppRunner = make_runner(args.service, app, config.shutdown_timeout_s)
    await runner.setup()
    await web.SockSite(runner, sock).start()
    print(f"{READY_LINE} {service_kind(args.service)} http://{url_host(bind_host(config, args.service))}:{ports[args.service]}",
          flush=True)
    try:
        # Started by a stack (--fd): it supervises us, and we stop if it is killed.
        await until_stopped(parent_pid=os.getppid() if args.fd is not None else None)
    finally:
        await runner.cleanup()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse(argv)
    configure_logging()
    try:
        return asyncio.run(_serve(args))
    except (ValueError, OSError) as exc:
        print(f"server.run {args.service}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
