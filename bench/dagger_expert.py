"""The imitation expert's cost per labelled decision: the batched expert over a lock-step batch
(`player.research.dagger_batch.batch_expert_values`, what `abrkit train --engine batch` runs)
against the one-session expert (`player.research.expert.expert_values`, `--engine session`),
measured in the same run on the same states (CPU time, so the machine's load matters less).

Sessions on the Pensieve training traces from seeded offsets play the expert's best quality; every
decision of the batch is labelled by the batched expert, and every `--every`-th session's by the
single one too (whose values must agree).

    python bench/dagger_expert.py [--sessions 128] [--horizon 6] [--every 8]
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np

from abr.qoe import QOE_MODELS
from netsim.link import LinkBatch
from netsim.sources import open_traces
from player.research.dagger_batch import batch_expert_values
from player.research.expert import ExpertConfig, expert_values
from player.research.sim import PROFILES, LatencyLookup, LockStep
from player.video import load_video

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"


class _State:
    def __init__(self, segment_index: int, buffer_s: float, last_quality: int) -> None:
        self.segment_index, self.buffer_s = segment_index, buffer_s
        self.last_quality = None if last_quality < 0 else last_quality


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=128)
    parser.add_argument("--horizon", type=int, default=6)
    parser.add_argument("--every", type=int, default=8, help="label every N-th session with the single expert too")
    args = parser.parse_args()
    video = load_video(SHARED / "video" / "pensieve-envivio").folded()
    prof = PROFILES["pensieve"]
    traces = open_traces([str(SHARED / "traces" / "pensieve" / "train")])
    which = np.arange(args.sessions) % len(traces)
    rng = np.random.default_rng(0)
    offsets = np.array([rng.uniform(0, traces[j].duration_s) for j in which])
    state = LockStep(video, prof, LinkBatch(traces, payload_factor=prof.payload_factor), LatencyLookup(traces, prof),
                     offsets, which=which)
    config = ExpertConfig(horizon_segments=args.horizon)
    batch_s = single_s = 0.0
    batch_n = single_n = 0
    worst = 0.0
    while state.to_decision():
        start = time.process_time()
        values = batch_expert_values(state, QOE_MODELS["lin"], horizon_segments=args.horizon, grid_s=config.grid_s)
        batch_s += time.process_time() - start
        batch_n += args.sessions
        for j in range(0, args.sessions, args.every):
            scalar = _State(state.segment_index, float(state.buffer_s[j]), int(state.last_quality[j]))
            start = time.process_time()
            single = expert_values(video, traces[int(which[j])], prof, scalar,  # type: ignore[arg-type]
                                   float(state.trace_time_s[j]), config)
            single_s += time.process_time() - start
            single_n += 1
            worst = max(worst, float(np.max(np.abs(single - values[j]))))
        state.step(np.argmax(values, axis=1).astype(np.int64))
    per_batch, per_single = batch_s / batch_n * 1e3, single_s / single_n * 1e3
    print(f"load average {os.getloadavg()[0]:.1f}; {args.sessions} sessions, horizon {args.horizon}")
    print(f"single-session expert: {per_single:.2f} ms CPU per decision ({single_n} decisions)")
    print(f"batched expert:        {per_batch:.2f} ms CPU per decision ({batch_n} decisions)")
    print(f"ratio: {per_single / per_batch:.1f}x; largest value difference {worst:.2g} (QoE units)")


if __name__ == "__main__":
    main()
