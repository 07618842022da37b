"""Discretisation error and cost of the offline optimum versus its grid (docs/OPTIMAL.md).

    python bench/optimal_grid.py [--every 7]

Mean QoE_lin of the optimum on every k-th Pensieve public test trace for grids 1.0 .. 0.02 s, the
largest and mean difference from the finest grid, and CPU seconds per trace (one core).
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
GRIDS_S = (1.0, 0.5, 0.25, 0.1, 0.05, 0.02)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--every", type=int, default=7, help="use every k-th trace (default 7: 11 traces)")
    args = parser.parse_args()
    if not (SHARED / "traces").is_dir():
        print(f"skipped: shared data not found at {SHARED}")
        return 0
    traces = load_traces([SHARED / "traces/pensieve/test-public"])[:: args.every]
    video = load_video(SHARED / "video/pensieve-envivio")
    results: dict[float, np.ndarray] = {}
    cost: dict[float, float] = {}
    for grid in GRIDS_S:
        start = time.process_time()
        results[grid] = np.array([offline_optimal(video, t, PROFILES["pensieve"], config=OptimalConfig(grid_s=grid)).qoe
                                  for t in traces])
        cost[grid] = (time.process_time() - start) / len(traces)
    finest = results[GRIDS_S[-1]]
    print(f"offline optimum vs grid, {len(traces)} Pensieve test traces, pensieve profile")
    print(f"{'grid s':>8}{'mean QoE':>10}{'max |diff|':>12}{'mean diff':>11}{'CPU s/trace':>13}")
    for grid in GRIDS_S:
        diff = finest - results[grid]
        print(f"{grid:8.2f}{results[grid].mean():10.3f}{np.abs(diff).max():12.3f}{diff.mean():11.3f}{cost[grid]:13.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
