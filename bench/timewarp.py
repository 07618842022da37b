"""Time-warp and reproducibility of emulated sessions (issue 18 item 3).

Runs the same emulated cells (algorithm x trace, the demo title, the `default` profile) at speed 1
and speed K, each `--repeats` times, plus the simulator once, all in this run, and prints:

1. per algorithm, mean QoE_lin over the traces: simulated, emulated at 1x and at K (mean of the
   repeats), and the ratios K vs 1x and 1x vs sim (goal: K within 5% of 1x);
2. per algorithm and speed, how much the same cell varies over the repeats: the range (max - min)
   of QoE_lin per trace, as a percentage of the cell's |mean| and in QoE units, its worst trace, and
   the range of the whole set's mean (goal: <= 2%);
3. the cells furthest apart between the speeds;
4. the per-request clock accounting, which a loaded machine does not move (wall-clock lateness is
   left out of session time): per download, emulated time - the link model's time for the same
   request; how many cells took the simulator's decisions segment for segment; and in those, how far
   the emulated requests drift from the simulator's (ms of trace time per request).

    python bench/timewarp.py [--abr bba,mpc-robust|all] [--traces N] [--only NAME,...] [--speeds 1,10]
                             [--repeats 5] [--at-once 40,10] [--out DIR] [--analyse-only]

Every emulated run goes to OUT/k{K}-r{i}/ (a rerun resumes them: finished cells are skipped) and the
simulator's to OUT/sim/. `--analyse-only` prints the tables from what OUT holds (e.g. runs made by
`abrkit run` linked in as k1-r1, k10-r1). The 1-minute load average is printed beside every run:
on a loaded machine the event loops wake late and, at speed K, K times as much trace time is lost.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from abr.types import UnsupportedLadder, check_ladder  # noqa: E402
from netsim.formats import load_traces  # noqa: E402
from player.research.experiment import ExperimentConfig, open_content, run_experiment  # noqa: E402
from player.research.sim import profile  # noqa: E402
from server.config import default_cache_dir  # noqa: E402

TRACE_DIR = REPO_ROOT.parent / "shared" / "traces" / "pensieve" / "test-public"
WORKERS = 2


def load() -> str:
    one, five, _ = os.getloadavg()
    return f"load {one:.1f}/{five:.1f}"


def twenty(count: int) -> list:
    """The 20-trace set of bench/emulation_scale.py: every len//20-th public test trace by name."""
    traces = load_traces([TRACE_DIR])
    return traces[:: max(1, len(traces) // 20)][:count]


def run_all(args: argparse.Namespace, abrs: tuple[str, ...], speeds: list[float], at_once: list[int]) -> None:
    traces = twenty(args.traces)
    if args.only:
        wanted = set(args.only.split(","))
        missing = wanted - {t.name for t in traces}
        if missing:
            raise SystemExit(f"--only: not in the {len(traces)}-trace set: {', '.join(sorted(missing))}")
        traces = [t for t in traces if t.name in wanted]
    content = open_content(args.title, cache_dir=default_cache_dir())
    playable = []
    for abr in abrs:  # `all` includes algorithms bound to other ladders (a learned model's)
        try:
            check_ladder(profile("default").make_abr(abr), content.video.ladder)
            playable.append(abr)
        except UnsupportedLadder as exc:
            print(f"skipped {abr}: {exc}")
    abrs = tuple(playable)
    print(f"{len(traces)} traces ({traces[0].name} ... {traces[-1].name}), {content.name}, {', '.join(abrs)}")
    jobs = [("sim", 1.0, 0, 64)] + [("emulate", k, r, n) for r in range(args.repeats) for k, n in zip(speeds, at_once)]
    for mode, speed, repeat, n in jobs:
        out = args.out / ("sim" if mode == "sim" else f"k{speed:g}-r{repeat + 1}")
        config = ExperimentConfig(abrs=abrs, modes=(mode,), profile=profile("default"), speed=speed, workers=WORKERS,
                                  sessions_per_worker=max(1, n // WORKERS))
        before, wall0 = load(), time.monotonic()
        summary = run_experiment(config, content, traces, out, progress=False, notify=lambda m: None)
        failed = sum(1 for r in summary.rows if r.get("error"))
        print(f"  {out.name:8} {mode:7} speed {speed:g}: {len(summary.rows)} sessions ({failed} failed), "
              f"{n if mode == 'emulate' else '-'} at once, {time.monotonic() - wall0:.0f} s wall; "
              f"{before} -> {load()}", flush=True)


def result_rows(out: Path):
    """(mode, speed, repeat) and the row, for every good row of every results.jsonl under `out`."""
    for path in sorted(out.glob("*/results.jsonl")):
        name = path.parent.name
        for line in path.read_text().splitlines():
            row = json.loads(line)
            if row.get("error") or row.get("qoe_lin") is None:
                continue
            if row["mode"] == "sim":
                yield ("sim", 0.0, 0), row
            elif name.startswith("k") and "-r" in name:
                yield ("emulate", float(row["speed"]), int(name.split("-r")[1])), row


def read_timelines(out: Path) -> dict[tuple[str, float, int], dict[tuple[str, str], dict]]:
    """Each session's timeline per (mode, speed, repeat) and (abr, trace), as `read_rows` keys them."""
    runs: dict[tuple[str, float, int], dict[tuple[str, str], dict]] = {}
    for key, row in result_rows(out):
        if row.get("timeline"):
            runs.setdefault(key, {})[(row["abr"], row["trace"])] = row["timeline"]
    return runs


def accounting(out: Path) -> None:
    """Per-request clock accounting against the link model and the simulator (load-insensitive)."""
    runs = read_timelines(out)
    sim = runs.get(("sim", 0.0, 0), {})
    groups: dict[tuple[str, float], list[tuple[dict, dict | None]]] = {}
    for (mode, speed, _), cells in runs.items():
        if mode != "emulate":
            continue
        for (abr, trace), timeline in cells.items():
            groups.setdefault((abr, speed), []).append((timeline, sim.get((abr, trace))))
    if not groups:
        return
    print("\n== per-request accounting (trace ms): emulated download - link model's, per download; requests' "
          "drift from the simulator's in cells with its decisions")
    print(f"{'abr':17} {'speed':>5} {'cells':>5} {'downloads':>9}  {'median err':>10} {'p90 |err|':>9} "
          f"{'max |err|':>9}  {'sim decisions':>13}  {'drift/request':>13} {'max |drift|':>11}")
    for (abr, speed), cells in sorted(groups.items()):
        errors = np.concatenate([np.subtract(t["download_s"], t["model_download_s"]) for t, _ in cells]) * 1000
        same, drifts, ends = 0, [], []
        for timeline, twin in cells:
            if twin is None or timeline["quality"] != twin["quality"] or len(timeline["quality"]) < 2:
                continue
            same += 1
            drift = (np.subtract(timeline["request_time_s"], timeline["request_time_s"][0])
                     - np.subtract(twin["request_time_s"], twin["request_time_s"][0])) * 1000
            drifts.append(drift[-1] / (len(drift) - 1))
            ends.append(float(np.abs(drift).max()))
        drift_text = f"{np.median(drifts):+12.2f}  {max(ends):10.1f}" if drifts else f"{'-':>12}  {'-':>10}"
        print(f"{abr:17} {speed:5g} {len(cells):5d} {errors.size:9d}  {np.median(errors):+10.2f} "
              f"{np.percentile(np.abs(errors), 90):9.2f} {np.abs(errors).max():9.1f}  {same:6d} of {len(cells):<4d}"
              f"  {drift_text}")


def read_rows(out: Path) -> dict[tuple[str, float, int], dict[tuple[str, str], float]]:
    """QoE_lin per (mode, speed, repeat) and (abr, trace), from every results.jsonl under `out`."""
    runs: dict[tuple[str, float, int], dict[tuple[str, str], float]] = {}
    for key, row in result_rows(out):
        runs.setdefault(key, {})[(row["abr"], row["trace"])] = float(row["qoe_lin"])
    return runs


def pct(a: float, b: float) -> str:
    return f"{100 * (a - b) / abs(b):+6.1f}%" if b else "   n/a"


def analyse(out: Path, speeds: list[float]) -> None:
    runs = read_rows(out)
    sim = runs.get(("sim", 0.0, 0), {})
    by_speed: dict[float, list[dict[tuple[str, str], float]]] = {}
    for (mode, speed, _), cells in sorted(runs.items()):
        if mode == "emulate":
            by_speed.setdefault(speed, []).append(cells)
    base, warp = speeds[0], speeds[-1]
    if base not in by_speed or warp not in by_speed:
        print(f"nothing to compare: runs at speeds {sorted(by_speed)} in {out}")
        return
    # Cells present in every run of both speeds (a failed session leaves its cell out everywhere).
    common = set.intersection(*(set(c) for s in (base, warp) for c in by_speed[s]))
    abrs = sorted({abr for abr, _ in common})
    print(f"\n== mean QoE_lin over the traces (emulated: mean of {len(by_speed[base])} run(s) at {base:g}x, "
          f"{len(by_speed[warp])} at {warp:g}x; cells in every run)")
    print(f"{'abr':17} {'traces':>6} {'sim':>8} {f'{base:g}x':>8} {f'{warp:g}x':>8}  {f'{warp:g}x vs {base:g}x':>11}"
          f"  {f'{base:g}x vs sim':>11}  {'of mean |QoE|':>13}  {'paired |diff|':>13}")
    worst: list[tuple[float, str, str, float, float]] = []
    for abr in abrs:
        cells = sorted(t for a, t in common if a == abr)
        mean = {s: np.mean([[run[(abr, t)] for t in cells] for run in by_speed[s]], axis=0) for s in (base, warp)}
        sim_mean = np.mean([sim[(abr, t)] for t in cells]) if all((abr, t) in sim for t in cells) else np.nan
        m1, mk = float(mean[base].mean()), float(mean[warp].mean())
        # A mean near zero (QoE is a difference of bitrate and stall terms) makes the plain ratio
        # meaningless: also as a share of the cells' mean |QoE| at 1x, and the mean paired |difference|.
        scale = float(np.abs(mean[base]).mean())
        paired = float(np.abs(mean[warp] - mean[base]).mean())
        print(f"{abr:17} {len(cells):6d} {sim_mean:8.2f} {m1:8.2f} {mk:8.2f}  {pct(mk, m1):>11}  {pct(m1, sim_mean):>11}"
              f"  {100 * (mk - m1) / scale:+12.1f}%  {paired:13.2f}")
        worst += [(abs(b - a), abr, t, a, b) for t, a, b in zip(cells, mean[base], mean[warp])]
    print("\n== the same cell over the repeats: range (max - min) of QoE_lin per trace")
    print(f"{'abr':17} {'speed':>5} {'runs':>4}  {'median':>7} {'worst':>7}  {'worst trace (range, QoE units)':32}"
          f" {'set mean range (of mean |QoE|)':>30}  {'cells identical':>15}")
    for speed in (base, warp):
        runs_k = by_speed[speed]
        if len(runs_k) < 2:
            continue
        for abr in abrs:
            cells = sorted(t for a, t in common if a == abr)
            values = np.array([[run[(abr, t)] for t in cells] for run in runs_k])  # runs x traces
            spread = values.max(axis=0) - values.min(axis=0)
            rel = 100 * spread / np.maximum(np.abs(values.mean(axis=0)), 1e-9)
            i = int(np.argmax(rel))
            set_means = values.mean(axis=1)  # of |QoE|: a mean near zero would make any range look huge
            set_rel = 100 * (set_means.max() - set_means.min()) / max(float(np.abs(values).mean()), 1e-9)
            print(f"{abr:17} {speed:5g} {len(runs_k):4d}  {np.median(rel):6.1f}% {rel[i]:6.1f}%  "
                  f"{cells[i] + f' ({spread[i]:.2f} of {values[:, i].mean():.2f})':32} {set_rel:29.1f}%"
                  f"  {int((spread < 0.01).sum()):>8d} of {len(cells)}")
    if all(len(by_speed[k]) >= 2 for k in (base, warp)):
        print(f"\n== per trace: range of QoE_lin over the repeats, in QoE units and of the cell's |mean| "
              f"({base:g}x | {warp:g}x)")
        for abr in abrs:
            for trace in sorted(t for a, t in common if a == abr):
                parts = []
                for speed in (base, warp):
                    values = np.array([run[(abr, trace)] for run in by_speed[speed]])
                    spread = float(values.max() - values.min())
                    rel = 100 * spread / max(abs(float(values.mean())), 1e-9)
                    parts.append(f"{spread:6.2f} of {values.mean():7.2f} ({rel:5.1f}%)")
                print(f"  {abr:17} {trace:18} " + " | ".join(parts))
    print(f"\n== the cells furthest apart between {base:g}x and {warp:g}x (mean of the repeats)")
    for diff, abr, trace, a, b in sorted(worst, reverse=True)[:8]:
        print(f"  {abr:17} {trace:18} {base:g}x {a:7.2f}  {warp:g}x {b:7.2f}  sim {sim.get((abr, trace), np.nan):7.2f}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--abr", default="bba,mpc-robust",
                        help="algorithms, or 'all' for every registered one (default bba,mpc-robust)")
    parser.add_argument("--traces", type=int, default=20, help="how many of the 20-trace set (default 20)")
    parser.add_argument("--speeds", default="1,10", help="the reference speed and the time-warp (default 1,10)")
    parser.add_argument("--repeats", type=int, default=5, help="runs of every cell at each speed (default 5)")
    parser.add_argument("--at-once", default="40,10", help="sessions at once at each speed (default 40,10)")
    parser.add_argument("--only", default="",
                        help="run only these traces of the set, by name (comma-separated), e.g. norway_bus_1")
    parser.add_argument("--title", default="demo", help="packaged title or 'demo' (default)")
    parser.add_argument("--out", type=Path, default=Path("runs/timewarp"), help="results folder (reused)")
    parser.add_argument("--analyse-only", action="store_true", help="print the tables from what --out holds")
    args = parser.parse_args()
    speeds = [float(s) for s in args.speeds.split(",")]
    at_once = [int(n) for n in args.at_once.split(",")]
    if len(speeds) != 2 or len(at_once) != 2:
        parser.error("--speeds and --at-once take two values each")
    if not args.analyse_only:
        if not TRACE_DIR.is_dir():
            print(f"skipped: no traces at {TRACE_DIR}")
            return 0
        if args.abr == "all":
            from abr.registry import names

            abrs = tuple(names())
        else:
            abrs = tuple(a for a in args.abr.split(",") if a)
        run_all(args, abrs, speeds, at_once)
    analyse(args.out, speeds)
    accounting(args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
