"""`abrkit edge --origin URL ...`: run one edge cache on its own (see docs/EDGE.md)."""

from __future__ import annotations

import argparse
import os
import secrets
from pathlib import Path

from server.commands import CommandError
from server.edge import EdgeConfig
from server.edgeworkers import serve
from server.keys import ed25519_public

KEY_ENV = "ABRKIT_URL_VERIFY_KEY"
INTERNAL_ENV = "ABRKIT_INTERNAL_TOKEN"


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = subparsers.add_parser("edge", help="run one edge cache in front of an origin")
    parser.add_argument("--origin", required=True, help="origin base URL (the only upstream), e.g. http://127.0.0.1:8100")
    parser.add_argument("--edge-id", default="edge-1", help="name reported in heartbeats, logs and /healthz")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8200, help="port to bind; 0 picks a free one (default 8200)")
    parser.add_argument("--workers", type=int, default=1,
                        help="worker processes sharing the port (SO_REUSEPORT), each with its own cache")
    parser.add_argument("--cache-mb", type=float, default=512.0, help="cache bound per worker, MiB of bodies")
    parser.add_argument("--max-object-mb", type=float, default=64.0,
                        help="objects bigger than this stream through uncached (MiB)")
    parser.add_argument("--key-file", type=Path,
                        help="the playback API's URL-verify (public) key: hex text or 32 raw bytes "
                             f"(default: ${KEY_ENV} as hex)")
    parser.add_argument("--internal-token-file", type=Path,
                        help="the stack's internal credential: hex text or raw bytes (default: "
                             f"${INTERNAL_ENV} as hex); sent to the origin and steering, and opens /internal/*")
    parser.add_argument("--revocations", type=Path,
                        help="the stack's revocation store: URLs of revoked sessions are refused")
    parser.add_argument("--no-signature", action="store_true",
                        help="also serve unsigned /<title>/<file> paths (testing only)")
    parser.add_argument("--license-url", help="license URL written into MPDs in place of the placeholder")
    parser.add_argument("--steering-url", help="playback API base URL to send heartbeats to")
    parser.add_argument("--public-url", help="URL reported in heartbeats (default http://host:port)")
    parser.add_argument("--heartbeat-s", type=float, default=1.0, help="seconds between heartbeats")
    parser.add_argument("--allow-origin", action="append", default=[], metavar="ORIGIN",
                        help="CORS: allowed browser origin (repeatable; '*' for any)")
    parser.add_argument("--origin-timeout-s", type=float, default=10.0, help="origin fetch timeout")
    parser.add_argument("--live-channel", action="append", default=[], metavar="NAME",
                        help="a live channel of the origin (repeatable): coalesced, streamed while it arrives, "
                             "manifests kept at most 1 s (docs/LIVE-SERVER.md)")
    parser.add_argument("--live-speed", type=float, default=1.0, metavar="K",
                        help="the live channels' clock runs K times faster (the origin's --speed): /time follows it")
    parser.add_argument("--live-clock-origin-s", type=float, default=0.0, metavar="UNIX_S",
                        help="with --live-speed: the wall time the sped-up clock starts from (the origin prints it)")
    parser.add_argument("--access-log", default="-", metavar="FILE",
                        help="JSON access log file ('-' = stderr, 'off' = none; default '-')")
    parser.set_defaults(func=run)


def read_key(key_file: Path | None, env: str = KEY_ENV) -> bytes | None:
    """A key from a file (hex text or raw bytes) or the environment variable `env` (hex)."""
    if key_file is not None:
        raw = key_file.read_bytes()
        try:
            return bytes.fromhex(raw.decode("ascii").strip())
        except (UnicodeDecodeError, ValueError):
            return raw
    text = os.environ.get(env)
    if text is None:
        return None
    try:
        return bytes.fromhex(text.strip())
    except ValueError:
        raise CommandError(f"${env} must be hex") from None


def run(args: argparse.Namespace) -> int:
    key = read_key(args.key_file)
    if key is None:
        if not args.no_signature:
            raise CommandError(f"give the URL-verify key with --key-file or ${KEY_ENV} (or use --no-signature)")
        key = ed25519_public(secrets.token_bytes(32))  # verifies nothing anyone signed: unsigned paths only
    config = EdgeConfig(
        edge_id=args.edge_id, origin_url=args.origin, url_verify_key=key, host=args.host, port=args.port,
        internal_token=read_key(args.internal_token_file, INTERNAL_ENV), revocations_path=args.revocations,
        workers=args.workers, cache_bytes=int(args.cache_mb * 1024 * 1024),
        max_object_bytes=int(args.max_object_mb * 1024 * 1024), require_signature=not args.no_signature,
        license_url=args.license_url, steering_url=args.steering_url, public_url=args.public_url,
        heartbeat_s=args.heartbeat_s, allowed_origins=tuple(args.allow_origin),
        origin_timeout_s=args.origin_timeout_s, live_channels=tuple(args.live_channel),
        live_speed=args.live_speed, live_clock_origin_s=args.live_clock_origin_s,
    )

    def ready(url: str) -> None:
        print(f"edge {config.edge_id} ready at {url} (origin {config.origin_url}, workers {config.workers})",
              flush=True)

    access_log_path = None if args.access_log == "off" else args.access_log
    return serve(config, ready=ready, access_log_path=access_log_path)

