"""Live algorithms in simulation and emulation over the same traces, and the gap between them.

    python bench/live_run.py [--traces DIR] [--limit N] [--abr l2a,lolp,dynamic,bola] [--speed 10]
                             [--concurrency 2] [--duration-s 60] [--stack-processes] [--out DIR]
                             [--protocol dash|hls] [--no-parts] [--exclude | --no-exclude]
                             [--offsets N] [--seed S] [--exclude-core-waits]

The demo title (4 s segments) as the stack's low-latency live channel (0.5 s chunks, target 2 s),
its clock `--speed` times the wall clock (`abrkit serve --live --speed K`); each algorithm plays each
trace with the headless live player through the shaper (80 ms RTT), `--concurrency` at once, and in
the simulator joining the channel at the age its emulated twin found it. Prints per algorithm the
means with 95% CIs (latency p50/p95, stalls, stall time, bitrate, the MMSys 2020 live QoE per
segment, downloads abandoned) in each mode, and the paired emulate - sim gap, as a percentage of the simulated mean
(the difference alone where that mean is 0): the simulator is the reference measured in the same run.
`--protocol hls` plays the channel's LL-HLS playlists (parts; `--no-parts`: whole segments, blocking
reloads per segment), the stack's time counted (`--exclude` leaves it out, as DASH runs do by
default: LiveRunConfig, docs/LIVE-SERVER.md "Held requests in emulation"), and simulates
the HLS player's twin (docs/LIVE-SIM.md, "The twin of an HLS session"). The load average is printed beside
(the emulated half runs on the wall clock: a loaded machine makes it late, K times more at K x).
Asserts nothing. The same as `abrkit run --live --mode both ...` with a markdown table; with `--out`
resumable as it is: each finished session is one flushed line of OUT/live_results.jsonl, and a rerun
with the same settings into the same folder plays only the sessions not there (a killed run resumes).
`--offsets N` plays each trace from N start offsets (its start, then N-1 drawn with seeds S, S+1, ...
of `--seed S`, default 0: the same for every algorithm and both modes, more sessions over the same
traces), each trace's sessions one sample of the gap's CI; `--seed S` alone plays each trace once,
from the offset seed S draws (`abrkit run --live` takes both the same way:
player/research/experiment_live_gaps.py `offset_traces`). The tables then end with the gap per trace and the QoE gap by term.

    python bench/live_run.py --twins-of OUT/live_results.jsonl [--traces DIR] [--request-excess-s S]

re-simulates the twins of a stored run's emulated sessions with this tree's simulator and prints the
same tables: a change to the simulator's model judged against the same emulated sessions, paired,
in seconds and whatever the load (give the run's own --speed, --duration-s and --abr), and per
algorithm how many session pairs agree on their number of stalls. `--request-excess-s` adds that much
to each of the twins' round trips (a diagnostic: how much of the gap the emulated player's and link's
own time per request makes; docs/LIVE-SIM.md, "Where the twin's stalls differ"). `--join-shift-s S`
adds each twin against one joining S s later in channel age, paired: how far the figures move with
the join's phase alone (docs/LIVE-SIM.md, "Noise floor").

    python bench/live_run.py --compare A/live_results.jsonl B/live_results.jsonl

two stored runs of the same settings against each other, paired per trace (bench/live_noise.py):
each run's gap, emulate B - emulate A (the emulation's run-to-run noise floor) and sim B - sim A in
the gap's form; the live QoE gap split by term; and how many traces the 5% goal needs at that
noise (docs/LIVE-SIM.md, "Noise floor"). A run's and `--twins-of`'s tables end with its QoE gap by term.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path

from netsim.sources import open_traces
from netsim.trace import Trace
from player.research.experiment_live import (
    LiveChannelContent,
    LiveRunConfig,
    channel_content,
    format_live_run,
    run_live_comparison,
    summarize_rows,
    twin_row,
    write_live_run,
)
from player.research.experiment_live_gaps import (
    GAP_METRICS,
    Pairing,
    gap_text,
    live_gaps,
    offset_traces,
    stall_agreement,
)
from server.config import default_cache_dir
from server.stack import ensure_demo_title

sys.path.insert(0, str(Path(__file__).resolve().parent))

from live_noise import compare_runs, gap_table, run_tables  # noqa: E402

DEFAULT_TRACES = Path(__file__).resolve().parents[2] / "shared" / "traces" / "pensieve" / "test-public"


def markdown(rows: list[dict[str, object]]) -> str:
    summaries = summarize_rows(rows)
    gaps = {(g.abr, g.metric): g for g in live_gaps(rows)}
    lines = ["| abr | mode | n | latency p50 s | latency p95 s | stalls | kbit/s | live QoE/seg | abandoned |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for abr in dict.fromkeys(a for _, a in summaries):
        for mode in ("sim", "emulate"):
            m = summaries.get((mode, abr))
            if m is None:
                continue
            lines.append(f"| {abr} | {mode} | {m['latency_p50_s'].n} | {m['latency_p50_s']} | {m['latency_p95_s']} | "
                         f"{m['stalls']} | {m['avg_bitrate_kbps']} | {m['qoe_per_segment']} | {m['abandoned']} |")
        cells = []
        for metric in GAP_METRICS:
            g = gaps.get((abr, metric))
            cells.append("-" if g is None else gap_text(g.difference.mean, g.relative_pct))
        lines.append(f"| {abr} | gap (emulate - sim) | | {cells[2]} | | {cells[3]} | {cells[1]} | {cells[0]} | |")
    return "\n".join(lines)


def twins_of(path: Path, config: LiveRunConfig, content: LiveChannelContent, traces: list[Trace], *,
             request_excess_s: float = 0.0, join_shift_s: float = 0.0) -> None:
    """The stored emulated sessions of `path` and their twins simulated now, as the tables; with
    `join_shift_s`, then each twin against one joining that much later in channel age (its trace
    time unchanged), paired (`live_noise.gap_table`): how far a session's figures move with its
    join's phase alone, as a second run's sessions join elsewhere (docs/LIVE-SIM.md, "Noise floor")."""
    by_name = {t.name: t for t in traces}
    emulated = [r for r in (json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip())
                if r.get("mode") == "emulate" and not r.get("error") and r["abr"] in config.abrs]
    missing = sorted({r["trace"] for r in emulated} - set(by_name))
    if missing:
        raise SystemExit(f"{path}: traces not in --traces: {', '.join(missing[:5])}"
                         + (" (a run with --offsets: give its --offsets and --seed)" if any("@" in m for m in missing) else ""))
    started = time.monotonic()
    twins = [twin_row(r["abr"], by_name[r["trace"]], config, content, r, request_excess_s=request_excess_s)
             for r in emulated]
    rows = emulated + twins
    excess = f", each round trip {request_excess_s:g} s longer" if request_excess_s else ""
    print(f"{len(emulated)} emulated sessions of {path}, their twins simulated{excess} in "
          f"{time.monotonic() - started:.1f} s")
    for a in stall_agreement(rows):
        print(f"  {a.abr}: {a.same_count} of {a.pairs} session pairs agree on their number of stalls, {a.same_kind} "
              f"on stall / no stall; stalls emulated {a.emulated_stalls:g}, simulated {a.simulated_stalls:g}")
    print(format_live_run(rows))
    print()
    print(markdown(rows))
    print()
    print(run_tables(rows))
    if join_shift_s:
        shifted = [twin_row(r["abr"], by_name[r["trace"]], config, content,
                            {**r, "channel_age_s": r["channel_age_s"] + join_shift_s}) for r in emulated]
        print(f"\nEach twin against one joining {join_shift_s:g} s later (channel age), paired per trace:\n")
        print(gap_table([Pairing(label=f"twin {join_shift_s:g} s later - twin", reference=tuple(twins),
                                 other=tuple(shifted))]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--traces", type=Path, default=DEFAULT_TRACES,
                        help="a folder of traces (default: Pensieve's test-public in ../shared, its 71 Norway traces)")
    parser.add_argument("--limit", type=int, default=0, help="the first N traces (default all)")
    parser.add_argument("--abr", default="l2a,lolp,dynamic,bola", help="comma-separated live algorithms")
    parser.add_argument("--speed", type=float, default=10.0,
                        help="emulation time-warp K (4 with --concurrency 5 costs what 10 with 2 does, with less per-request time)")
    parser.add_argument("--concurrency", type=int, default=2, help="emulated sessions at once")
    parser.add_argument("--duration-s", type=float, default=60.0, help="session time each session plays")
    parser.add_argument("--stack-processes", action="store_true",
                        help="run the stack in its own processes (the player's loop then carries only players)")
    parser.add_argument("--no-exclude", action="store_true",
                        help="count the stack's time and the players' loop stalls (the reference of the exclusion)")
    parser.add_argument("--exclude", action="store_true",
                        help="leave the stack's time out (the default for both protocols since wave 11; kept so "
                             "older commands run)")
    parser.add_argument("--exclude-core-waits", action="store_true",
                        help="also leave each player loop's wait for a core out of its clock (loaded machines)")
    parser.add_argument("--out", type=Path, help="folder for live_results.jsonl, sessions.csv and logs")
    parser.add_argument("--protocol", choices=("dash", "hls"), default="dash", help="the channel's protocol")
    parser.add_argument("--no-parts", action="store_true", help="HLS: play whole segments, not LL-HLS parts")
    parser.add_argument("--twins-of", type=Path, metavar="JSONL",
                        help="re-simulate the twins of this stored run's emulated sessions (no emulation)")
    parser.add_argument("--request-excess-s", type=float, default=0.0, metavar="S",
                        help="with --twins-of: add S s to each of the twins' round trips (a diagnostic)")
    parser.add_argument("--offsets", type=int, default=1, metavar="N",
                        help="play each trace from N start offsets: its start and N-1 seeded ones, each a session "
                             "(the gaps' CIs over traces; player/research/experiment_live_gaps.py offset_traces)")
    parser.add_argument("--seed", type=int, metavar="S",
                        help="with --offsets N: the offsets' first seed (default 0); alone: each trace from the "
                             "offset seed S draws only (as abrkit run --live --seed S)")
    parser.add_argument("--join-shift-s", type=float, default=0.0, metavar="S",
                        help="with --twins-of: also each twin against one joining S s later (a diagnostic: the "
                             "figures' sensitivity to the join's phase, the run-to-run noise)")
    parser.add_argument("--compare", type=Path, nargs=2, metavar=("A", "B"),
                        help="compare two stored runs' live_results.jsonl (no emulation): the noise floor")
    args = parser.parse_args()
    if args.compare:
        for path in args.compare:
            if not path.is_file():
                parser.error(f"--compare: {path} is not a file")
        print(compare_runs(*args.compare))
        return
    if args.request_excess_s and not args.twins_of:
        parser.error("--request-excess-s is a diagnostic of --twins-of: give it with --twins-of")
    if args.join_shift_s and not args.twins_of:
        parser.error("--join-shift-s is a diagnostic of --twins-of: give it with --twins-of")
    if not (math.isfinite(args.join_shift_s) and args.join_shift_s >= 0):
        parser.error(f"--join-shift-s must be a finite time >= 0 s, got {args.join_shift_s}")
    if not (math.isfinite(args.request_excess_s) and args.request_excess_s >= 0):
        parser.error(f"--request-excess-s must be a finite time >= 0 s, got {args.request_excess_s}")
    traces = open_traces([str(args.traces)])
    if args.limit:
        traces = traces[: args.limit]
    if args.offsets < 1:
        parser.error(f"--offsets must be >= 1, got {args.offsets}")
    traces = offset_traces(traces, args.offsets, args.seed)
    config = LiveRunConfig(abrs=tuple(args.abr.split(",")), duration_s=args.duration_s, speed=args.speed,
                           concurrency=args.concurrency, stack_processes=args.stack_processes,
                           exclude_stack_time=False if args.no_exclude else True if args.exclude else None,
                           protocol=args.protocol, exclude_core_waits=args.exclude_core_waits,
                           play_parts=not args.no_parts)
    content = channel_content(ensure_demo_title(default_cache_dir() / "content"), chunk_s=config.chunk_s,
                              protocol=config.protocol)
    if args.twins_of:
        twins_of(args.twins_of, config, content, traces, request_excess_s=args.request_excess_s,
                 join_shift_s=args.join_shift_s)
        return
    load_before = os.getloadavg()
    started = time.monotonic()
    rows = run_live_comparison(config, content, traces, out_dir=args.out,
                               notify=lambda text: print(text, file=sys.stderr))
    wall_s = time.monotonic() - started
    load_after = os.getloadavg()
    lag = max((r.get("loop_lag_p99_ms") or 0 for r in rows), default=0)
    players_s = max((r.get("player_cpu_s_per_session") or 0 for r in rows), default=0)
    stack_s = max((r.get("stack_cpu_s_per_session") or 0 for r in rows), default=0)
    # the cores a session's work keeps busy at this concurrency, each session duration / speed of wall
    cores = (players_s + stack_s) * config.concurrency * config.speed / config.duration_s
    print(f"{len(traces)} traces x {len(config.abrs)} algorithms, {config.duration_s:g} s each, emulation at "
          f"{config.speed:g}x, {config.concurrency} at once{' (stack in processes)' if config.stack_processes else ''}; "
          f"{wall_s:.0f} s wall; load average {load_before[0]:.1f} before, {load_after[0]:.1f} after; "
          f"player loop lag p99 {lag} ms; CPU per session {players_s:.2f} s players, {stack_s:.2f} s stack (at "
          f"{config.concurrency} at once, {cores:.2f} cores busy unloaded); {sum(1 for r in rows if r.get('error'))} failed")
    print(format_live_run(rows))
    print()
    print(markdown(rows))
    print()
    print(run_tables(rows))
    if args.out:
        write_live_run(rows, args.out, meta={"bench": "live_run", "speed": config.speed, "protocol": config.protocol,
                                             "play_parts": config.play_parts,
                                             "exclude_core_waits": config.exclude_core_waits,
                                             "concurrency": config.concurrency, "traces": len(traces),
                                             "load_before": load_before, "load_after": load_after})


if __name__ == "__main__":
    main()
