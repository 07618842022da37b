"""Fleet scale on one machine: shared bottlenecks, a release-night flash crowd and predictive placement, in one run.

0. Shared bottlenecks (`bench/fairness.py`, run in this process with the arguments of `--fairness`):
   the fairness table, ABR x N players per link, simulation vs emulation, with its statistics.
1. Flash crowd (`abrkit crowd`): K = 1,000 sessions of a new title press play within 60 s at 10x
   time-warp, while 20 sessions of another title are already playing, against the stack in
   processes mode (two edges); the same 20 sessions first play alone (the quiet baseline, the
   reference measured in the same run). Prints start-up p50/p95, origin requests per media segment,
   shed requests, and the playing sessions' QoE with the crowd vs alone.
   The titles are low-bitrate (50-200 kbit/s video, 32 kbit/s audio, encrypted): 1,000 sessions at
   10x move K x bitrate x 10 through one machine's loopback, which bounds the bitrate, not the
   request rate (docs/FLEET.md).
2. Cache simulator (`abrkit placement simulate`): a million-request synthetic day replayed against
   the edges' ByteLRU, LRU alone vs LRU plus the planned placement, with its requests/s; the
   reference is a bare OrderedDict LRU loop over the same log (what the edge's cache class costs).

    python bench/fleet.py [--fairness "ARGS"] [--sessions 1000] [--speed 10] [--requests 1000000] [--json FILE]
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import os
import shlex
import sys
import tempfile
import time
from collections import OrderedDict
from pathlib import Path
from typing import Any

from player.research.crowd import CrowdConfig, CrowdSetup, run_crowd_stack, summary_lines
from server.cachesim import RequestLog, compare, scaled_to, synthesize
from server.commands.placement import comparison_lines
from server.config import default_cache_dir
from server.packager import PackageConfig, package, parse_ladder
from server.packaging.demo import DemoClipConfig, write_demo_source
from server.placement import default_model, plan_placement

LADDER = "72p:50k,108p:100k,144p:200k"
TITLES = {"premiere": 60.0, "catalogue": 180.0}  # seconds of media
STAMP = {"format": 1, "ladder": LADDER, "titles": TITLES, "audio_bps": 32_000, "size": [256, 144]}
HOUR_S = 3600.0


def bench_titles() -> Path:
    """The two titles, packaged once under the abrkit cache (a minute or two the first time)."""
    root = default_cache_dir() / "bench-fleet"
    stamp = root / "stamp.json"
    if stamp.is_file() and json.loads(stamp.read_text()) == STAMP:
        return root / "content"
    root.mkdir(parents=True, exist_ok=True)
    for title, duration_s in TITLES.items():
        print(f"packaging {title} ({duration_s:g} s) on first use", file=sys.stderr, flush=True)
        source = write_demo_source(root / f"{title}.mp4", DemoClipConfig(duration_s=duration_s, width=256, height=144))
        package(source, root / "content" / title,
                PackageConfig(ladder=parse_ladder(LADDER), preset="veryfast", encrypt=True, audio_bitrate_bps=32_000,
                              overwrite=True), title=title)
    stamp.write_text(json.dumps(STAMP))
    return root / "content"


def flash_crowd(args: argparse.Namespace) -> dict[str, Any]:
    content = bench_titles()
    config = CrowdConfig(sessions=args.sessions, within_s=args.within_s, speed=args.speed, playing=args.playing,
                         lead_s=20.0, link_mean_bps=1e6, workers=args.workers)
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="abrkit-bench-fleet-") as tmp:
        setup = CrowdSetup(release_dir=content / "premiere", catalogue_dir=content / "catalogue", work_dir=Path(tmp))
        report = asyncio.run(run_crowd_stack(config, setup))
    print("\n".join(summary_lines(report)))
    f = report.figures
    playing = f["playing"]
    print(f"\nflash crowd, K = {args.sessions} at {args.speed:g}x on {os.cpu_count()} cores "
          f"(load average {load_before[0]:.1f} -> {os.getloadavg()[0]:.1f}):")
    print(f"  start-up p95                {_num(f['crowd']['startup_s']['p95'])} s (session time; p50 "
          f"{_num(f['crowd']['startup_s']['p50'])} s)")
    segments = f["origin"]["media_segment_requests"] or {}
    print(f"  origin requests per segment {_num(f['origin']['per_media_segment'])} per edge serving it "
          f"({segments.get('requests')} origin GETs for {segments.get('segments')} segments on "
          f"{f['origin']['edge_segment_pairs']} (edge, segment) pairs)")
    print(f"  shed requests (429/503)     {f['shedding']['shed_requests']}")
    if "baseline" in playing:
        base, now = playing["baseline"]["qoe_lin_mean"], playing["with_crowd"]["qoe_lin_mean"]
        ratio = now / base if base else None
        print(f"  QoE of playing sessions     {_num(now)} with the crowd vs {_num(base)} alone "
              f"(ratio {_num(ratio)}; rebuffering {playing['with_crowd']['rebuffer_s_total']} s vs "
              f"{playing['baseline']['rebuffer_s_total']} s)")
    return {"figures": f, "config": report.config, "loadavg": [load_before[0], os.getloadavg()[0]]}


def bare_lru_rps(log: RequestLog, cache_bytes: int) -> float:
    """The reference: the same requests through a plain OrderedDict LRU per edge, no TTLs or rules."""
    caches: list[OrderedDict[str, int]] = [OrderedDict() for _ in log.edges]
    used = [0] * len(log.edges)
    keys, sizes = log.keys, log.sizes.tolist()
    started = time.perf_counter()
    for e, o in zip(log.edge.tolist(), log.obj.tolist()):
        cache, key = caches[e], keys[o]
        if key in cache:
            cache.move_to_end(key)
            continue
        size = sizes[o]
        while used[e] + size > cache_bytes and cache:
            used[e] -= cache.popitem(last=False)[1]
        cache[key] = size
        used[e] += size
    return len(log) / (time.perf_counter() - started)


def cache_simulator(args: argparse.Namespace) -> dict[str, Any]:
    duration_s = 30 * HOUR_S
    plan_at_s = 6 * HOUR_S
    started = time.perf_counter()
    model = scaled_to(default_model(), requests=args.requests, duration_s=duration_s)
    log = synthesize(model, duration_s=duration_s, seed=1)
    made_s = time.perf_counter() - started
    plan = plan_placement(model, plan_at_s=plan_at_s, horizon_s=duration_s - plan_at_s)
    result = compare(log, model, plan, measure_from_s=plan_at_s)
    reference = bare_lru_rps(log, model.edges[0].cache_bytes)
    lru, placed = result.lru, result.placed
    print(f"\ncache simulator: {len(log)} synthetic requests over 30 h (made in {made_s:.1f} s), 6 edges of "
          f"{model.edges[0].cache_bytes / 1e9:.0f} GB, placement budget {model.edges[0].budget_bytes / 1e9:.0f} GB each, "
          f"{len(plan.items)} pushes; counted from hour 6")
    for line in comparison_lines(result):
        print("  " + line)
    print(f"  replay speed: {lru.requests_per_s / 1e3:.0f}k requests/s through ByteLRU with the edge's rules, "
          f"{reference / 1e3:.0f}k/s through a bare OrderedDict LRU (ratio {lru.requests_per_s / reference:.2f})")
    egress_saved = 1 - placed.origin_bytes / lru.origin_bytes if lru.origin_bytes else 0.0
    print(f"  placement: hit ratio {lru.hit_ratio:.3f} -> {placed.hit_ratio:.3f}, origin egress "
          f"{lru.origin_bytes / 1e9:.1f} -> {placed.origin_bytes / 1e9:.1f} GB ({100 * egress_saved:.1f}% less, plus "
          f"{placed.fill_bytes / 1e9:.1f} GB pushed ahead), release windows {lru.window_hit_ratio:.3f} -> "
          f"{placed.window_hit_ratio:.3f}")
    return {**result.as_dict(), "reference_rps": round(reference), "log_requests": len(log), "log_made_s": made_s}


def fairness_table(args: argparse.Namespace) -> dict[str, Any]:
    """`bench/fairness.py` with `--fairness`'s arguments, in this process: its tables on stdout, its figures back."""
    spec = importlib.util.spec_from_file_location("bench_fairness", Path(__file__).with_name("fairness.py"))
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    print("shared bottlenecks: python bench/fairness.py " + args.fairness, flush=True)
    with tempfile.TemporaryDirectory(prefix="bench-fleet-fairness-") as tmp:
        out = Path(tmp) / "fairness.json"
        module.main([*shlex.split(args.fairness), "--json", str(out)])
        return json.loads(out.read_text()) if out.is_file() else {}


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:.3g}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=1000, help="K: the crowd (default 1000)")
    parser.add_argument("--within-s", type=float, default=60.0, help="T: the crowd arrives within (default 60)")
    parser.add_argument("--speed", type=float, default=10.0, help="time-warp (default 10)")
    parser.add_argument("--playing", type=int, default=20, help="M: sessions already playing (default 20)")
    parser.add_argument("--workers", type=int, default=2, help="crowd processes (default 2)")
    parser.add_argument("--requests", type=int, default=1_000_000, help="cache simulator log size (default 1M)")
    parser.add_argument("--fairness", default="--abr bba,bola --players 1,2,4,8",
                        help='arguments of bench/fairness.py for the shared-bottleneck table (default "%(default)s")')
    parser.add_argument("--skip-fairness", action="store_true")
    parser.add_argument("--skip-crowd", action="store_true")
    parser.add_argument("--skip-cache", action="store_true")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args(argv)
    out: dict[str, Any] = {}
    if not args.skip_fairness:
        out["shared_bottlenecks"] = fairness_table(args)
    if not args.skip_crowd:
        out["flash_crowd"] = flash_crowd(args)
    if not args.skip_cache:
        out["cache_simulator"] = cache_simulator(args)
    if args.json:
        args.json.write_text(json.dumps(out, indent=1, default=str) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
