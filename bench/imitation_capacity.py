"""Is the learned policy short of capacity, or of information? Networks of several sizes are fitted
(`player.research.train.fit_policy`, one member each) to the instant-solver expert's values on the
states of expert rollouts over the fit share of the Pensieve training traces, and scored on the fit
states and on states of the held-out (validation) traces: agreement with the expert's best quality
and the mean regret of the chosen quality. Fitting better and generalising worse means capacity is
not what is missing.

    python bench/imitation_capacity.py [--horizon 6] [--starts 4]

Figures do not depend on the machine's load (seeded, one BLAS thread); about 2 minutes of CPU.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

import numpy as np

from abr.algorithms.learned import PolicyModel
from abr.qoe import QOE_MODELS
from netsim.sources import open_traces
from netsim.trace import Trace
from player.research.dagger_batch import LockStepRollouts, lockstep_rollouts
from player.research.folds import split_traces
from player.research.sim import PROFILES, LockStep
from player.research.train import TrainConfig, fit_policy
from player.video import Video, load_video

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
SIZES = (((64, 64), 60), ((256, 256), 120), ((128, 128, 128), 120))


def seeded_starts(traces: list[Trace], starts: int, seed: int) -> tuple[list[int], list[float]]:
    """(trace of each session, its start offset in s): `starts` sessions per trace, offsets seeded by
    (`seed`, trace, session)."""
    which = [j for j in range(len(traces)) for _ in range(starts)]
    return which, [float(np.random.default_rng([seed, j, i]).uniform(0.0, traces[j].duration_s))
                   for i, j in enumerate(which)]


def expert_rollouts(video: Video, traces: list[Trace], starts: int, seed: int, horizon: int, *,
                    extra_columns: Callable[[LockStep], np.ndarray] | None = None,
                    policy: PolicyModel | None = None, beta: float = 1.0) -> LockStepRollouts:
    """The expert's rollouts (a DAgger round's mixture with `policy`, expert share `beta`), `starts` per
    trace from offsets seeded by (`seed`, trace, rollout), every decision labelled with the expert's
    values; `extra_columns` as in `lockstep_rollouts`."""
    which, offsets = seeded_starts(traces, starts, seed)
    return lockstep_rollouts(video, PROFILES["pensieve"], traces, which, offsets, policy=policy, beta=beta,
                             label_fraction=1.0, rng=np.random.default_rng(seed), model=QOE_MODELS["lin"],
                             horizon_segments=horizon, grid_s=1.0, extra_columns=extra_columns)


def agreement_regret(model: PolicyModel, x: np.ndarray, values: np.ndarray) -> tuple[float, float]:
    """Share of states where `model` chooses the expert's best quality, and its mean regret (QoE)."""
    choice = np.argmax(model.scores(x), axis=1)
    regret = values.max(axis=1) - values[np.arange(len(values)), choice]
    return float(np.mean(choice == np.argmax(values, axis=1))), float(np.mean(regret))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--horizon", type=int, default=6)
    parser.add_argument("--starts", type=int, default=4, help="expert rollouts per trace, from seeded offsets")
    args = parser.parse_args()
    video = load_video(SHARED / "video/pensieve-envivio").folded()
    fit, held_out = split_traces(open_traces([str(SHARED / "traces/pensieve/train")]), 0.2, 0)
    fit_data, held_data = (expert_rollouts(video, fit, args.starts, 1, args.horizon),
                           expert_rollouts(video, held_out, args.starts, 2, args.horizon))
    (x_fit, v_fit), (x_held, v_held) = (fit_data.features, fit_data.values), (held_data.features, held_data.values)
    print(f"{len(x_fit)} fit states ({len(fit)} traces), {len(x_held)} held-out states ({len(held_out)} traces)")
    print("| hidden layers | epochs | agreement fit | agreement held out | regret fit | regret held out |\n"
          "| --- | --- | --- | --- | --- | --- |")
    for hidden, epochs in SIZES:
        model = fit_policy(x_fit, v_fit, video, TrainConfig(hidden_sizes=hidden, max_epochs=epochs, ensemble=1), seed=0)
        (agree_fit, regret_fit), (agree_held, regret_held) = (agreement_regret(model, x_fit, v_fit),
                                                              agreement_regret(model, x_held, v_held))
        print(f"| {'x'.join(map(str, hidden))} | {epochs} | {agree_fit:.3f} | {agree_held:.3f} | {regret_fit:.3f} | "
              f"{regret_held:.3f} |", flush=True)


if __name__ == "__main__":
    main()
