"""Live sessions in the simulator: the issue's figures and the cost of live next to VOD.

    python bench/live_sim.py [--traces DIR] [--duration-s 300] [--abr l2a,lolp,dynamic,bola]

1. steady link: low-latency mode (2 s segments of 0.5 s chunks, target 1.5 s) over a constant
   5 Mbit/s for `--duration-s`, per algorithm: latency p50/p95/max, stalls, rate changes;
2. the Norway traces (default: ../shared/traces/pensieve/test-public) and the MMSys 2020 Grand
   Challenge profiles (scaled x4 to the Envivio ladder): means with 95% CIs per algorithm;
3. speed: live sessions/s against VOD sessions/s (`run_session`, default profile) on the same
   traces and algorithm, measured in this run, as a ratio.
Prints, asserts nothing.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from netsim.sources import open_traces
from netsim.synthetic import LOW_LATENCY_PROFILES, constant, low_latency_profile
from player.bundled import ENVIVIO_DIR
from player.live import LiveConfig
from player.research.live_sim import LiveSimConfig, compare_live, format_live_table, run_live_session
from player.research.sim import profile, run_session
from player.video import load_video

DEFAULT_TRACES = Path(__file__).resolve().parents[2] / "shared" / "traces" / "pensieve" / "test-public"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--traces", type=Path, default=DEFAULT_TRACES)
    parser.add_argument("--duration-s", type=float, default=300.0)
    parser.add_argument("--abr", default="l2a,lolp,dynamic,bola")
    args = parser.parse_args()
    abrs = args.abr.split(",")
    base = load_video(str(ENVIVIO_DIR))
    config = LiveSimConfig(live=LiveConfig(target_latency_s=1.5), segment_duration_s=2.0, chunk_duration_s=0.5,
                           duration_s=args.duration_s)

    print(f"1. steady 5 Mbit/s, {args.duration_s:g} s, 2 s segments of 0.5 s chunks, target 1.5 s")
    steady = constant(5e6, duration_s=args.duration_s + 120)
    for spec in abrs:
        s = run_live_session(spec, base, steady, config).stats
        print(f"   {spec:<8} latency p50 {s.latency_p50_s:.2f} s p95 {s.latency_p95_s:.2f} s max {s.latency_max_s:.2f} s, "
              f"stalls {s.stalls}, rate changes {s.rate_changes}, join {s.join_s:.2f} s")

    traces = open_traces([str(args.traces)]) if args.traces.exists() else []
    if traces:
        print(f"\n2a. {len(traces)} traces from {args.traces}")
        print(format_live_table(compare_live(abrs, base, traces, config)))
    profiles = [low_latency_profile(name, scale=4.0) for name in LOW_LATENCY_PROFILES]
    print("\n2b. MMSys 2020 Grand Challenge profiles x4")
    print(format_live_table(compare_live(abrs, base, profiles, config)))

    sample = (traces or profiles)[:10]
    vod = profile("default")
    started = time.perf_counter()
    for trace in sample:
        run_session("dynamic", base, trace, vod)
    vod_s = time.perf_counter() - started
    started = time.perf_counter()
    for trace in sample:
        run_live_session("dynamic", base, trace, config)
    live_s = time.perf_counter() - started
    print(f"\n3. speed over {len(sample)} traces (dynamic): VOD {len(sample) / vod_s:.1f} sessions/s "
          f"({base.duration_s:g} s of media), live {len(sample) / live_s:.1f} sessions/s ({args.duration_s:g} s); "
          f"live/VOD time per media second {(live_s / args.duration_s) / (vod_s / base.duration_s):.2f}x")


if __name__ == "__main__":
    main()
