"""One thousand live clients against one edge: origin fetches per chunk and time to first byte,
with the edge's live coalescing on, and off as the reference measured in the same run.

A title (8 s, 2 s segments, one 300 kbit/s rendition) is packaged once, then looped as a
low-latency live channel: 2 s segments published as four 0.5 s CMAF chunks over chunked transfer.
The origin and the edge run in a child process (one event loop, as `abrkit serve` embeds them); the
K clients run in this process on one asyncio loop. Each client asks, every segment, for the newest
segment as soon as its first chunk is out (plus a random 0-1.5 s, so most join while the segment is
still arriving) and reads it to the end. The origin counts the requests it gets per segment. Clients connect
(GET /time) before the first segment, as players hold a connection to their edge.

    python bench/live_edge.py [--clients 1000] [--segments 3] [--json FILE]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import aiohttp

CHANNEL = "live"
TITLE = "livesrc"
REP = "v216p"
SEGMENT_S = 2.0
CHUNK_S = 0.5
JOIN_SPREAD_S = 1.5


def ensure_title(root: Path) -> Path:
    """The looped title, packaged once into `root` (2 s segments, one low rung, veryfast)."""
    from server.config import default_cache_dir
    from server.packager import PackageConfig, package, parse_ladder
    from server.packaging.demo import DemoClipConfig, write_demo_source

    title_dir = root / TITLE
    if (title_dir / "manifest.mpd").is_file():
        return root
    root.mkdir(parents=True, exist_ok=True)
    source = write_demo_source(default_cache_dir() / "bench-live-src.mp4",
                               DemoClipConfig(duration_s=8.0, width=384, height=216, frame_rate=24))
    package(source, title_dir, PackageConfig(ladder=parse_ladder("216p:300k"), segment_s=SEGMENT_S, preset="veryfast"),
            title=TITLE)
    return root


# --- the servers (child process) ------------------------------------------------------------------

async def serve(root: Path, start_s: float, coalescing: bool) -> None:
    from aiohttp import web

    from server.config import EdgeConfig
    from server.edge import start_edge
    from server.keys import ed25519_public
    from server.live.channel import LiveConfig
    from server.origin import OriginConfig, create_app

    counts: Counter[str] = Counter()

    @web.middleware
    async def count(request: web.Request, handler: Any) -> web.StreamResponse:
        counts[request.path_qs] += 1  # with the query: bench/llhls_edge.py counts blocking reloads by it
        return await handler(request)

    async def report(request: web.Request) -> web.Response:
        return web.json_response(dict(counts))

    app = create_app(OriginConfig(content_root=root, port=0, live=LiveConfig(
        channel=CHANNEL, source_title=TITLE, availability_start_s=start_s, low_latency=True, chunk_s=CHUNK_S)))
    app.middlewares.append(count)
    app.router.add_get("/bench/counts", report)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, backlog=4096)
    await site.start()
    origin_url = f"http://127.0.0.1:{site.port}"
    edge = await start_edge(EdgeConfig(edge_id="bench-edge", origin_url=origin_url,
                                       url_verify_key=ed25519_public(bytes(range(32))), require_signature=False,
                                       live_channels=(CHANNEL,), live_coalescing=coalescing, origin_timeout_s=60))
    print(f"ready {origin_url} {edge.url}", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)  # until the parent closes stdin
    await edge.stop()
    await runner.cleanup()


# --- the clients (this process) -------------------------------------------------------------------

async def client(http: aiohttp.ClientSession, edge_url: str, start_s: float, numbers: list[int],
                 rng: random.Random, out: list[tuple[int, float, float, int]]) -> None:
    # Connect first (players hold a keep-alive connection to their edge): a thousand connects at the
    # same moment would measure the listen backlog, not the live path.
    await asyncio.sleep(rng.uniform(0.0, 1.0))
    async with http.get(f"{edge_url}/time") as response:
        await response.read()
    for number in numbers:
        first_chunk_at = start_s + (number - 1) * SEGMENT_S + CHUNK_S
        await asyncio.sleep(max(0.0, first_chunk_at + rng.uniform(0.0, JOIN_SPREAD_S) - time.time()))
        sent = time.perf_counter()
        first: float | None = None
        size = 0
        async with http.get(f"{edge_url}/{CHANNEL}/video/{REP}/{number}.m4s") as response:
            async for piece in response.content.iter_any():
                if first is None:
                    first = time.perf_counter()
                size += len(piece)
            status = response.status
        done = time.perf_counter()
        if status == 200 and first is not None:
            out.append((number, first - sent, done - sent, size))
        else:
            out.append((number, float("nan"), float("nan"), -status))


async def run_clients(edge_url: str, origin_url: str, start_s: float, clients: int, segments: int
                      ) -> dict[str, Any]:
    rng = random.Random(7)
    first_number = int((time.time() - start_s) // SEGMENT_S) + 3  # a segment whose first chunk is ahead
    numbers = list(range(first_number, first_number + segments))
    results: list[tuple[int, float, float, int]] = []
    connector = aiohttp.TCPConnector(limit=0, force_close=False)
    timeout = aiohttp.ClientTimeout(total=120)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as http:
        await asyncio.gather(*(client(http, edge_url, start_s, numbers, rng, results) for _ in range(clients)))
        async with http.get(origin_url + "/bench/counts") as response:
            counts = await response.json()
    ok = [r for r in results if r[3] > 0]
    failed = len(results) - len(ok)
    fetches = [counts.get(f"/{CHANNEL}/video/{REP}/{n}.m4s", 0) for n in numbers]
    chunks = round(SEGMENT_S / CHUNK_S)
    ttfb = sorted(r[1] * 1000 for r in ok)
    total = sorted(r[2] * 1000 for r in ok)
    return {
        "requests": len(results), "failed": failed, "segments": numbers,
        "origin_fetches_per_segment": fetches,
        "origin_fetches_per_chunk": max(fetches) / chunks if fetches else 0.0,
        "ttfb_p50_ms": _pct(ttfb, 50), "ttfb_p95_ms": _pct(ttfb, 95),
        "complete_p50_ms": _pct(total, 50), "complete_p95_ms": _pct(total, 95),
        "bytes_per_segment": statistics.median(r[3] for r in ok) if ok else 0,
    }


def _pct(values: list[float], q: int) -> float:
    if not values:
        return float("nan")
    return round(values[min(len(values) - 1, int(len(values) * q / 100))], 1)


@contextmanager
def bench_servers(root: Path, coalescing: bool) -> Iterator[tuple[str, str, float]]:
    """The origin and edge of a channel starting now (`serve`), in a process of their own so the
    clients' loop does not slow them; yields (origin URL, edge URL, the channel's start)."""
    start_s = float(int(time.time()))
    child = subprocess.Popen([sys.executable, __file__, "--serve", str(root), str(start_s), str(int(coalescing))],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None and child.stdin is not None
        line = child.stdout.readline().split()
        if not line or line[0] != "ready":
            raise RuntimeError("the bench servers did not start")
        yield line[1], line[2], start_s
    finally:
        if child.stdin is not None:
            child.stdin.close()
        child.wait(timeout=30)


def raise_open_files_limit(needed: int) -> None:
    """Room for `needed` open files (sockets), as far as the hard limit allows."""
    import resource
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, needed)), hard))


def measure(root: Path, clients: int, segments: int, coalescing: bool) -> dict[str, Any]:
    with bench_servers(root, coalescing) as (origin_url, edge_url, start_s):
        return asyncio.run(run_clients(edge_url, origin_url, start_s, clients, segments))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=1000)
    parser.add_argument("--segments", type=int, default=3, help="segments each client fetches")
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--serve", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        asyncio.run(serve(Path(args.serve[0]), float(args.serve[1]), args.serve[2] == "1"))
        return 0
    raise_open_files_limit(4 * args.clients + 1024)
    from server.config import default_cache_dir
    root = ensure_title(default_cache_dir() / "bench-live")
    print(f"live edge: {args.clients} clients, {args.segments} segments of {SEGMENT_S:g} s in {CHUNK_S:g} s chunks")
    results = {"coalescing": measure(root, args.clients, args.segments, True),
               "reference (coalescing off)": measure(root, args.clients, args.segments, False)}
    for name, r in results.items():
        print(f"  {name:<27} origin fetches per segment {r['origin_fetches_per_segment']} "
              f"(per chunk {r['origin_fetches_per_chunk']:.2f}), ttfb p50 {r['ttfb_p50_ms']} ms p95 {r['ttfb_p95_ms']} ms, "
              f"whole segment p50 {r['complete_p50_ms']} ms p95 {r['complete_p95_ms']} ms, "
              f"{r['failed']} of {r['requests']} requests failed")
    on, off = results["coalescing"], results["reference (coalescing off)"]
    if on["ttfb_p95_ms"] and off["ttfb_p95_ms"]:
        print(f"  ratio: origin fetches {sum(off['origin_fetches_per_segment']) / max(1, sum(on['origin_fetches_per_segment'])):.0f}x "
              f"fewer with coalescing; the reference's ttfb p95 is {off['ttfb_p95_ms'] / on['ttfb_p95_ms']:.2f}x")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
