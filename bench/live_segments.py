"""One live session emulated and simulated, compared segment by segment (where a live gap comes from).

    python bench/live_segments.py [--abr l2a] [--trace norway_bus_1] [--speed 10] [--duration-s 60]
                                  [--no-exclude] [--save FILE.json] [--protocol hls]
    python bench/live_segments.py --load FILE.json

Plays the demo title's low-latency channel (as bench/live_run.py) once through the stack in
processes and the shaper, then its simulated twin (same channel age and trace time at the join), and
prints per segment: the quality chosen, the request time after the segment's first chunk was
available, the download time, the time to first byte, the buffer before the request, the stall
charged to it and the ABR's throughput sample (chunk-aware), emulated / simulated; then the ratio of
those samples, emulated / simulated (a per-download figure: the one that found w5's merge of the
exact timers inflating the emulated samples), and each side's stalls (session time from its join,
the segment played into, how long). A segment one side skipped (a seek to live) shows `nan`. Then
when each side had its first chunk after the join, and the latency split into its parts (the
latency at the first frame, the rate control's part, stalls, jumps) at 5-60 s after the join and
as time-weighted means (bench/live_latency_parts.py): where a latency gap appears, once or
accumulated (sessions kept before wave 12 have no latency samples: that table is left out).
`--save` keeps the emulated session (its report, records, samples, latency samples and events) as JSON; `--load`
compares a kept session with the twin this tree simulates now: a change to the twin judged segment
by segment against the same emulated session, in a second, whatever the load. Asserts nothing; the
load average is printed beside (the emulated side runs on the wall clock).
`--protocol hls` plays the LL-HLS player instead (its stack time counted) and adds each part: when
it was asked for, its first and last byte, from its publication (`compare_hls`).
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import math
import os
import sys
from pathlib import Path
from typing import Any

from abr.registry import make
from netsim.sources import open_trace, open_traces
from netsim.trace import Trace
from player.client.eventlog import EventLog
from player.client.harness import play_headless
from player.client.headless import PlayerConfig
from player.client.hlslive import HlsLivePlayer
from player.client.liveplay import LivePlayConfig, LivePlayer
from player.live import LiveSchedule, LiveSession, LiveStats
from player.research.experiment_live import LiveRunConfig, channel_content, live_link, serve_channel, sim_config
from player.research.live_sim import LiveDriver, NominalSizes, live_chunks, live_video
from player.session import SegmentRecord, SessionConfig
from server.config import default_cache_dir
from server.stack import ensure_demo_title

sys.path.insert(0, str(Path(__file__).resolve().parent))
from live_latency_parts import format_parts, latency_parts  # noqa: E402

DEFAULT_TRACES = Path(__file__).resolve().parents[2] / "shared" / "traces" / "pensieve" / "test-public"
STALL_EVENTS = ("stall", "resume", "seek")


@dataclasses.dataclass(frozen=True, kw_only=True, slots=True)
class Side:
    """One session as the comparison reads it: the emulated player's (kept with --save) or the twin's."""

    records: list[SegmentRecord]
    samples_bps: list[float | None]  # the ABR's sample per record (LiveSession.record_sample_bps)
    schedule: LiveSchedule
    joined_at_s: float
    startup_s: float | None
    events: list[dict[str, Any]]  # {"t": session s, "type": kind, ...}
    # (session s, latency s, playback rate) as the session sampled them (`LiveSession.latency_samples`;
    # empty in sessions kept before wave 12)
    latency_samples: list[tuple[float, float, float]] = dataclasses.field(default_factory=list)

    @classmethod
    def of(cls, session: LiveSession, events: list[dict[str, Any]]) -> Side:
        return cls(records=list(session.records), samples_bps=list(session.record_sample_bps),
                   schedule=session.schedule, joined_at_s=session.joined_at_s or 0.0, startup_s=session.startup_s,
                   events=events, latency_samples=list(session.latency_samples))

    def as_json(self) -> dict[str, Any]:
        return {"records": [dataclasses.asdict(r) for r in self.records], "samples_bps": self.samples_bps,
                "schedule": dataclasses.asdict(self.schedule), "joined_at_s": self.joined_at_s,
                "startup_s": self.startup_s, "events": self.events, "latency_samples": self.latency_samples}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Side:
        return cls(records=[SegmentRecord(**r) for r in data["records"]], samples_bps=data["samples_bps"],
                   schedule=LiveSchedule(**data["schedule"]), joined_at_s=data["joined_at_s"],
                   startup_s=data["startup_s"], events=data["events"],
                   latency_samples=[tuple(x) for x in data.get("latency_samples", [])])


def find_trace(name: str, traces: Path) -> Trace:
    return open_trace(name) if ":" in name else next(t for t in open_traces([str(traces)]) if t.name == name)


def play_once(args: argparse.Namespace, trace: Trace, config: LiveRunConfig, content: Any,
              log: EventLog | None = None) -> tuple[dict[str, Any], LivePlayer, float]:
    """One emulated session through the stack in processes and the shaper: its live report, its
    player and the load average before it (both protocols' comparisons start from this)."""
    players: list[LivePlayer] = []

    async def run() -> dict[str, Any]:
        async with serve_channel(content, config) as target:
            player = PlayerConfig(abr=args.abr, decode="none", speed=args.speed, audio=False,
                                  session=SessionConfig(buffer_cap_s=30.0))
            report = await play_headless(target, player, link=live_link(trace, config), events=log,
                                         live=LivePlayConfig(duration_s=args.duration_s), on_live_player=players.append)
            if report.error is not None or report.live is None:
                raise SystemExit(f"the emulated session failed: {report.error}")
            return dict(report.live)

    load = os.getloadavg()[0]
    return asyncio.run(run()), players[0], load


def emulate(args: argparse.Namespace, trace: Trace, config: LiveRunConfig, content: Any) -> dict[str, Any]:
    """One emulated session: its live report (`info`) and the session itself (`emulated`)."""
    log = EventLog()
    info, player, load = play_once(args, trace, config, content, log)
    kept = [e for e in log.events if e["type"] in (*STALL_EVENTS, "chunk", "manifest_refresh", "abandon")]
    return {"abr": args.abr, "trace": trace.name, "speed": args.speed, "duration_s": args.duration_s,
            "exclude_stack_time": config.exclude_stack_time, "load": load, "info": info,
            "emulated": Side.of(player.session, kept).as_json()}


def simulate_twin(kept: dict[str, Any], trace: Trace, config: LiveRunConfig, content: Any) -> tuple[Side, LiveStats]:
    """The twin of a kept emulated session, as this tree's simulator plays it, and its stats."""
    info = kept["info"]
    sim = sim_config(config, content, channel_age_s=info["channel_age_s"], control_bytes=info.get("control_bytes"))
    video = live_video(content.video, sim)
    twin = LiveSession(make(kept["abr"]), NominalSizes(video), sim.session, live=sim.live, schedule=sim.schedule(),
                       record_events=True)
    chunks = live_chunks(content.video, content.chunk_sizes_bytes, sim) if content.chunk_sizes_bytes is not None else None
    driver = LiveDriver(twin, video, trace, rtt_s=sim.rtt_s, trace_time_s=info.get("joined_at_s") or 0.0,
                        control=sim.control, chunk_sizes_bytes=chunks)
    driver.drive()
    events = [{"t": e.time_s, "type": e.kind, **e.data} for e in twin.events if e.kind in (*STALL_EVENTS, "chunk")]
    events += [{"t": t, "type": "manifest_refresh"} for t in driver.refreshed_s]
    return Side.of(twin, sorted(events, key=lambda e: e["t"])), twin.stats()


def stalls(side: Side) -> list[tuple[float, float]]:
    """Each stall as the session saw it: session time from the join (when the session noticed it, at
    its next step) and the playhead where it ran dry."""
    return [(e["t"] - side.joined_at_s, e["playhead_s"]) for e in side.events if e["type"] == "stall"]


def chunk_times(side: Side, segment: int) -> list[float]:
    """When each chunk but the last of `segment` was had (session s after it was first available);
    the last completes the download (its record)."""
    start = side.schedule.first_available_s(segment)
    return [e["t"] - start for e in side.events if e["type"] == "chunk" and e.get("segment") == segment]


def compare(kept: dict[str, Any], emulated: Side, twin: Side, twin_stats: LiveStats, *,
            chunks_of: tuple[int, ...] = ()) -> None:
    info = kept["info"]
    stats = ("latency_p50_s", "stalls", "rebuffer_s", "join_s")
    print(f"{kept['abr']} on {kept['trace']} at {kept['speed']:g}x for {kept['duration_s']:g} s (load average "
          f"{kept['load']:.1f}; stack time {'left out' if kept['exclude_stack_time'] else 'counted'})")
    print("  emulate: " + ", ".join(f"{k} {info[k]}" for k in stats))
    print("  sim:     " + ", ".join(f"{k} {v:.4f}" for k, v in ((k, getattr(twin_stats, k)) for k in stats)))
    for name, one in (("emulate", emulated), ("sim", twin)):
        first = one.records[0] if one.records else None
        print(f"  {name}: joined at {one.joined_at_s:.3f} s; first request "
              f"+{(first.request_time_s - one.joined_at_s) if first else math.nan:.3f} s, "
              f"first frame +{(one.startup_s or math.nan) - one.joined_at_s:.3f} s; stalls (s from join @ playhead s): "
              + (", ".join(f"{t:.2f} @ {p:.2f}" for t, p in stalls(one)) or "none"))
    emu_samples = {r.segment_index: bps for r, bps in zip(emulated.records, emulated.samples_bps) if bps}
    sim_samples = {r.segment_index: bps for r, bps in zip(twin.records, twin.samples_bps) if bps}
    by_e = {r.segment_index: r for r in emulated.records}
    by_s = {r.segment_index: r for r in twin.records}
    print(f"{'seg':>4} {'quality':>8} {'req - avail s':>14} {'download s':>12} {'ttfb s':>12} {'buffer s':>12} "
          f"{'stall s':>10} {'ABR kbit/s':>12} {'end - complete s (diff)':>24}   (emulate/sim)")

    def cell(record: Any, value: float, width: int) -> str:
        return f"{value:.2f}".rjust(width) if record is not None else "nan".rjust(width)

    for k in sorted(set(by_e) | set(by_s)):
        e, s = by_e.get(k), by_s.get(k)
        cols = [f"{k:>4}", f"{e.quality if e else '-'}/{s.quality if s else '-'}".rjust(8)]
        for name, width in (("request_time_s", 6), ("download_s", 5), ("ttfb_s", 5), ("buffer_before_s", 5),
                            ("rebuffer_s", 4)):
            pair = []
            for record, schedule in ((e, emulated.schedule), (s, twin.schedule)):
                value = getattr(record, name) if record is not None else math.nan
                if name == "request_time_s" and record is not None:
                    value -= schedule.first_available_s(k)
                pair.append(cell(record, value, width))
            cols.append("/".join(pair).rjust({6: 14, 5: 12, 4: 10}[width]))
        cols.append(f"{emu_samples.get(k, math.nan) / 1e3:.0f}/{sim_samples.get(k, math.nan) / 1e3:.0f}".rjust(12))
        ends = [r.request_time_s + r.download_s - sch.complete_s(k) if r is not None else math.nan
                for r, sch in ((e, emulated.schedule), (s, twin.schedule))]
        cols.append(f"{ends[0]:.3f}/{ends[1]:.3f} ({ends[0] - ends[1]:+.3f})".rjust(24))
        print(" ".join(cols))
    for k in chunks_of:
        e_t, s_t = chunk_times(emulated, k), chunk_times(twin, k)
        print(f"segment {k}'s chunks had, s after its first was available (emulate/sim, diff): "
              + ", ".join(f"{a:.3f}/{b:.3f} ({a - b:+.3f})" for a, b in zip(e_t, s_t)))
    refreshed = [[e["t"] - one.joined_at_s for e in one.events if e["type"] == "manifest_refresh"]
                 for one in (emulated, twin)]
    if all(len(r) > 1 for r in refreshed):
        cycles = [sorted(b - a for a, b in zip(r, r[1:])) for r in refreshed]
        n = min(map(len, refreshed))
        print(f"MPD refreshes: cycle median {cycles[0][len(cycles[0]) // 2]:.3f}/{cycles[1][len(cycles[1]) // 2]:.3f} s "
              f"(emulate/sim); refresh k done, emulate - sim, s: "
              + " ".join(f"{a - b:+.2f}" for a, b in zip(refreshed[0][:n], refreshed[1][:n])))
    both = [(emu_samples[k], sim_samples[k]) for k in sorted(set(emu_samples) & set(sim_samples))]
    if both:
        ratios = sorted(e / s for e, s in both)
        print(f"ABR's throughput sample, emulate / sim: median {ratios[len(ratios) // 2]:.3f}, "
              f"mean {sum(ratios) / len(ratios):.3f} over {len(ratios)} segments")
    first_chunks = [next((e["t"] - one.joined_at_s for e in one.events if e["type"] == "chunk"), math.nan)
                    for one in (emulated, twin)]
    print(f"the first chunk had +{first_chunks[0]:.3f}/+{first_chunks[1]:.3f} s after the join "
          f"({1e3 * (first_chunks[0] - first_chunks[1]):+.1f} ms, emulate/sim)")
    if emulated.latency_samples:
        print(format_parts(*(latency_parts(one.latency_samples, one.events, one.joined_at_s)
                             for one in (emulated, twin))))


def compare_hls(args: argparse.Namespace, trace: Any) -> None:
    """The LL-HLS player and its twin, segment by segment and part by part: per segment the quality,
    when it was asked for (after its first part was published), the ABR's sample and the time the
    ABR measured it over (bits / sample); per part when it was asked for, its first and last byte,
    from the part's publication, and its bytes, emulated / simulated (the twin's part request is its
    first byte less a round trip and headers: the log has its arrivals only)."""
    config = LiveRunConfig(abrs=(args.abr,), duration_s=args.duration_s, speed=args.speed, concurrency=1,
                           stack_processes=True, exclude_stack_time=not args.no_exclude, protocol="hls")
    content = channel_content(ensure_demo_title(default_cache_dir() / "content"), chunk_s=config.chunk_s,
                              protocol="hls")
    info, player, load = play_once(args, trace, config, content)
    assert isinstance(player, HlsLivePlayer)  # (the part log is the HLS player's)
    sim = sim_config(config, content, channel_age_s=info["channel_age_s"], control_bytes=info.get("control_bytes"))
    video = live_video(content.video, sim)
    twin = LiveSession(make(args.abr), NominalSizes(video), sim.session, live=sim.live, schedule=sim.schedule())
    chunks = live_chunks(content.video, content.chunk_sizes_bytes, sim) if content.chunk_sizes_bytes is not None else None
    driver = LiveDriver(twin, video, trace, rtt_s=sim.rtt_s, trace_time_s=info.get("joined_at_s") or 0.0,
                        control=sim.control, chunk_sizes_bytes=chunks)
    driver.drive()
    emulated = player.session
    stats = twin.stats()
    print(f"HLS {args.abr} on {trace.name} at {args.speed:g}x for {args.duration_s:g} s (load average {load:.1f}; "
          f"stack time {'left out' if config.exclude_stack_time else 'counted'})")
    print(f"  emulate: latency p50 {info['latency_p50_s']} s, {info['stalls']} stalls ({info['rebuffer_s']} s), "
          f"reloads {info.get('playlist_reloads')}, part requests {info.get('part_requests')}")
    print(f"  sim:     latency p50 {stats.latency_p50_s:.4f} s, {stats.stalls} stalls ({stats.rebuffer_s:.4f} s), "
          f"reloads {driver.playlist_reloads()}")
    for name, kept in (("emulated parts", player.part_log), ("simulated downloads", driver.arrival_log)):
        if kept.maxlen is not None and len(kept) == kept.maxlen:  # bounded logs (a live session's can be hours)
            print(f"  only the latest {kept.maxlen} {name} are kept: the first segments show none of them")
    parts_e: dict[int, list[Any]] = {}
    for p in player.part_log:
        parts_e.setdefault(p.segment, []).append(p)
    parts_s = {k: (requested, arrivals) for k, requested, arrivals in driver.arrival_log}
    samples = {name: {r.segment_index: (r, bps) for r, bps in zip(one.records, one.record_sample_bps)}
               for name, one in (("emulate", emulated), ("sim", twin))}
    ratios: list[float] = []
    for k in sorted(set(samples["emulate"]) | set(samples["sim"])):
        (e, e_bps), (s, s_bps) = (samples[n].get(k, (None, None)) for n in ("emulate", "sim"))
        cells = []
        for record, bps, schedule in ((e, e_bps, emulated.schedule), (s, s_bps, twin.schedule)):
            if record is None:
                cells.append("-")
                continue
            over_s = record.size_bytes * 8 / bps if bps else math.nan
            cells.append(f"q{record.quality} asked {record.request_time_s - schedule.first_available_s(k):+.3f} "
                         f"{(bps or math.nan) / 1e3:.0f} kbit/s over {over_s:.3f} s ({record.size_bytes} B)")
        print(f"seg {k}: emulate {cells[0]} | sim {cells[1]}")
        if e_bps and s_bps:
            ratios.append(e_bps / s_bps)
        for p in parts_e.get(k, []):
            avail = emulated.schedule.chunk_available_s(k, p.index)
            print(f"    e part {p.index}{'*' if p.ahead else ' '} asked {p.requested_s - avail:+.3f} first "
                  f"{p.first_byte_s - avail:+.3f} last {p.last_byte_s - avail:+.3f} ({p.size_bytes} B)")
        if k in parts_s:
            for c, a in enumerate(parts_s[k][1]):
                avail = twin.schedule.chunk_available_s(k, c)
                print(f"    s part {c}  first {a.first_byte_s - avail:+.3f} last {a.last_byte_s - avail:+.3f} "
                      f"({a.size_bytes} B)")
    if ratios:
        ratios.sort()
        print(f"ABR's throughput sample, emulate / sim: median {ratios[len(ratios) // 2]:.3f}, "
              f"mean {sum(ratios) / len(ratios):.3f} over {len(ratios)} segments")
    part_delays(player, emulated.schedule, twin.schedule, parts_s)


def part_delays(player: HlsLivePlayer, emulated: Any, twin: Any, parts_s: dict[int, Any]) -> None:
    """Per kind of part request, median and p90 (ms of session time): a part asked for before it was
    published (held at the server), its first byte after its publication, emulated and in the twin;
    one asked for once published, its first byte after the request (TTFB)."""
    def stats(values: list[float]) -> str:
        if not values:
            return "none"
        values = sorted(values)
        return (f"median {values[len(values) // 2] * 1e3:.0f} ms, p90 {values[int(0.9 * (len(values) - 1))] * 1e3:.0f} "
                f"ms ({len(values)})")

    held, published = [], []
    for p in player.part_log:
        avail = emulated.chunk_available_s(p.segment, p.index)
        (held if p.requested_s < avail else published).append(
            p.first_byte_s - avail if p.requested_s < avail else p.first_byte_s - p.requested_s)
    twin_first = [a.first_byte_s - twin.chunk_available_s(k, c)
                  for k, (_, arrivals) in parts_s.items() for c, a in enumerate(arrivals)]
    print(f"parts asked before published, first byte after publication: emulate {stats(held)}; "
          f"sim (every part) {stats(twin_first)}")
    print(f"parts asked once published, first byte after the request: emulate {stats(published)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--abr", default="l2a")
    parser.add_argument("--trace", default="norway_bus_1", help="a trace name in --traces, or a spec (constant:5e6)")
    parser.add_argument("--traces", type=Path, default=DEFAULT_TRACES)
    parser.add_argument("--speed", type=float, default=10.0)
    parser.add_argument("--duration-s", type=float, default=60.0)
    parser.add_argument("--no-exclude", action="store_true", help="count the stack's time and the loop's stalls")
    parser.add_argument("--save", type=Path, metavar="FILE", help="keep the emulated session as JSON")
    parser.add_argument("--load", type=Path, metavar="FILE", help="a kept emulated session: simulate its twin only")
    parser.add_argument("--chunks-of", default="", metavar="K,...", help="print these segments' chunk times")
    parser.add_argument("--protocol", choices=("dash", "hls"), default="dash",
                        help="hls: the LL-HLS player and its twin, part by part")
    args = parser.parse_args()
    if args.protocol == "hls":
        if args.save or args.load or args.chunks_of:
            parser.error("--save, --load and --chunks-of are DASH only")
        compare_hls(args, find_trace(args.trace, args.traces))
        return
    if args.load:
        kept = json.loads(args.load.read_text(encoding="utf-8"))
        args.abr, args.trace, args.speed, args.duration_s = kept["abr"], kept["trace"], kept["speed"], kept["duration_s"]
        args.no_exclude = not kept["exclude_stack_time"]
    trace = find_trace(args.trace, args.traces)
    config = LiveRunConfig(abrs=(args.abr,), duration_s=args.duration_s, speed=args.speed, concurrency=1,
                           stack_processes=True, exclude_stack_time=not args.no_exclude)
    content = channel_content(ensure_demo_title(default_cache_dir() / "content"), chunk_s=config.chunk_s)
    if not args.load:
        kept = emulate(args, trace, config, content)
        if args.save:
            args.save.write_text(json.dumps(kept, default=float), encoding="utf-8")
    compare(kept, Side.from_json(kept["emulated"]), *simulate_twin(kept, trace, config, content),
            chunks_of=tuple(int(k) for k in args.chunks_of.split(",") if k))


if __name__ == "__main__":
    main()
