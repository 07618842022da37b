"""Login latency under a password-guessing flood, with and without the per-address login budget.

A stack, one process per service (gateway in front of auth; the gateway trusts 127.0.0.1 as a proxy, so each
simulated client has its own address in `X-Forwarded-For`). Legitimate users log in one after
another from their own addresses: first on a quiet stack, then while one address floods wrong
passwords at `--flood-rate` a second over `--flood-connections` connections, one guess per username
(spraying: no username's backoff stops it). Run twice: with the default per-address budget
for `/auth/token`, and with that budget lifted (the general rate limit only, as before). Printed:
legitimate p50/p99 quiet and under the flood, their ratio, and what became of the flood's requests.

    python bench/login_flood.py [--logins 20] [--flood-connections 32] [--flood-rate 40]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from collections import Counter
from dataclasses import replace
from pathlib import Path

import aiohttp

from server.config import DEFAULT_LOGIN_RATE, RateLimitPolicy, StackConfig
from server.passwords import hash_password
from server.stack import init_stack_config, start_stack
from server.users import UserRecord, update_users

PASSWORD = "a legitimate password"
ATTACKER = "203.0.113.66"


async def login(http: aiohttp.ClientSession, gateway: str, username: str, password: str, address: str) -> int:
    async with http.post(f"{gateway}/auth/token", json={"username": username, "password": password},
                         headers={"X-Forwarded-For": address}) as resp:
        await resp.read()
        return resp.status


async def legitimate(http: aiohttp.ClientSession, gateway: str, count: int, first: int,
                     refused: Counter[int]) -> list[float]:
    """Wall ms of each login (a refused one counts too: it is what that user waited for)."""
    took = []
    for i in range(count):
        started = time.perf_counter()
        status = await login(http, gateway, f"user{(first + i) % 50}", PASSWORD, f"198.51.100.{(first + i) % 250}")
        if status != 200:
            refused[status] += 1
        took.append((time.perf_counter() - started) * 1000)
    return took


async def flood(http: aiohttp.ClientSession, gateway: str, stop: asyncio.Event, outcomes: Counter[int],
                worker: int, interval_s: float) -> None:
    """Password spraying: one guess per username, so no username's backoff ever stops it."""
    n = 0
    while not stop.is_set():
        n += 1
        await asyncio.sleep(interval_s)
        try:
            outcomes[await login(http, gateway, f"spray{worker}-{n}", "Summer2024!", ATTACKER)] += 1
        except (aiohttp.ClientError, TimeoutError):
            outcomes[0] += 1


def summary(values: list[float]) -> str:
    p99 = statistics.quantiles(values, n=100)[98] if len(values) >= 2 else values[0]
    return f"p50 {statistics.median(values):7.1f} ms  p99 {p99:7.1f} ms"


async def measure(config: StackConfig,
                  args: argparse.Namespace) -> tuple[list[float], list[float], Counter[int], Counter[int]]:
    async with start_stack(config, wait_for_edges=False, log_dir=config.state_dir / "logs") as stack:
        gateway = stack.gateway_url
        connector = aiohttp.TCPConnector(limit=args.flood_connections + 4)
        async with aiohttp.ClientSession(connector=connector) as http:
            refused = Counter[int]()
            await legitimate(http, gateway, 3, 1000, refused)  # warm up
            quiet = await legitimate(http, gateway, args.logins, 0, refused)
            stop, outcomes = asyncio.Event(), Counter[int]()
            interval_s = args.flood_connections / args.flood_rate
            attackers = [asyncio.create_task(flood(http, gateway, stop, outcomes, i, interval_s))
                         for i in range(args.flood_connections)]
            await asyncio.sleep(1.0)  # the flood is on
            loaded = await legitimate(http, gateway, args.logins, 100, refused)
            stop.set()
            await asyncio.gather(*attackers)
    return quiet, loaded, outcomes, refused


async def run(args: argparse.Namespace) -> int:
    with tempfile.TemporaryDirectory(prefix="abrkit-login-flood-") as work:  # stacks, keys and logs go with the run
        return await run_in(args, Path(work))


async def run_in(args: argparse.Namespace, work: Path) -> int:
    content = work / "content"
    content.mkdir()
    base = StackConfig(config_path=work / "stack.json", content_root=content, port=0, edges=0, access_log=False,
                       processes=True,
                       trusted_proxies=("127.0.0.1",), rate_limit=RateLimitPolicy(rate_per_s=20.0, burst=40))
    init_stack_config(base)
    password_hash = await asyncio.to_thread(hash_password, PASSWORD)
    update_users(base.config_path, lambda u: u.update(
        {name: UserRecord(username=name, password_hash=password_hash, titles=("*",))
         for name in [f"user{i}" for i in range(50)]}))
    budgets = {"per-address budget (default)": DEFAULT_LOGIN_RATE,
               "no login budget (before)": RateLimitPolicy(rate_per_s=1e6, burst=1_000_000)}
    print(f"{args.logins} legitimate logins, quiet and under a flood of {args.flood_rate:g} wrong passwords a second "
          f"from one address over {args.flood_connections} connections")
    for label, budget in budgets.items():
        quiet, loaded, outcomes, refused = await measure(replace(base, login_rate_limit=budget), args)
        flood_total = sum(outcomes.values())
        print(f"{label}:")
        print(f"  quiet        {summary(quiet)}")
        print(f"  under flood  {summary(loaded)}   p50 ratio {statistics.median(loaded) / statistics.median(quiet):.2f}x")
        print(f"  the flood: {flood_total} requests, " + ", ".join(
            f"{n} x {status or 'connection error'}" for status, n in sorted(outcomes.items())))
        print(f"  legitimate logins refused: {', '.join(f'{n} x {s}' for s, n in sorted(refused.items())) or 'none'}"
              f" of {2 * args.logins}")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--logins", type=int, default=20)
    parser.add_argument("--flood-connections", type=int, default=32)
    parser.add_argument("--flood-rate", type=float, default=40.0,
                        help="guesses a second (default 40: twice the general per-client limit, all it lets through)")
    return asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    sys.exit(main())
