"""Many LL-HLS clients against one edge: origin requests per part for blocking playlist reloads and
for parts, and how long after its publication each client had each part, with the edge's live
coalescing on, and off as the reference measured in the same run.

The channel, title and servers are bench/live_edge.py's (2 s segments of four 0.5 s parts; origin
and edge in a child process). Each client, like hls.js in lowLatencyMode at the live edge, asks for
every part of `--parts` consecutive parts at once two ways: a blocking playlist reload for it
(`_HLS_msn=M&_HLS_part=i`) and the part itself (as its preload hint names it), both held until the
part is published, sent at a random 0-0.2 s after the part before it was (as its playlist
named this part). Clients connect at a random 0-1 s before the first part.

    python bench/llhls_edge.py [--clients 1000] [--parts 8] [--json FILE]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parent))
from live_edge import CHANNEL, CHUNK_S, REP, SEGMENT_S, _pct, bench_servers, ensure_title, raise_open_files_limit  # noqa: E402

PER_SEGMENT = round(SEGMENT_S / CHUNK_S)


def published_at(start_s: float, msn: int, part: int) -> float:
    return start_s + (msn - 1) * SEGMENT_S + (part + 1) * CHUNK_S


async def client(http: aiohttp.ClientSession, edge_url: str, start_s: float, parts: list[tuple[int, int]],
                 rng: random.Random, out: list[tuple[float, float, int]]) -> None:
    await asyncio.sleep(rng.uniform(0.0, 1.0))
    async with http.get(f"{edge_url}/time") as response:  # connect first, as live_edge.py's clients do
        await response.read()
    base = f"{edge_url}/{CHANNEL}/video/{REP}/"
    for msn, part in parts:
        made = published_at(start_s, msn, part)
        # As a player at the live edge does: the previous answer named this part (its preload hint),
        # so both requests go out up to a part before it is published.
        await asyncio.sleep(max(0.0, made - CHUNK_S + rng.uniform(0.0, 0.2) - time.time()))

        async def playlist() -> tuple[int, float]:
            async with http.get(f"{base}playlist.m3u8?_HLS_msn={msn}&_HLS_part={part}") as response:
                text = await response.text()
                ok = response.status == 200 and f'"{msn}.{part}.m4s"' in text
            return (200 if ok else response.status), time.time()

        async def media() -> tuple[int, float]:
            async with http.get(f"{base}{msn}.{part}.m4s") as response:
                await response.read()
                return response.status, time.time()

        (p_status, p_at), (m_status, m_at) = await asyncio.gather(playlist(), media())
        out.append((p_at - made, m_at - made, 200 if p_status == m_status == 200 else p_status * 1000 + m_status))


async def run_clients(edge_url: str, origin_url: str, start_s: float, clients: int, count: int) -> dict[str, Any]:
    rng = random.Random(7)
    first = int((time.time() + 2.5 - start_s) // SEGMENT_S) + 1  # a segment whose parts are all ahead
    parts = [(first + k // PER_SEGMENT, k % PER_SEGMENT) for k in range(count)]
    results: list[tuple[float, float, int]] = []
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=120)) as http:
        await asyncio.gather(*(client(http, edge_url, start_s, parts, rng, results) for _ in range(clients)))
        async with http.get(origin_url + "/bench/counts") as response:
            counts = await response.json()
    path = f"/{CHANNEL}/video/{REP}/"
    reloads = [counts.get(f"{path}playlist.m3u8?_HLS_msn={m}&_HLS_part={p}", 0) for m, p in parts]
    fetched = [counts.get(f"{path}{m}.{p}.m4s", 0) for m, p in parts]
    ok = [r for r in results if r[2] == 200]
    playlist_after = sorted(r[0] * 1000 for r in ok)
    part_after = sorted(r[1] * 1000 for r in ok)
    return {"requests": 2 * len(results), "failed": len(results) - len(ok), "parts": parts,
            "origin_reloads_per_part": reloads, "origin_part_fetches_per_part": fetched,
            "playlist_after_publication_p50_ms": _pct(playlist_after, 50),
            "playlist_after_publication_p95_ms": _pct(playlist_after, 95),
            "part_after_publication_p50_ms": _pct(part_after, 50), "part_after_publication_p95_ms": _pct(part_after, 95)}


def measure(root: Path, clients: int, count: int, coalescing: bool) -> dict[str, Any]:
    with bench_servers(root, coalescing) as (origin_url, edge_url, start_s):  # live_edge.py's, LL-HLS included
        return asyncio.run(run_clients(edge_url, origin_url, start_s, clients, count))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=1000)
    parser.add_argument("--parts", type=int, default=8, help="consecutive parts each client fetches")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    raise_open_files_limit(6 * args.clients + 1024)
    from server.config import default_cache_dir
    root = ensure_title(default_cache_dir() / "bench-live")
    print(f"LL-HLS edge: {args.clients} clients, {args.parts} parts of {CHUNK_S:g} s (load average "
          f"{os.getloadavg()[0]:.1f})")
    results = {"coalescing": measure(root, args.clients, args.parts, True),
               "reference (coalescing off)": measure(root, args.clients, args.parts, False)}
    for name, r in results.items():
        print(f"  {name:<27} origin requests per part: blocking reloads {r['origin_reloads_per_part']}, "
              f"parts {r['origin_part_fetches_per_part']}; had after publication: playlist p50 "
              f"{r['playlist_after_publication_p50_ms']} ms p95 {r['playlist_after_publication_p95_ms']} ms, part "
              f"p50 {r['part_after_publication_p50_ms']} ms p95 {r['part_after_publication_p95_ms']} ms; "
              f"{r['failed']} of {r['requests'] // 2} client parts failed")
    on, off = results["coalescing"], results["reference (coalescing off)"]
    total_on = sum(on["origin_reloads_per_part"]) + sum(on["origin_part_fetches_per_part"])
    total_off = sum(off["origin_reloads_per_part"]) + sum(off["origin_part_fetches_per_part"])
    print(f"  ratio: {total_off / max(1, total_on):.0f}x fewer origin requests with coalescing")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
