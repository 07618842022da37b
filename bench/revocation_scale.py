"""Refresh latency against the size of the revocation store: none vs 1M revocations.

Two auth services run in this process, each on its own store: one empty, one holding `--rows`
revocations (by default 1M: 700k ended logins, 200k single tokens, 100k user stamps, all still in
force). One client refreshes a login on both, alternating in small batches so both see the same
machine; every refresh reads the store and moves the login's family on a generation (a write,
committed with an fsync). Printed: p50 and p99 of each, and the ratio of the p99s (goal: <= 2x).

    python bench/revocation_scale.py [--rows 1000000] [--refreshes 4000]
"""

from __future__ import annotations

import argparse
import asyncio
import sqlite3
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

import aiohttp
from aiohttp import web

from server import auth
from server.config import AuthConfig, PasswordPolicy, TokenPolicy
from server.keys import ed25519_public
from server.passwords import hash_password
from server.revocation import create_store
from server.users import UserRecord, update_users

SIGNING_KEY = b"bench-revocation-scale-key-32by!"
PASSWORD = "bench password"
GOAL_RATIO = 2.0


def fill(path: Path, rows: int) -> float:
    """Put `rows` revocations in force into the store at `path`; seconds it took."""
    started = time.perf_counter()
    until = time.time() + 86_400
    families, tokens = int(rows * 0.7), int(rows * 0.2)
    subjects = rows - families - tokens
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("BEGIN")
    conn.executemany("INSERT INTO families VALUES (?, 3, 1, ?)", ((uuid.uuid4().hex, until) for _ in range(families)))
    conn.executemany("INSERT INTO tokens VALUES (?, ?)", ((uuid.uuid4().hex, until) for _ in range(tokens)))
    conn.executemany("INSERT INTO subjects VALUES (?, ?, ?, ?)",
                     ((f"user{i}", 1000.0, 1000.0, until) for i in range(subjects)))
    conn.execute("COMMIT")
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    return time.perf_counter() - started


async def start(state: Path, password_hash: str) -> tuple[web.AppRunner, str]:
    store = state / "revocations.db"
    users = state / "stack.json"
    update_users(users, lambda u: u.__setitem__("bench", UserRecord(username="bench", password_hash=password_hash,
                                                                  titles=("*",))))
    config = AuthConfig(users_path=users, signing_key=SIGNING_KEY, passwords=PasswordPolicy(n=2**10, r=8, p=1),
                        tokens=TokenPolicy(verify_key=ed25519_public(SIGNING_KEY), revocations_path=store))
    runner = web.AppRunner(auth.create_app(config), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    return runner, f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}"  # type: ignore[union-attr]


async def refresh_batch(http: aiohttp.ClientSession, url: str, token: str, count: int,
                        out: list[float]) -> str:
    for _ in range(count):
        started = time.perf_counter()
        async with http.post(url + "/auth/refresh", json={"refresh_token": token}) as resp:
            body = await resp.json()
            if resp.status != 200:
                raise RuntimeError(f"refresh answered {resp.status}: {body}")
        out.append((time.perf_counter() - started) * 1000)
        token = body["refresh_token"]
    return token


def percentile(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=1000)[int(q * 1000) - 1]


async def run(args: argparse.Namespace) -> int:
    with tempfile.TemporaryDirectory(prefix="abrkit-revocations-") as work:  # stacks, keys and logs go with the run
        return await run_in(args, Path(work))


async def run_in(args: argparse.Namespace, work: Path) -> int:
    states = {"none": work / "none", "full": work / "full"}
    for state in states.values():
        state.mkdir()
        create_store(state / "revocations.db")
    print(f"filling a store with {args.rows:,} revocations...", flush=True)
    took_s = fill(states["full"] / "revocations.db", args.rows)
    size_mb = (states["full"] / "revocations.db").stat().st_size / 1e6
    print(f"  {took_s:.1f} s, {size_mb:.0f} MB on disk")
    password_hash = hash_password(PASSWORD, policy=PasswordPolicy(n=2**10, r=8, p=1))
    servers = {name: await start(state, password_hash) for name, state in states.items()}
    latencies: dict[str, list[float]] = {name: [] for name in states}
    try:
        async with aiohttp.ClientSession() as http:
            tokens = {}
            for name, (_, url) in servers.items():
                async with http.post(url + "/auth/token", json={"username": "bench", "password": PASSWORD}) as resp:
                    tokens[name] = (await resp.json())["refresh_token"]
                tokens[name] = await refresh_batch(http, url, tokens[name], 50, [])  # warm up
            # Small batches, the order swapped each round: both stores see the same disk and machine
            # (each refresh commits, and its fsync is most of its time on a busy disk).
            batch = 10
            names = list(servers)
            for round_ in range(args.refreshes // batch):
                for name in names if round_ % 2 == 0 else names[::-1]:
                    tokens[name] = await refresh_batch(http, servers[name][1], tokens[name], batch, latencies[name])
    finally:
        for runner, _ in servers.values():
            await runner.cleanup()
    p99 = {name: percentile(values, 0.99) for name, values in latencies.items()}
    for name, values in latencies.items():
        label = "no revocations" if name == "none" else f"{args.rows:,} revocations"
        print(f"{label:>22}: refresh p50 {statistics.median(values):6.2f} ms  p99 {p99[name]:6.2f} ms"
              f"  ({len(values)} refreshes)")
    ratio = p99["full"] / p99["none"]
    print(f"p99 ratio (full / none): {ratio:.2f}x  (goal <= {GOAL_RATIO:g}x: {'met' if ratio <= GOAL_RATIO else 'NOT met'})")
    return 0 if ratio <= GOAL_RATIO else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--refreshes", type=int, default=4000)
    return asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    sys.exit(main())
