"""Shedding under overload: running sessions keep their renewals while new sessions are turned away.

A stack with one process per service, its playback backend given a small bulkhead. A few viewers
start their sessions on a quiet stack, then keep them alive as a player does (a segment-URL renewal
and a license request every `--pace-s`) while a crowd of new viewers floods `POST /playback/<title>`
from `--crowd` connections. Run twice: with the gateway's default reserve of slots for running
sessions, and with none (every request equal, as before). Printed per run: what became of the new
sessions (started, shed, refused busy), and the running sessions' renewals and licenses (succeeded,
p50/p99).

    python bench/gateway_shed.py [--duration-s 15] [--crowd 128] [--viewers 8] [--slots 16]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field, replace
from pathlib import Path

import aiohttp

from server.config import BackendPolicy, RateLimitPolicy, StackConfig, TokenPolicy
from server.formats.b64 import b64url_encode
from server.keys import ed25519_public, load_secrets
from server.stack import init_stack_config, start_stack
from server.tokens import TokenIssuer

TITLE = "shed"


@dataclass
class Tally:
    statuses: Counter[str] = field(default_factory=Counter)
    ms: list[float] = field(default_factory=list)

    def line(self) -> str:
        total = sum(self.statuses.values())
        ok = self.statuses.get("200", 0) + self.statuses.get("404", 0)
        p = statistics.quantiles(self.ms, n=100) if len(self.ms) >= 2 else [0.0] * 99
        shown = ", ".join(f"{n} x {status}" for status, n in sorted(self.statuses.items()))
        return f"{ok}/{total} answered ({100 * ok / max(total, 1):.1f}%), p50 {p[49]:.1f} ms, p99 {p[98]:.1f} ms  [{shown}]"


def _title(root: Path) -> str:
    """A title with a manifest and one key: what playback and license need to say yes."""
    folder = root / TITLE
    folder.mkdir(parents=True)
    (folder / "manifest.mpd").write_text("<MPD/>\n")
    kid = os.urandom(16)
    fd = os.open(folder / "keys.json", os.O_WRONLY | os.O_CREAT, 0o600)
    with os.fdopen(fd, "w") as out:
        json.dump({"title": TITLE, "keys": [{"kid": kid.hex(), "key": os.urandom(16).hex(), "tracks": ["video"]}]}, out)
    return b64url_encode(kid)


async def _call(http: aiohttp.ClientSession, url: str, tally: Tally, **kwargs: object) -> dict[str, object] | None:
    started = time.perf_counter()
    try:
        async with http.post(url, **kwargs) as resp:  # type: ignore[arg-type]
            body = await resp.read()
            key = str(resp.status)
            if resp.status == 503:
                key += f" {json.loads(body).get('reason', '')}"
    except (aiohttp.ClientError, TimeoutError) as exc:
        tally.statuses[type(exc).__name__] += 1
        return None
    tally.statuses[key] += 1
    tally.ms.append((time.perf_counter() - started) * 1000)
    return json.loads(body) if resp.status == 200 else None


async def start_session(http: aiohttp.ClientSession, gateway: str, token: str) -> dict[str, object]:
    start = Tally()
    started = await _call(http, f"{gateway}/playback/{TITLE}", start, headers={"Authorization": f"Bearer {token}"})
    if started is None:
        raise RuntimeError(f"a viewer could not start its session on the quiet stack: {dict(start.statuses)}")
    return {"session_id": started["session_id"]}


async def viewer(http: aiohttp.ClientSession, gateway: str, token: str, session: dict[str, object], kid: str,
                 stop: asyncio.Event, pace_s: float, renewals: Tally, licenses: Tally) -> None:
    """A running session kept alive as a player does: a URL renewal and a license request each `pace_s`."""
    auth = {"Authorization": f"Bearer {token}"}
    while not stop.is_set():
        await asyncio.sleep(pace_s)
        await _call(http, f"{gateway}/playback/{TITLE}/renew", renewals, json=session, headers=auth)
        await _call(http, f"{gateway}/license", licenses, json={"kids": [kid]}, headers=auth)


async def newcomer(http: aiohttp.ClientSession, gateway: str, token: str, stop: asyncio.Event, starts: Tally) -> None:
    while not stop.is_set():
        await _call(http, f"{gateway}/playback/{TITLE}", starts, headers={"Authorization": f"Bearer {token}"})


async def measure(config: StackConfig, args: argparse.Namespace, kid: str) -> tuple[Tally, Tally, Tally]:
    async with start_stack(config, log_dir=config.state_dir / "logs") as stack:
        secrets = load_secrets(config.resolved_secrets_path)
        issuer = TokenIssuer(TokenPolicy(verify_key=ed25519_public(secrets.jwt_signing_key)), secrets.jwt_signing_key)

        def token(name: str) -> str:
            return issuer.issue(name, ("*",)).access_token

        starts, renewals, licenses = Tally(), Tally(), Tally()
        stop = asyncio.Event()
        connector = aiohttp.TCPConnector(limit=args.crowd + args.viewers + 8)
        async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=30)) as http:
            tokens = [token(f"viewer{i}") for i in range(args.viewers)]
            sessions = [await start_session(http, stack.gateway_url, t) for t in tokens]  # on a quiet stack
            viewers = [asyncio.create_task(viewer(http, stack.gateway_url, t, session, kid, stop, args.pace_s,
                                                  renewals, licenses)) for t, session in zip(tokens, sessions)]
            crowd = [asyncio.create_task(newcomer(http, stack.gateway_url, token(f"new{i}"), stop, starts))
                     for i in range(args.crowd)]
            await asyncio.sleep(args.duration_s)
            stop.set()
            await asyncio.gather(*viewers, *crowd)
    return starts, renewals, licenses


async def run(args: argparse.Namespace) -> int:
    with tempfile.TemporaryDirectory(prefix="abrkit-shed-") as work:  # stacks, keys and logs go with the run
        return await run_in(args, Path(work))


async def run_in(args: argparse.Namespace, work: Path) -> int:
    kid = _title(work / "content")
    base = StackConfig(config_path=work / "stack.json", content_root=work / "content", port=0, edges=1,
                       processes=True, access_log=False, heartbeat_s=0.5,
                       rate_limit=RateLimitPolicy(rate_per_s=1000, burst=1000))
    init_stack_config(base)
    print(f"{args.viewers} running sessions (a renewal and a license every {args.pace_s:g} s) while {args.crowd} "
          f"connections start new sessions for {args.duration_s:g} s; playback bulkhead {args.slots} slots")
    for label, reserved in (("reserve for running sessions (default)", BackendPolicy().reserved_for_running),
                            ("no reserve (before)", 0.0)):
        policy = BackendPolicy(max_concurrent=args.slots, reserved_for_running=reserved)
        config = replace(base, backend_overrides={"playback": policy})
        starts, renewals, licenses = await measure(config, args, kid)
        print(f"{label}:")
        print(f"  new sessions      {starts.line()}")
        print(f"  URL renewals      {renewals.line()}")
        print(f"  licenses          {licenses.line()}")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration-s", type=float, default=15.0)
    parser.add_argument("--crowd", type=int, default=128)
    parser.add_argument("--viewers", type=int, default=8)
    parser.add_argument("--slots", type=int, default=16)
    parser.add_argument("--pace-s", type=float, default=0.5)
    return asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    sys.exit(main())
