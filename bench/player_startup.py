"""Player startup and CPU cost on loopback (issue 5 item 10).

1. Startup: token -> first decoded frame, through the whole stack (gateway, auth, playback API,
   license, edge), unshaped, p50/p99 over N runs (goal p99 <= 100 ms). The reference measured in
   the same run is the floor of that path: one scrypt password check (what the token costs by
   design) plus one GET of the first segment and its decode, without the rest of the protocol.
2. CPU per concurrent headless session at 1x with `--decode none` and `--decode all`: process CPU
   seconds per second of media, with S sessions at once.

    python bench/player_startup.py [--runs 50] [--sessions 8]
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

import aiohttp

from player.client.bootstrap import PREROLL_STEPS
from player.client.harness import TitleTarget, pipeline_factory, play_headless
from player.client.headless import PlayerConfig
from player.media.decoder import SegmentDecoder
from server.config import RateLimitPolicy, StackConfig
from server.packager import ensure_demo_title
from server.stack import start_stack_with_demo_user


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


async def startup(gateway: str, password: str, runs: int) -> list[float]:
    times = []
    for _ in range(runs):
        target = TitleTarget(title="demo", gateway_url=gateway, username="demo", password=password)
        report = await play_headless(target, PlayerConfig(abr="bba", max_segments=1),
                                     decoder_factory=pipeline_factory("all"))
        if report.error or report.first_frame_s is None:
            raise SystemExit(f"startup run failed: {report.error}")
        # first_frame_s counts from the manifest in hand (license and init segments are on the
        # session clock, PREROLL_STEPS); add the bootstrap steps before it.
        times.append(sum(v for k, v in report.bootstrap_s.items() if k not in PREROLL_STEPS) + report.first_frame_s)
    return times


async def floor(edge_url_of_segment: str, init_url: str, runs: int, key_hex: str | None) -> list[float]:
    times = []
    async with aiohttp.ClientSession() as http:
        init = await (await http.get(init_url)).read()
        for _ in range(runs):
            start = time.monotonic()
            hashlib.scrypt(b"password", salt=os.urandom(16), n=16384, r=8, p=1)
            async with http.get(edge_url_of_segment) as response:
                body = await response.read()
            SegmentDecoder(init, key_hex=key_hex).decode(body, mode="all")
            times.append(time.monotonic() - start)
    return times


async def cpu_per_session(gateway: str, password: str, sessions: int, decode: str) -> tuple[float, float]:
    """(CPU seconds per media second per session, wall seconds) for S concurrent sessions at 1x."""
    target = TitleTarget(title="demo", gateway_url=gateway, username="demo", password=password)
    config = PlayerConfig(abr="bba", decode=decode)
    factory = pipeline_factory(decode)
    cpu0, wall0 = time.process_time(), time.monotonic()
    reports = await asyncio.gather(*(play_headless(target, config, decoder_factory=factory) for _ in range(sessions)))
    cpu, wall = time.process_time() - cpu0, time.monotonic() - wall0
    media_s = sum(r.metrics.segments for r in reports) * 4.0
    return cpu / media_s, wall


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--sessions", type=int, default=8)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="abrkit-bench-") as tmp:
        cache = Path(os.environ.get("ABRKIT_BENCH_CACHE", Path.home() / ".cache" / "abrkit" / "bench"))
        content = cache / "content-20s"
        await asyncio.to_thread(ensure_demo_title, content, duration_s=20.0, height=720)
        # Every run logs in from this one address: the per-address login budget is for guessing clients.
        config = StackConfig(config_path=Path(tmp) / "stack.json", content_root=content, port=0, access_log=False,
                             login_rate_limit=RateLimitPolicy(rate_per_s=1000.0, burst=1000))
        async with start_stack_with_demo_user(config) as (stack, credentials):
            password = credentials.password
            await startup(stack.gateway_url, password, 3)  # warm caches (edge, page cache, imports)
            times = await startup(stack.gateway_url, password, args.runs)
            # The floor: same edge, same first segment at the ABR's first choice (bba: lowest rung).
            async with aiohttp.ClientSession() as http:
                async with http.post(f"{stack.gateway_url}/auth/token",
                                     json={"username": "demo", "password": password}) as r:
                    token = (await r.json())["access_token"]
                async with http.post(f"{stack.gateway_url}/playback/demo",
                                     headers={"Authorization": f"Bearer {token}"}) as r:
                    manifest_url = json.loads(await r.text())["manifest_urls"][0]
            base = manifest_url.rsplit("/", 1)[0]
            rep = json.loads((content / "demo" / "segments.json").read_text())["video"][0]["id"]
            keys_file = content / "demo" / "keys.json"
            key_hex = None
            if keys_file.exists():  # the bench may read the key store; the player gets keys by license only
                key_hex = next(k["key"] for k in json.loads(keys_file.read_text())["keys"]
                               if "video" in k["tracks"] or rep in k["tracks"])
            floor_times = await floor(f"{base}/video/{rep}/1.m4s", f"{base}/video/{rep}/init.mp4", args.runs,
                                      key_hex)
            p50, p99 = percentile(times, 50) * 1000, percentile(times, 99) * 1000
            f50 = statistics.median(floor_times) * 1000
            print(f"startup, token -> first decoded frame, {args.runs} runs, loopback, unshaped (720p demo, 2 edges)")
            print(f"  abrkit     p50 {p50:6.1f} ms   p99 {p99:6.1f} ms   (goal p99 <= 100 ms)")
            print(f"  floor      p50 {f50:6.1f} ms   (scrypt check + one segment GET + decode)")
            print(f"  ratio p50 abrkit / floor: {p50 / f50:.2f}")
            for decode in ("none", "all"):
                cost, wall = await cpu_per_session(stack.gateway_url, password, args.sessions, decode)
                print(f"CPU per session, {args.sessions} concurrent sessions at 1x, --decode {decode}: "
                      f"{100 * cost:.1f}% of one core per session ({wall:.1f} s wall)")
    return 0


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main()))
