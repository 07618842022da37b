"""The live origin's CPU per LL-HLS part request with its per-segment chunk cache
(server/live/chunkcache.py), against the same origin with it off (`LiveConfig(chunk_cache=False)`:
every request re-times and cuts its segment again) as the reference measured in the same run.

bench/live_edge.py's title (2 s segments of four 0.5 s parts, one 300 kbit/s rendition) looped
as a low-latency channel; the origin runs alone in a child process (one event loop, as `abrkit
serve` runs it) and reports its own CPU seconds (`time.process_time`). `--clients` direct clients
(no edge in front: what the cache is for) each ask, one after another on a keep-alive connection,
for every part of the `--segments` newest complete segments, and then for those segments whole.
Rounds alternate cached / uncached so that a change in the machine's load hits both alike; CPU
seconds per request are load-insensitive within a few per cent. Also printed: one segment's build
against a cache hit, in this process.

    python bench/live_origin_cpu.py [--clients 20] [--segments 4] [--rounds 3] [--json FILE]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parent))
from live_edge import CHANNEL, CHUNK_S, REP, SEGMENT_S, TITLE, ensure_title  # noqa: E402

PARTS = round(SEGMENT_S / CHUNK_S)
CHANNEL_AGE_S = 40.0  # the channel's age when the clients start: a full 30 s time-shift window


async def serve(root: Path, start_s: float, cache: bool) -> None:
    from aiohttp import web

    from server.live.channel import LiveConfig
    from server.origin import OriginConfig, create_app

    async def cpu(request: web.Request) -> web.Response:
        return web.json_response({"cpu_s": time.process_time()})

    app = create_app(OriginConfig(content_root=root, port=0, live=LiveConfig(
        channel=CHANNEL, source_title=TITLE, availability_start_s=start_s, low_latency=True, chunk_s=CHUNK_S,
        chunk_cache=cache)))
    app.router.add_get("/bench/cpu", cpu)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    print(f"ready http://127.0.0.1:{site.port}", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)  # until the parent closes stdin
    await runner.cleanup()


async def one_round(url: str, start_s: float, clients: int, segments: int) -> dict[str, Any]:
    newest = int((time.time() - start_s) // SEGMENT_S)  # complete: parts and whole segments are not held
    numbers = range(newest - segments + 1, newest + 1)
    paths = [f"{n}.{p}.m4s" for n in numbers for p in range(PARTS)] + [f"{n}.m4s" for n in numbers]
    base = f"{url}/{CHANNEL}/video/{REP}/"
    failed = 0

    async def client(http: aiohttp.ClientSession) -> None:
        nonlocal failed
        for path in paths:
            async with http.get(base + path) as response:
                await response.read()
                failed += response.status != 200

    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http:
        async with http.get(f"{url}/bench/cpu") as response:
            before = (await response.json())["cpu_s"]
        await asyncio.gather(*(client(http) for _ in range(clients)))
        async with http.get(f"{url}/bench/cpu") as response:
            after = (await response.json())["cpu_s"]
    requests = clients * len(paths)
    return {"requests": requests, "failed": failed, "cpu_per_request_ms": 1000 * (after - before) / requests}


def in_process(root: Path, start_s: float) -> dict[str, float]:
    """One segment's build (re-time and cut) against a cache hit, mean over many, in this process."""
    from server.live.channel import LiveChannel, LiveConfig

    channel = LiveChannel(LiveConfig(channel=CHANNEL, source_title=TITLE, availability_start_s=start_s,
                                     low_latency=True, chunk_s=CHUNK_S), root)
    number = int((time.time() - start_s) // SEGMENT_S)
    channel.segment_chunks("video", REP, number)
    runs = 300
    t0 = time.process_time()
    for _ in range(runs):
        channel.build_segment_chunks("video", REP, number)
    t1 = time.process_time()
    for _ in range(runs):
        channel.segment_chunks("video", REP, number)
    t2 = time.process_time()
    return {"build_us": 1e6 * (t1 - t0) / runs, "hit_us": 1e6 * (t2 - t1) / runs}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--segments", type=int, default=4, help="newest complete segments each client reads")
    parser.add_argument("--rounds", type=int, default=3, help="cached/uncached pairs, alternating")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--serve", nargs=3, metavar=("ROOT", "START", "CACHE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        root, start, cache = args.serve
        asyncio.run(serve(Path(root), float(start), cache == "1"))
        return 0
    if not 1 <= args.segments <= 10 or args.clients < 1 or args.rounds < 1:
        parser.error("--segments must be in 1..10 (the window holds 15), --clients and --rounds >= 1")
    from server.config import default_cache_dir

    root = ensure_title(default_cache_dir() / "bench-live")
    start_s = time.time() - CHANNEL_AGE_S
    children, urls = {}, {}
    try:
        for cache in (True, False):
            child = subprocess.Popen([sys.executable, __file__, "--serve", str(root), repr(start_s), "1" if cache else "0"],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
            children[cache] = child
            line = child.stdout.readline() if child.stdout else ""
            if not line.startswith("ready "):
                raise SystemExit(f"the origin did not start: {line!r}")
            urls[cache] = line.split()[1]
        results: dict[bool, list[dict[str, Any]]] = {True: [], False: []}
        for _ in range(args.rounds):
            for cache in (False, True):
                results[cache].append(asyncio.run(one_round(urls[cache], start_s, args.clients, args.segments)))
    finally:
        for child in children.values():
            if child.stdin:
                child.stdin.close()
            child.wait(10)
    micro = in_process(root, start_s)
    cached = statistics.median(r["cpu_per_request_ms"] for r in results[True])
    uncached = statistics.median(r["cpu_per_request_ms"] for r in results[False])
    failed = sum(r["failed"] for rs in results.values() for r in rs)
    load = os.getloadavg()[0]
    out = {"clients": args.clients, "segments": args.segments, "rounds": args.rounds,
           "requests_per_round": results[True][0]["requests"], "failed": failed,
           "cpu_per_request_ms_cached": round(cached, 4), "cpu_per_request_ms_uncached": round(uncached, 4),
           "ratio_cached_to_uncached": round(cached / uncached, 3), "segment_build_us": round(micro["build_us"], 1),
           "cache_hit_us": round(micro["hit_us"], 2), "load_avg_1min": round(load, 2)}
    print(f"live origin, {args.clients} direct clients x {results[True][0]['requests'] // args.clients} requests "
          f"({args.segments} segments: {PARTS} parts each, then whole), {args.rounds} rounds each way, load {load:.1f}")
    print(f"  CPU per request: cached {cached:.3f} ms, uncached {uncached:.3f} ms: ratio {cached / uncached:.2f}"
          f"  (failed requests: {failed})")
    print(f"  one segment's build {micro['build_us']:.0f} us, a cache hit {micro['hit_us']:.2f} us (in-process)")
    if args.json:
        args.json.write_text(json.dumps(out, indent=2) + "\n")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
