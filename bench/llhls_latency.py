"""Live latency of the headless player on the stack's low-latency channel over a steady shaped link:
LL-HLS (parts, blocking playlist reloads) against whole-segment HLS on the same playlists and against
DASH low latency (CMAF chunks over chunked transfer), the reference measured in the same run.

One stack (the demo title looped as channel `live`, 0.5 s chunks; `abrkit serve --live
--low-latency`) serves all three; each mode plays `--duration-s` after the other through its own
shaped link (`--trace`, default a steady 5 Mbit/s, 40 ms RTT). Prints latency p50/p95/max, stalls,
requests, and each mode's p50 as a ratio of DASH's.

    python bench/llhls_latency.py [--duration-s 60] [--trace constant:5e6] [--json FILE]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

MODES = (("dash-ll", "auto", True), ("ll-hls", "hls", True), ("hls-whole-segments", "hls", False))


async def run(duration_s: float, trace: str) -> dict[str, dict[str, Any]]:
    from netsim.sources import open_trace
    from player.client.harness import LinkConfig, TitleTarget, play_headless
    from player.client.headless import PlayerConfig
    from player.client.hlslive import HlsLivePlayer
    from player.client.liveplay import LivePlayConfig
    from server.config import StackConfig, default_cache_dir
    from server.stack import ensure_demo_title, start_stack_with_demo_user

    root = default_cache_dir()
    content = root / "content"
    await asyncio.to_thread(ensure_demo_title, content)
    config = StackConfig(config_path=root / "bench-llhls" / "stack.json", content_root=content, port=0,
                         access_log=False, live_title="demo", low_latency=True)
    out: dict[str, dict[str, Any]] = {}
    async with start_stack_with_demo_user(config) as (stack, credentials):
        for name, protocol, parts in MODES:
            HlsLivePlayer.play_parts = parts
            target = TitleTarget(title="live", gateway_url=stack.gateway_url, username=credentials.username,
                                 password=credentials.password, protocol=protocol)  # type: ignore[arg-type]
            started = time.perf_counter()
            cpu = time.process_time()
            report = await play_headless(target, PlayerConfig(abr="dynamic", decode="none"),
                                         link=LinkConfig(trace=open_trace(trace), rtt_ms=40),
                                         live=LivePlayConfig(duration_s=duration_s))
            live = dict(report.live or {})
            out[name] = {"error": report.error, "wall_s": round(time.perf_counter() - started, 1),
                         "cpu_s": round(time.process_time() - cpu, 2),
                         **{k: live.get(k) for k in ("latency_p50_s", "latency_p95_s", "latency_max_s", "stalls",
                                                     "rebuffer_s", "target_latency_s", "chunk_s", "played_s",
                                                     "ll_hls_parts", "part_requests", "blocking_reloads",
                                                     "playlist_reloads", "throughput_p50_bps")}}
    HlsLivePlayer.play_parts = True
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration-s", type=float, default=60.0, help="seconds each mode plays")
    parser.add_argument("--trace", default="constant:5e6")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    print(f"live latency on the low-latency channel, {args.trace}, {args.duration_s:g} s per mode "
          f"(load average {os.getloadavg()[0]:.1f})")
    results = asyncio.run(run(args.duration_s, args.trace))
    reference = results["dash-ll"].get("latency_p50_s") or float("nan")
    for name, r in results.items():
        if r["error"]:
            print(f"  {name:<19} ERROR {r['error']}")
            continue
        print(f"  {name:<19} latency p50 {r['latency_p50_s']:.2f} s p95 {r['latency_p95_s']:.2f} s max "
              f"{r['latency_max_s']:.2f} s (target {r['target_latency_s']:g} s), {r['stalls']} stalls, "
              f"{r['played_s']:.0f} s played; p50 {r['latency_p50_s'] / reference:.2f}x DASH's; "
              f"{r['part_requests'] or 0} parts, {r['blocking_reloads'] or 0} blocking reloads, cpu {r['cpu_s']} s")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
