"""Emulation at scale through the experiment runner: throughput, concurrency limit, sim-vs-emulation gap.

1. Concurrency at 1x: N emulated sessions at once (bba, Pensieve test traces cycled with seeded
   offsets, 2 worker processes, the stack in this process), N growing until the run falls behind.
   "Behind": more than 5% of segment downloads take longer than 1.1 x the link model's time for the
   same request on the same trace (the simulator's download model, which the shaper applies) plus
   20 ms of wall time - i.e. shaper, player or stack delivered < ~90% of the trace's capacity while
   the player was waiting for bytes - or any session fails.
2. Throughput: emulated sessions completed per wall-minute at speed 1 (the largest N that keeps up)
   and at speed 10 (N growing likewise), with CPU time of this process and its workers.
3. Gap: bba and mpc-robust on 20 Pensieve public test traces (every 3rd by name), `--mode both` at
   speed 1 (all 40 sessions at once); mean QoE_lin emulate vs sim (paired per trace, bootstrap 95%
   CI); then the same at speed 10 (10 at once) and emulated speed 10 vs speed 1 (issue 5, item 7).

Prints, never asserts. The title (4 rungs up to 360p, 300k-1850k like Pensieve's lower rungs) is
packaged once into the bench cache.

    python bench/emulation_scale.py [--quick] [--sessions 25,50,...] [--sessions-speed10 10,20,...]
                                    [--skip-concurrency] [--skip-gap] [--duration-s 120]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from netsim.formats import load_traces
from netsim.trace import Trace
from player.research.experiment import Content, ExperimentConfig, Row, open_content, run_experiment
from player.research.experiment_report import compare, ok_rows, sim_emulation_gaps
from player.research.sim import profile
from server.config import default_cache_dir
from server.packager import PackageConfig, package_source, parse_ladder
from server.packaging.demo import DemoClipConfig
from server.packaging.source import DemoSource

REPO_ROOT = Path(__file__).resolve().parents[1]

TRACE_DIR = REPO_ROOT.parent / "shared" / "traces" / "pensieve" / "test-public"
LADDER = "144p:300k,216p:750k,288p:1200k,360p:1850k"
LATE_FACTOR = 1.10
LATE_SLACK_WALL_S = 0.02
MAX_LATE_FRACTION = 0.05
WORKERS = 2


def bench_title(duration_s: float) -> Path:
    """The bench title in the cache, packaged on first use (veryfast, 640x360 demo clip)."""
    content = default_cache_dir() / "bench" / "emulation-content"
    name = f"bench360-{duration_s:g}s"
    title_dir = content / name
    stamp = {"ladder": LADDER, "duration_s": duration_s, "format": 1}
    stamp_path = title_dir / ".bench-stamp.json"
    if stamp_path.is_file() and json.loads(stamp_path.read_text()) == stamp and (title_dir / "segments.json").is_file():
        return title_dir
    print(f"packaging {name} (first run only) ...", flush=True)
    clip = DemoClipConfig(duration_s=duration_s, width=640, height=360)
    package_source(DemoSource(clip), title_dir,
                   PackageConfig(ladder=parse_ladder(LADDER), preset="veryfast", overwrite=True), title=name)
    stamp_path.write_text(json.dumps(stamp))
    return title_dir


def load() -> str:
    one, five, _ = os.getloadavg()
    return f"load {one:.1f}/{five:.1f}"


def cpu_s() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)  # workers, once the pool has joined them
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


@dataclass(frozen=True, kw_only=True, slots=True)
class Step:
    sessions: int
    speed: float
    wall_s: float
    cpu_s: float
    failed: int
    late_fraction: float  # of segment downloads
    ratio_p50: float  # emulated / model download time
    ratio_p95: float
    lag_p99_ms: float  # worst worker event-loop lag (p99 per task)
    stack_lag_p99_ms: float  # the stack's event loop (this process)
    load: str

    @property
    def behind(self) -> bool:
        return self.failed > 0 or self.late_fraction > MAX_LATE_FRACTION

    @property
    def per_minute(self) -> float:
        return self.sessions / self.wall_s * 60


def lateness(rows: list[Row], speed: float) -> tuple[float, float, float]:
    """(fraction of late downloads, p50 and p95 of emulated / model download time)."""
    measured = np.concatenate([r["timeline"]["download_s"] for r in rows])
    model = np.concatenate([r["timeline"]["model_download_s"] for r in rows])
    late = measured > LATE_FACTOR * model + LATE_SLACK_WALL_S * speed
    ratio = measured / np.maximum(model, 1e-6)
    return float(late.mean()), float(np.percentile(ratio, 50)), float(np.percentile(ratio, 95))


def run(config: ExperimentConfig, content: Content, traces: list[Trace],
        out: Path) -> tuple[list[Row], float, float, float]:
    """(rows, wall s, CPU s of this process and its workers, p99 lag of this process's loop, the stack's, in ms)."""
    cpu0, wall0 = cpu_s(), time.monotonic()
    summary = run_experiment(config, content, traces, out, progress=False, notify=lambda m: None)
    return list(summary.rows), time.monotonic() - wall0, cpu_s() - cpu0, summary.loop_lag_p99_ms or math.nan


def concurrency_step(content: Content, traces: list[Trace], sessions: int, speed: float, keep: Path | None,
                     stack_processes: bool) -> Step:
    chosen = [traces[i % len(traces)] for i in range(sessions)]
    config = ExperimentConfig(abrs=("bba",), modes=("emulate",), profile=profile("default"), speed=speed,
                              workers=WORKERS, sessions_per_worker=math.ceil(sessions / WORKERS), seed=sessions,
                              stack_processes=stack_processes)
    before = load()
    with tempfile.TemporaryDirectory(prefix="emulation-scale-") as scratch:
        out = keep / f"speed{speed:g}-n{sessions}" if keep is not None else Path(scratch)
        if (out / "results.jsonl").exists():
            (out / "results.jsonl").unlink()  # a fresh measurement, not a resumed one
        rows, wall_s, cpu, stack_lag = run(config, content, chosen, out)
    good = ok_rows(rows)
    late, p50, p95 = lateness(good, speed) if good else (1.0, math.nan, math.nan)
    return Step(sessions=sessions, speed=speed, wall_s=wall_s, cpu_s=cpu, failed=len(rows) - len(good) + sessions - len(rows),
                late_fraction=late, ratio_p50=p50, ratio_p95=p95, stack_lag_p99_ms=stack_lag,
                lag_p99_ms=max((r.get("loop_lag_p99_ms", 0.0) for r in good), default=math.nan), load=f"{before} -> {load()}")


def concurrency(content: Content, traces: list[Trace], steps: list[int], speed: float, keep: Path | None,
                stack_processes: bool) -> Step | None:
    media_s = content.video.duration_s
    where = "one process per service" if stack_processes else "embedded in this process"
    print(f"\n== speed {speed:g}: N concurrent emulated sessions ({media_s:g} s title, bba, {WORKERS} workers, "
          f"stack {where})")
    print(f"{'N':>5} {'wall s':>7} {'sess/min':>8} {'CPU s':>7} {'CPU/wall':>8} {'late':>6} {'ratio p50':>9} "
          f"{'p95':>6} {'lag p99':>8} {'stack lag':>9} {'failed':>6}  load before -> after")
    best = None
    for n in steps:
        s = concurrency_step(content, traces, n, speed, keep, stack_processes)
        print(f"{s.sessions:5d} {s.wall_s:7.1f} {s.per_minute:8.1f} {s.cpu_s:7.1f} {s.cpu_s / s.wall_s:8.2f} "
              f"{s.late_fraction:6.1%} {s.ratio_p50:9.3f} {s.ratio_p95:6.3f} {s.lag_p99_ms:6.0f}ms {s.stack_lag_p99_ms:7.0f}ms "
              f"{s.failed:6d}  {s.load}"
              + ("  <- behind" if s.behind else ""), flush=True)
        if s.behind:
            break
        best = s
    if best is None:
        print("behind already at the first step")
    else:
        print(f"largest N keeping up at speed {speed:g}: {best.sessions}"
              + (" (not reached: raise --sessions)" if best.sessions == steps[-1] else "")
              + f"; {best.per_minute:.1f} sessions per wall-minute ({best.per_minute * media_s / 60:.0f} media-minutes "
                f"per wall-minute), {best.cpu_s / best.sessions:.2f} CPU s per session")
    return best


def gap(content: Content, traces: list[Trace], per_worker_speed10: int, repeats: int, keep: Path | None,
        stack_processes: bool) -> None:
    where = "one process per service" if stack_processes else "embedded"
    print(f"\n== sim vs emulation: bba, mpc-robust on {len(traces)} Pensieve public test traces, "
          f"{content.name}, profile default, stack {where}, {repeats} repeat(s)")
    relative: dict[tuple[str, str], list[float]] = {}
    for repeat in range(repeats):
        with tempfile.TemporaryDirectory(prefix="emulation-gap-") as scratch:
            out = keep / f"gap-{repeat + 1}" if keep is not None else Path(scratch)
            if (out / "results.jsonl").exists():
                (out / "results.jsonl").unlink()
            results: dict[float, list[Row]] = {}
            # Every session at once at 1x; at 10x fewer, within what keeps up at that speed.
            for speed, per_worker in ((1.0, len(traces)), (10.0, per_worker_speed10)):
                config = ExperimentConfig(abrs=("bba", "mpc-robust"), modes=("sim", "emulate"),
                                          profile=profile("default"), speed=speed, workers=WORKERS,
                                          sessions_per_worker=per_worker, stack_processes=stack_processes)
                before = load()
                rows, wall_s, cpu, _ = run(config, content, traces, out)
                failed = len(rows) - len(ok_rows(rows))
                emulated = [r for r in ok_rows(rows) if r["mode"] == "emulate"]
                late, p50, p95 = lateness(emulated, speed)
                print(f"\n[{repeat + 1}] speed {speed:g}: {WORKERS * per_worker} sessions at once, {wall_s:.0f} s wall, "
                      f"{cpu:.0f} CPU s, {failed} failed, late downloads {late:.1%} (ratio p50 {p50:.3f}, p95 {p95:.3f}), "
                      f"worst loop lag p99 {max(r['loop_lag_p99_ms'] for r in emulated):.0f} ms; {before} -> {load()}")
                for g in sim_emulation_gaps(rows):
                    print(f"  {g.abr:11} sim {g.base_mean:7.2f}  emulate {g.other_mean:7.2f}  emulate - sim "
                          f"{g.difference.mean:+6.2f} [{g.difference.low:+.2f}, {g.difference.high:+.2f}]  "
                          f"({g.relative_pct:+.1f}% of sim)")
                    relative.setdefault((f"emulate K={speed:g} vs sim", g.abr), []).append(g.relative_pct)
                results[speed] = emulated
            print(f"[{repeat + 1}] speed 10 vs speed 1, emulated (paired per trace):")
            for g in compare(results[1.0], results[10.0]):
                print(f"  {g.abr:11} K=1 {g.base_mean:7.2f}  K=10 {g.other_mean:7.2f}  K10 - K1 {g.difference.mean:+6.2f} "
                      f"[{g.difference.low:+.2f}, {g.difference.high:+.2f}]  ({g.relative_pct:+.1f}% of K=1)")
                relative.setdefault(("emulate K=10 vs K=1", g.abr), []).append(g.relative_pct)
    if repeats > 1:
        print("\nrelative difference of mean QoE_lin over the repeats (mean, min..max):")
        for (what, abr), values in relative.items():
            print(f"  {what:22} {abr:11} {np.mean(values):+6.1f}%  {min(values):+.1f}%..{max(values):+.1f}%")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration-s", type=float, default=120.0, help="length of the bench title (default 120)")
    parser.add_argument("--sessions", default="25,50,100,150,200,300,400", help="concurrency steps at speed 1")
    parser.add_argument("--sessions-speed10", default="5,10,20,30,40,60,80", help="concurrency steps at speed 10")
    parser.add_argument("--gap-sessions-per-worker-speed10", type=int, default=5,
                        help="emulated sessions at once per worker in the speed-10 gap run (default 5)")
    parser.add_argument("--gap-repeats", type=int, default=1, help="repeat the gap runs (emulation varies run to run)")
    parser.add_argument("--out", type=Path, help="keep every run's results.jsonl here (one folder per run)")
    parser.add_argument("--stack-processes", action="store_true", help="serve the title with one process per service")
    parser.add_argument("--skip-concurrency", action="store_true")
    parser.add_argument("--skip-gap", action="store_true")
    parser.add_argument("--quick", action="store_true", help="a 40 s title, steps 10,20 and 5,10, no gap")
    args = parser.parse_args()
    if args.quick:
        args.duration_s, args.sessions, args.sessions_speed10, args.skip_gap = 40.0, "10,20", "5,10", True
    if not TRACE_DIR.is_dir():
        print(f"emulation_scale: skipped, no trace folder at {TRACE_DIR} (the shared data next to the repo)")
        return 0
    traces = load_traces([TRACE_DIR])
    content = open_content(str(bench_title(args.duration_s)), cache_dir=default_cache_dir())
    print(f"{os.cpu_count()} cores, {load()}; title {content.name}: {content.video.segment_count} x "
          f"{content.video.ladder.segment_duration_s:g} s, ladder {LADDER}")
    if not args.skip_concurrency:
        for speed, steps in ((1.0, args.sessions), (10.0, args.sessions_speed10)):
            concurrency(content, traces, [int(s) for s in steps.split(",")], speed, args.out, args.stack_processes)
    if not args.skip_gap:
        gap(content, traces[:: len(traces) // 20][:20], args.gap_sessions_per_worker_speed10, args.gap_repeats, args.out,
            args.stack_processes)
    return 0


if __name__ == "__main__":
    sys.exit(main())
