"""Many clients asking one edge for the same live manifests: origin requests per manifest, with the
edge's live coalescing on, and off as the reference measured in the same run.

The channel, title and servers are bench/live_edge.py's (low latency: 2 s segments of four 0.5 s
parts; origin and edge in a child process). A few segments into the channel, each client, at a
random 0-`--spread` s, asks for the live media playlist, the master playlist and the MPD, twice in a
row, then for one blocking playlist reload (`_HLS_msn`/`_HLS_part`) of the part due next when the
run began (the same for all), each with `Cache-Control: no-cache` as our live players send (an edge
keeps to its own lifetimes: the request's directive does not reach its cache). The origin counts
what it is asked for, by path and query.

    python bench/live_playlist_edge.py [--clients 1000] [--spread 2] [--json FILE]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parent))
from live_edge import CHANNEL, CHUNK_S, REP, SEGMENT_S, bench_servers, ensure_title, raise_open_files_limit  # noqa: E402

MANIFESTS = (f"/{CHANNEL}/video/{REP}/playlist.m3u8", f"/{CHANNEL}/master.m3u8", f"/{CHANNEL}/manifest.mpd")


def next_part_query(start_s: float, now_s: float) -> str:
    """The blocking reload query of the part published next after `now_s`."""
    parts = round(SEGMENT_S / CHUNK_S)
    done = int((now_s - start_s) // CHUNK_S)  # parts published so far
    return f"_HLS_msn={done // parts + 1}&_HLS_part={done % parts}"


async def run_clients(edge_url: str, origin_url: str, start_s: float, clients: int, spread_s: float
                      ) -> dict[str, Any]:
    rng = random.Random(3)
    blocking = f"{MANIFESTS[0]}?{next_part_query(start_s, time.time())}"
    statuses: list[int] = []

    async def client(http: aiohttp.ClientSession) -> None:
        await asyncio.sleep(rng.uniform(0.0, spread_s))
        for path in (*MANIFESTS, *MANIFESTS, blocking):
            async with http.get(edge_url + path, headers={"Cache-Control": "no-cache"}) as response:
                await response.read()
                statuses.append(response.status)

    timeout = aiohttp.ClientTimeout(total=300)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0), timeout=timeout) as http:
        started = time.perf_counter()
        await asyncio.gather(*(client(http) for _ in range(clients)))
        took_s = time.perf_counter() - started
        async with http.get(origin_url + "/bench/counts") as response:
            counts = await response.json()
    return {"clients": clients, "requests": len(statuses), "not_200": sum(s != 200 for s in statuses),
            "took_s": round(took_s, 2), "origin_requests": {path: counts.get(path, 0) for path in (*MANIFESTS, blocking)}}


def measure(root: Path, clients: int, spread_s: float, coalescing: bool) -> dict[str, Any]:
    with bench_servers(root, coalescing) as (origin_url, edge_url, start_s):
        time.sleep(max(0.0, start_s + 3 * SEGMENT_S - time.time()))  # a few segments into the channel
        return asyncio.run(run_clients(edge_url, origin_url, start_s, clients, spread_s))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=1000, help="concurrent clients (one asyncio process)")
    parser.add_argument("--spread", type=float, default=2.0, help="seconds over which the clients start")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    raise_open_files_limit(4 * args.clients + 1024)
    from server.config import default_cache_dir
    root = ensure_title(default_cache_dir() / "bench-live")
    results = {"coalescing": measure(root, args.clients, args.spread, True),
               "reference (coalescing off)": measure(root, args.clients, args.spread, False)}
    print(f"live manifests at the edge: {args.clients} clients over {args.spread:g} s, each asking each manifest "
          "twice and one blocking reload")
    for name, r in results.items():
        print(f"  {name:<27} in {r['took_s']} s, {r['not_200']} of {r['requests']} answers not 200")
        for path, count in r["origin_requests"].items():
            asked = r["clients"] * (1 if "?" in path else 2)
            print(f"    {path:<55} origin requests {count:>5} of the clients' {asked}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
