"""Speed of the offline optimum against the plain dynamic program, measured in the same run.

    python bench/optimal_speed.py [--every 7] [--grid 0.1]

The reference is the same forward DP without the floor (`OptimalConfig(bound=False)`: every state
that survives the merge is expanded, as before the floor existed). Prints CPU seconds per trace of
each, the ratio, and the largest difference of the results (docs/OPTIMAL.md gives the grid error
they must stay within).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from netsim.formats import load_traces
from player.research.optimal import OptimalConfig, offline_optimal
from player.research.sim import PROFILES
from player.video import load_video

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--every", type=int, default=7, help="use every k-th trace (default 7: 11 traces)")
    parser.add_argument("--grid", type=float, action="append", help="grid(s) in s (default 0.25 and 0.1)")
    args = parser.parse_args()
    if not (SHARED / "traces").is_dir():
        print(f"skipped: shared data not found at {SHARED}")
        return 0
    traces = load_traces([SHARED / "traces/pensieve/test-public"])[:: args.every]
    video = load_video(SHARED / "video/pensieve-envivio")
    prof = PROFILES["pensieve"]
    print(f"offline optimum, {len(traces)} Pensieve test traces, Envivio video, pensieve profile, QoE_lin")
    print(f"{'grid s':>8}{'plain s/trace':>15}{'bounded s/trace':>17}{'ratio':>8}{'max |diff|':>12}{'states kept':>14}")
    for grid in args.grid or [0.25, 0.1]:
        plain_cfg, bounded_cfg = OptimalConfig(grid_s=grid, bound=False), OptimalConfig(grid_s=grid)
        plain_s = bounded_s = 0.0
        plain, bounded, plain_states, bounded_states = [], [], 0, 0
        for trace in traces:
            started = time.process_time()
            a = offline_optimal(video, trace, prof, config=plain_cfg)
            middle = time.process_time()
            b = offline_optimal(video, trace, prof, config=bounded_cfg)
            plain_s += middle - started
            bounded_s += time.process_time() - middle
            plain.append(a.qoe)
            bounded.append(b.qoe)
            plain_states += a.states_kept
            bounded_states += b.states_kept
        diff = np.abs(np.array(plain) - np.array(bounded)).max()
        print(f"{grid:8.2f}{plain_s / len(traces):15.3f}{bounded_s / len(traces):17.3f}{plain_s / bounded_s:7.1f}x"
              f"{diff:12.3f}{bounded_states / max(plain_states, 1):13.1%}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
