"""How good is the imitation expert? The instant solver (the offline optimum over the next H segments
with the true future, `abrkit train --horizon H`) replanned at every decision, against the full-session
offline optimum, on the Pensieve *training* traces from offset 0. The student cannot beat its
teacher: this is the ceiling of a policy imitating that expert. The shipped student is measured on
the same sessions for comparison.

    python bench/expert_quality.py [--horizons 6 10 16] [--traces DIR]

QoE figures do not depend on the machine; the CPU seconds per horizon do (a ratio between horizons
is what to read). About 80 s of CPU for the optimum, 6 / 25 / 106 s for horizons 6 / 10 / 16.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np

from abr.algorithms.learned import load_model
from abr.qoe import QOE_MODELS
from netsim.sources import open_traces
from player.research.dagger_batch import evaluate_lockstep, lockstep_rollouts
from player.research.optimal import offline_optimal
from player.research.sim import PROFILES
from player.video import load_video

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--horizons", type=int, nargs="+", default=[6, 10, 16])
    parser.add_argument("--traces", default=str(SHARED / "traces/pensieve/train"))
    parser.add_argument("--video", default=str(SHARED / "video/pensieve-envivio"))
    args = parser.parse_args()
    video = load_video(args.video).folded()
    prof = PROFILES["pensieve"]
    traces = open_traces([args.traces])
    model = QOE_MODELS["lin"]
    print(f"{len(traces)} traces from offset 0, load average {os.getloadavg()[0]:.1f}")
    optimum = np.array([offline_optimal(video, t, prof, qoe=model).qoe for t in traces])
    print(f"| policy | QoE_lin | % of optimum | CPU s |\n| --- | --- | --- | --- |\n"
          f"| offline optimum | {optimum.mean():.2f} | 100 | |")
    student = evaluate_lockstep(load_model(), video, prof, traces, model)
    print(f"| learned (shipped) | {student.mean():.2f} | {100 * student.mean() / optimum.mean():.1f} | |")
    for horizon in args.horizons:
        started = time.process_time()
        played = lockstep_rollouts(video, prof, traces, range(len(traces)), [0.0] * len(traces), policy=None, beta=1.0,
                                   label_fraction=1.0, rng=np.random.default_rng(0), model=model,
                                   horizon_segments=horizon, grid_s=1.0)
        print(f"| expert, horizon {horizon} | {played.qoe.mean():.2f} | {100 * played.qoe.mean() / optimum.mean():.1f} | "
              f"{time.process_time() - started:.0f} |", flush=True)


if __name__ == "__main__":
    main()
