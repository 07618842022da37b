"""Gymnasium environment speed: steps/s of the vectorised env (`AbrVectorEnv`, N sessions per step)
against the single env (`AbrEnv`, one `PlaybackSession`), measured in the same run.

A step is one segment decision of one session; both play the bundled Envivio video on the Pensieve
training traces with random actions and the `pensieve` profile. Target (issue 12): >= 100,000
steps/s for the vectorised env.

    python bench/gym_speed.py [--sessions 1024] [--seconds 3]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from netsim.sources import open_traces
from player.research.gym_env import AbrEnv
from player.research.gym_vector import AbrVectorEnv

REPO = Path(__file__).resolve().parents[1]
TRAIN_TRACES = REPO.parent / "shared" / "traces" / "pensieve" / "train"


def single_rate(env: AbrEnv, seconds: float) -> float:
    rng = np.random.default_rng(0)
    env.reset(seed=0)
    steps, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        _, _, terminated, _, _ = env.step(np.int64(rng.integers(6)))
        steps += 1
        if terminated:
            env.reset()
    return steps / (time.perf_counter() - start)


def vector_rate(env: AbrVectorEnv, seconds: float) -> float:
    """Decisions per second; the NEXT_STEP reset calls (which decide nothing) count no steps but their time."""
    rng = np.random.default_rng(0)
    env.reset(seed=0)
    actions = rng.integers(6, size=(64, env.num_envs))
    steps, calls, start = 0, 0, time.perf_counter()
    resetting = False
    while time.perf_counter() - start < seconds:
        _, _, terminated, _, _ = env.step(actions[calls % 64])
        calls += 1
        steps += 0 if resetting else env.num_envs
        resetting = bool(terminated.any())
    return steps / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sessions", type=int, nargs="+", default=[1, 64, 1024], help="vectorised env sizes")
    parser.add_argument("--seconds", type=float, default=3.0, help="time per measurement")
    args = parser.parse_args()
    traces = open_traces([str(TRAIN_TRACES)]) if TRAIN_TRACES.is_dir() else None
    single = single_rate(AbrEnv(traces=traces), args.seconds)
    print(f"single env (AbrEnv):        {single:12,.0f} steps/s")
    best = 0.0
    for n in args.sessions:
        rate = vector_rate(AbrVectorEnv(n, traces=traces), args.seconds)
        best = max(best, rate)
        print(f"vector env N={n:<6}:        {rate:12,.0f} steps/s  = {rate / single:7.1f} x single")
    print(f"best vectorised: {best:,.0f} steps/s (target >= 100,000: {'met' if best >= 100_000 else 'NOT met'})")


if __name__ == "__main__":
    main()
