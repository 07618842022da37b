"""Simulator speed on one core: sessions/s for bba and mpc-robust on the Pensieve test traces.

The reference measured in the same run is a straightforward pure-Python simulator with the same
semantics (Pensieve's fixed_env loop and the reference BBA/RobustMPC written plainly), so the
printed ratios do not depend on how busy the machine is. Targets (issue 2): bba >= 20,000
sessions/s, mpc-robust >= 100 sessions/s.

    python bench/sim_speed.py [--repeat 100]
"""

from __future__ import annotations

import argparse
import itertools
import math
import os
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from netsim.formats import load_traces
from player.research.sim import PROFILES, run_batch, simulate
from player.video import load_video

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
RATES_KBPS = (300, 750, 1200, 1850, 2850, 4300)


def plain_session(times: list[float], mbps: list[float], sizes: list[list[int]], policy: str) -> float:
    """Pensieve's fixed_env + policy loop written plainly; returns QoE_lin over chunks 1..47."""
    ptr, last_t, buffer_ms = 1, times[0], 0.0
    quality, last_quality = 1, 1
    qoe = 0.0
    samples: list[float] = []
    errors: list[float] = []
    estimates: list[float] = []
    for chunk in range(48):
        size = sizes[quality][chunk]
        delay, sent = 0.0, 0.0
        while True:
            throughput = mbps[ptr] * 1e6 / 8
            duration = times[ptr] - last_t
            packet = throughput * duration * 0.95
            if sent + packet > size:
                fraction = (size - sent) / throughput / 0.95
                delay += fraction
                last_t += fraction
                break
            sent += packet
            delay += duration
            last_t = times[ptr]
            ptr += 1
            if ptr >= len(times):
                ptr, last_t = 1, 0.0
        delay = delay * 1000 + 80
        rebuffer = max(delay - buffer_ms, 0.0)
        buffer_ms = max(buffer_ms - delay, 0.0) + 4000
        if buffer_ms > 60000:
            sleep = math.ceil((buffer_ms - 60000) / 500) * 500
            buffer_ms -= sleep
            while True:
                duration = times[ptr] - last_t
                if duration > sleep / 1000:
                    last_t += sleep / 1000
                    break
                sleep -= duration * 1000
                last_t = times[ptr]
                ptr += 1
                if ptr >= len(times):
                    ptr, last_t = 1, 0.0
        if chunk > 0:
            qoe += RATES_KBPS[quality] / 1000 - 4.3 * rebuffer / 1000 - abs(RATES_KBPS[quality] - RATES_KBPS[last_quality]) / 1000
        last_quality = quality
        samples.append(size / delay / 1000)
        if chunk == 47:
            break
        if policy == "bba":
            b = buffer_ms / 1000
            quality = 0 if b < 5 else 5 if b >= 15 else int(5 * (b - 5) / 10)
        else:
            errors.append(abs(estimates[-1] - samples[-1]) / samples[-1] if estimates else 0.0)
            past = samples[-5:]
            harmonic = len(past) / sum(1 / s for s in past)
            estimates.append(harmonic)
            predicted = harmonic / (1 + max(errors[-5:]))
            horizon = min(5, 47 - chunk)
            best, choice = -1e18, 0
            for combo in itertools.product(range(6), repeat=5):
                plan = combo[:horizon]
                buf, reb, rate_sum, smooth, prev = buffer_ms / 1000, 0.0, 0, 0, quality
                for k, q in enumerate(plan):
                    dt = sizes[q][chunk + 2 + k] / 1e6 / predicted
                    if buf < dt:
                        reb += dt - buf
                        buf = 0.0
                    else:
                        buf -= dt
                    buf += 4
                    rate_sum += RATES_KBPS[q]
                    smooth += abs(RATES_KBPS[q] - RATES_KBPS[prev])
                    prev = q
                reward = rate_sum / 1000 - 4.3 * reb - smooth / 1000
                if reward >= best:
                    best, choice = reward, plan[0]
            quality = choice
    return qoe


def rate(count: int, seconds: float) -> float:
    return count / seconds if seconds > 0 else float("inf")


def sessions_per_s(count: int, run: Callable[[], object]) -> float:
    """`count` sessions / wall seconds of one call of `run`."""
    start = time.perf_counter()
    run()
    return rate(count, time.perf_counter() - start)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=100, help="copies of the 71 traces in the big bba batch")
    parser.add_argument("--plain-mpc-sessions", type=int, default=2, help="sessions of the slow plain RobustMPC")
    args = parser.parse_args()
    if not (SHARED / "traces").is_dir():
        print(f"skipped: shared data not found at {SHARED}")
        return 0
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})  # one core, as the target says
    traces = load_traces([SHARED / "traces/pensieve/test-public"])
    video = load_video(SHARED / "video/pensieve-envivio")
    prof = PROFILES["pensieve"]
    sizes = [video.sizes_bytes[:, q].tolist() for q in range(6)]
    plain_inputs = [(np.r_[0.0, np.cumsum(t.durations_s)].tolist(), np.r_[0.0, t.bandwidth_bps / 1e6].tolist())
                    for t in traces]

    start = time.perf_counter()
    plain_qoe = [plain_session(times, mbps, sizes, "bba") for times, mbps in plain_inputs]
    plain_bba = rate(len(traces), time.perf_counter() - start)
    ours = [r.qoe_lin for r in simulate("bba", video, traces, prof)]
    if not np.allclose(plain_qoe, ours, atol=1e-6):
        print("error: the plain reference and abrkit disagree on bba QoE; the comparison would be meaningless")
        return 1

    plain_mpc = sessions_per_s(args.plain_mpc_sessions, lambda: [
        plain_session(times, mbps, sizes, "mpc-robust") for times, mbps in plain_inputs[: args.plain_mpc_sessions]])

    simulate("bba", video, traces[:2], prof)  # warm imports and caches
    session_bba = sessions_per_s(len(traces), lambda: simulate("bba", video, traces, prof, engine="session"))
    batch_bba_71 = sessions_per_s(len(traces), lambda: run_batch("bba", video, traces, prof))
    many = traces * args.repeat
    offsets = np.random.default_rng(0).uniform(0, 60, len(many))
    batch_bba_many = sessions_per_s(len(many), lambda: run_batch("bba", video, many, prof, offsets_s=offsets))

    session_mpc = sessions_per_s(len(traces), lambda: simulate("mpc-robust", video, traces, prof, engine="session"))
    batch_mpc = sessions_per_s(len(traces), lambda: run_batch("mpc-robust", video, traces, prof))

    print("simulator speed, one core, Pensieve test traces (71), pensieve profile; sessions/s")
    print(f"{'':28}{'sessions/s':>12}{'x plain Python':>16}{'target':>10}")
    print(f"{'plain Python bba':28}{plain_bba:12.0f}{1.0:16.1f}")
    print(f"{'bba, state machine':28}{session_bba:12.0f}{session_bba / plain_bba:16.1f}")
    print(f"{'bba, batch of 71':28}{batch_bba_71:12.0f}{batch_bba_71 / plain_bba:16.1f}")
    print(f"{f'bba, batch of {len(many)}':28}{batch_bba_many:12.0f}{batch_bba_many / plain_bba:16.1f}{20000:>10}")
    print(f"{'plain Python mpc-robust':28}{plain_mpc:12.2f}{1.0:16.1f}")
    print(f"{'mpc-robust, state machine':28}{session_mpc:12.0f}{session_mpc / plain_mpc:16.0f}")
    print(f"{'mpc-robust, batch of 71':28}{batch_mpc:12.0f}{batch_mpc / plain_mpc:16.0f}{100:>10}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
