"""Is bandwidth prediction the lever for the learned policy? Its headroom, measured (docs/LEARNED.md,
round 13), on the Pensieve training traces only: fold 0's fit share against its 25 held-out traces.

Table 1: a learned throughput predictor (`player/research/predictor.py`, fitted on bba and F sessions
over the fit traces) against the harmonic mean of 5 and dash.js's EWMA, scored by `bench/estimators.py`
on the held-out traces' sessions: the capacity of the next transfer (at the last quality) and the mean
capacity over the next `--window` seconds.
Table 2: round 4's imitation (`bench/imitation_capacity.py`: horizon-6 expert labels, one 64x64 network)
with input columns appended: (a) none; (b) the oracle, the true values of table 1's two targets at each
state (b1, b2: one of them; b3: the mean capacity in each of the next six segment durations; and the
two with seeded noise of a given size: a predictor that accurate whose errors are independent of
the truth); (c) the
predictors' estimates of them from the player's own history. Agreement with the expert's best
quality and mean regret per decision (QoE), on the fit states and the held-out states, over `--seeds`
fits. Table 3: those networks played on held-out sessions (QoE per session). Table 4: (a), (b) and
(c) after DAgger rounds (the recipe's first stage), played the same way.

    python bench/prediction_headroom.py [--starts 4] [--window 20] [--predictor-starts 4] [--seeds 5] [--dagger-rounds 3]
        [--dagger-seeds 3] [--play-starts 8]

Seeded (one BLAS thread), so the figures do not depend on the machine's load; prints CPU seconds.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from abr.algorithms.learned import PolicyModel, make_learned
from abr.estimators import DashEwma, HarmonicMean
from abr.features import batch_observation_features
from abr.qoe import QOE_MODELS
from abr.registry import make
from abr.types import BatchAbr
from netsim.sources import open_traces
from netsim.trace import Trace
from player.research.dagger_batch import start_sessions
from player.research.folds import split_traces
from player.research.predictor import (
    TARGETS,
    Histories,
    PredictedThroughput,
    PredictorConfig,
    ThroughputPredictor,
    fit_predictor,
    future_capacity_bps,
    history_inputs,
    mean_capacity_bps,
    play_histories,
    training_set,
)
from player.research.sim import PROFILES, LockStep
from player.research.train import TrainConfig, fit_policy
from player.video import Video, load_video

sys.path.insert(0, str(Path(__file__).resolve().parent))
from estimators import Sample, score, table  # noqa: E402
from imitation_capacity import SHARED, agreement_regret, expert_rollouts, seeded_starts  # noqa: E402

_LOG2_TOP_CLIP = (-8.0, 4.0)  # as the features' log2 throughput / top bitrate
BINS = 6  # the expert's horizon, in segments
NOISE_LOG2 = (0.15, 0.3, 0.6)  # standard deviations of the noisy oracles' errors, log2 units
PREDICTORS = {
    "MLP 64x64, last 8": PredictorConfig(history=8),
    "MLP 64x64, last 20": PredictorConfig(history=20),
    "linear (ridge), last 8": PredictorConfig(history=8, kind="linear", l2_alpha=1.0),
    "linear (ridge), last 20": PredictorConfig(history=20, kind="linear", l2_alpha=1.0),
}


def histories(video: Video, traces: list[Trace], starts: int, seed: int, window_s: float) -> list[Histories]:
    """bba's and F's sessions on every trace from `starts` offsets seeded by (`seed`, trace, rollout)."""
    which, offsets = seeded_starts(traces, starts, seed)
    players: list[Callable[[], BatchAbr]] = [lambda: make("bba"), make_learned]  # type: ignore[list-item]
    return [play_histories(build(), video, PROFILES["pensieve"], traces, which, offsets, window_s=window_s)
            for build in players]


def sessions(runs: Sequence[Histories], target: str) -> list[list[Sample]]:
    """Every session's downloads, each with the truth of `target` before its request."""
    column = TARGETS.index(target)
    return [[Sample(download=d, true_bps=float(h.truth_bps[j, i, column])) for i, d in enumerate(h.downloads(j))]
            for h in runs for j in range(h.download_bytes.shape[0])]


def top_relative(log2_bps: np.ndarray, top_bps: float) -> np.ndarray:
    return np.clip(log2_bps - np.log2(top_bps), *_LOG2_TOP_CLIP)


def extra_columns(window_s: float, predictors: Sequence[ThroughputPredictor], top_bps: float
                  ) -> Callable[[LockStep], np.ndarray]:
    """The oracle's two columns, then each predictor's two, then the oracle's mean capacity in each of
    `BINS` segment-long bins from the request on, as log2(capacity / top bitrate)."""
    def columns(state: LockStep) -> np.ndarray:
        seg_s = state.video.ladder.segment_duration_s
        bins = np.stack([mean_capacity_bps(state, k * seg_s, (k + 1) * seg_s) for k in range(BINS)], axis=1)
        out = [top_relative(np.log2(future_capacity_bps(state, window_s)), top_bps)]
        seen = slice(0, state.segment_index)
        for p in predictors:
            x = history_inputs(state.hist_bytes[:, seen], state.hist_s[:, seen], p.config.history)
            out.append(top_relative(p.predict_log2_mbps(x) + np.log2(1e6), top_bps))
        out.append(top_relative(np.log2(np.maximum(bins, 1.0)), top_bps))
        return np.concatenate(out, axis=1)
    return columns


def with_noisy_oracles(x: np.ndarray, oracle: list[int], rng: np.random.Generator) -> np.ndarray:
    """`x` with copies of its `oracle` columns plus seeded noise of each `NOISE_LOG2` size appended,
    independent of everything the player saw."""
    return np.concatenate([x, *(x[:, oracle] + rng.normal(0.0, sd, (len(x), len(oracle))) for sd in NOISE_LOG2)],
                          axis=1)


class Player:
    """Plays networks fitted on extra columns in lock-step sessions (`traces[which[j]]` from
    `offsets[j]`), the columns computed as in the labelled states; the choice is the top score."""

    def __init__(self, video: Video, traces: list[Trace], which: list[int], offsets: list[float],
                 columns: Callable[[LockStep], np.ndarray], oracle: list[int]) -> None:
        self.video, self.traces, self.which, self.offsets = video, traces, which, offsets
        self.columns, self.oracle = columns, oracle

    def _state(self) -> LockStep:
        return start_sessions(self.video, PROFILES["pensieve"], self.traces, self.offsets, self.which)

    def _score(self, state: LockStep) -> np.ndarray:
        bitrates = np.asarray(self.video.ladder.bitrates_bps, dtype=np.float64)
        return QOE_MODELS["lin"].scores(bitrates[state.qualities], state.rebuffer_s, bitrates)

    def qoe(self, model: PolicyModel, keep: list[int]) -> np.ndarray:
        state, rng = self._state(), np.random.default_rng(9)
        while state.to_decision():
            x = np.concatenate([batch_observation_features(state.observation()), self.columns(state)], axis=1)
            state.step(np.argmax(model.scores(with_noisy_oracles(x, self.oracle, rng)[:, keep]), axis=1))
        return self._score(state)

    def reference(self, abr: BatchAbr) -> np.ndarray:
        state = self._state()
        state.play_out(abr)
        return self._score(state)


class Columns:
    """A network fitted on some columns, given all of them (a DAgger round's policy)."""

    def __init__(self, model: PolicyModel, keep: list[int]) -> None:
        self.model, self.keep = model, keep

    def predict(self, x: np.ndarray) -> np.ndarray:
        return self.model.predict(x[:, self.keep])


def fit_on(x: np.ndarray, values: np.ndarray, video: Video, keep: list[int], base: int, seed: int) -> PolicyModel:
    """One 64x64 network, 60 epochs, on the schema's columns and `keep`'s extra ones."""
    return fit_policy(x[:, keep], values, video, TrainConfig(hidden_sizes=(64, 64), max_epochs=60, ensemble=1),
                      seed=seed, extra_names=[f"extra_{k}" for k in keep[base:]])


def dagger(video: Video, traces: list[Trace], data: tuple[np.ndarray, np.ndarray], keep: list[int], base: int,
           columns: Callable[[LockStep], np.ndarray], args: argparse.Namespace, seed: int) -> PolicyModel:
    """Round 0 fitted on the expert's labels `data`, then `args.dagger_rounds` DAgger rounds (expert
    share 0.5^i, every decision labelled, all rounds' labels refitted), as `abrkit train` does."""
    xs, vs = [data[0]], [data[1]]
    model = fit_on(data[0], data[1], video, keep, base, seed)
    for i in range(1, args.dagger_rounds + 1):
        more = expert_rollouts(video, traces, args.starts, 100 * (seed + 1) + i, args.horizon, extra_columns=columns,
                               policy=Columns(model, keep), beta=0.5 ** i)  # type: ignore[arg-type]
        xs.append(more.features)
        vs.append(more.values)
        model = fit_on(np.concatenate(xs), np.concatenate(vs), video, keep, base, seed)
    return model


def _spread(values: np.ndarray) -> str:
    return f"{values.mean():.3f}" if values.size == 1 else f"{values.mean():.3f} ({values.min():.3f}..{values.max():.3f})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--starts", type=int, default=4, help="expert rollouts per trace, from seeded offsets")
    parser.add_argument("--predictor-starts", type=int, default=4, help="bba and F sessions per trace for the predictor")
    parser.add_argument("--window", type=float, default=20.0, help="the second target's window, s")
    parser.add_argument("--horizon", type=int, default=6)
    parser.add_argument("--seeds", type=int, default=5, help="fits per variant, seeds 0..N-1")
    parser.add_argument("--dagger-rounds", type=int, default=3, help="DAgger rounds for table 4")
    parser.add_argument("--dagger-seeds", type=int, default=3, help="fit seeds for table 4")
    parser.add_argument("--play-starts", type=int, default=8, help="played sessions per held-out trace (table 3)")
    args = parser.parse_args()
    video = load_video(SHARED / "video/pensieve-envivio").folded()
    fit, held_out = split_traces(open_traces([str(SHARED / "traces/pensieve/train")]), 0.2, 0)

    train_runs = histories(video, fit, args.predictor_starts, 11, args.window)
    held_runs = histories(video, held_out, args.predictor_starts, 12, args.window)
    predictors = {}
    for name, config in PREDICTORS.items():
        pairs = [training_set(h, config.history) for h in train_runs]
        x, y = np.concatenate([p[0] for p in pairs]), np.concatenate([p[1] for p in pairs])
        predictors[name] = fit_predictor(x, y, config)
    print(f"predictors fitted on {len(x)} requests of bba and F on {len(fit)} fit traces ({args.predictor_starts} "
          f"seeded starts each); scored on {len(held_out)} held-out traces ({time.process_time():.0f} s CPU so far)")
    for target in TARGETS:
        held = sessions(held_runs, target)
        builders = {"harmonic 5 (Pensieve, MPC)": lambda: HarmonicMean(window=5), "dash.js EWMA 3/8 s": DashEwma}
        builders |= {f"predictor: {name}": (lambda p=p, t=target: PredictedThroughput(p, t))
                     for name, p in predictors.items()}
        what = "the next transfer at the last quality" if target == "next" else f"the next {args.window:g} s"
        print(table(f"\nTable 1{'ab'[TARGETS.index(target)]}: the capacity of {what}, held-out sessions of bba and F",
                    [score(name, build, held) for name, build in builders.items()]), flush=True)

    top_bps = float(video.ladder.bitrates_bps[-1])
    chosen = [predictors["MLP 64x64, last 8"], predictors["MLP 64x64, last 20"], predictors["linear (ridge), last 8"]]
    columns = extra_columns(args.window, chosen, top_bps)
    fit_data = expert_rollouts(video, fit, args.starts, 1, args.horizon, extra_columns=columns)
    held_data = expert_rollouts(video, held_out, args.starts, 2, args.horizon, extra_columns=columns)
    (x_fit, v_fit), (x_held, v_held) = (fit_data.features, fit_data.values), (held_data.features, held_data.values)
    base = x_fit.shape[1] - 2 * (1 + len(chosen)) - BINS
    bins = list(range(base + 2 * (1 + len(chosen)), x_fit.shape[1]))
    print(f"\n{len(x_fit)} fit states ({len(fit)} traces), {len(x_held)} held-out states ({len(held_out)} traces); "
          f"{time.process_time():.0f} s CPU so far")
    oracle, predicted = [base, base + 1], [[base + 2 + 2 * k, base + 3 + 2 * k] for k in range(len(chosen))]
    x_fit = with_noisy_oracles(x_fit, oracle, np.random.default_rng(7))
    x_held = with_noisy_oracles(x_held, oracle, np.random.default_rng(8))
    noisy = [[x_fit.shape[1] - 2 * (len(NOISE_LOG2) - k), x_fit.shape[1] - 2 * (len(NOISE_LOG2) - k) + 1]
             for k in range(len(NOISE_LOG2))]
    variants = {"(a) none": [], "(b) oracle: next transfer, next window": oracle,
                "(b1) oracle: next transfer only": [base], "(b2) oracle: next window only": [base + 1],
                f"(b3) oracle: mean capacity in each of the next {BINS} segment durations": bins}
    variants |= {f"(b) oracle with noise, sd {sd:g} in log2": cols for sd, cols in zip(NOISE_LOG2, noisy)}
    variants |= {"(c) MLP predictor, last 8": predicted[0], "(c) MLP predictor, last 20": predicted[1],
                 "(c) linear predictor, last 8": predicted[2]}
    print(f"\nTable 2: imitation of the horizon-6 expert, one 64x64 network, 60 epochs, fit seeds 0..{args.seeds - 1} "
          "(mean, range); |err| p50: the extra columns' median relative error against the oracle's on the held-out "
          "states (next transfer / next window)\n"
          "| extra inputs | |err| p50 % | agreement fit | agreement held out | regret fit | regret held out | "
          "regret held out - (a)'s, same seed | x 47 decisions |\n"
          "| --- | --- | --- | --- | --- | --- | --- | --- |")
    which, offsets = seeded_starts(held_out, args.play_starts, 3)
    play = Player(video, held_out, which, offsets, columns, oracle)
    baseline, played = None, {}
    for name, extra in variants.items():
        keep = list(range(base)) + extra
        runs, qoe = [], []
        for seed in range(args.seeds):
            model = fit_on(x_fit, v_fit, video, keep, base, seed)
            runs.append((*agreement_regret(model, x_fit[:, keep], v_fit), *agreement_regret(model, x_held[:, keep], v_held)))
            qoe.append(play.qoe(model, keep))
        a_fit, r_fit, a_held, r_held = np.asarray(runs).T
        error = ("" if len(extra) != 2 or extra == oracle else
                 " / ".join(f"{100 * np.median(np.abs(2.0 ** (x_held[:, c] - x_held[:, o]) - 1)):.1f}"
                            for c, o in zip(extra, oracle)))
        baseline = r_held if baseline is None else baseline
        gain = r_held - baseline
        played[name] = (np.asarray(qoe), 47 * gain.mean())
        print(f"| {name} | {error} | " + " | ".join(_spread(v) for v in (a_fit, a_held, r_fit, r_held, gain)) +
              f" | {47 * gain.mean():+.2f} |", flush=True)
    expert = expert_rollouts(video, held_out, args.play_starts, 3, args.horizon).qoe
    shipped = play.reference(make_learned())
    print(f"\nTable 3: the same networks played on the held-out traces ({len(offsets)} sessions, {args.play_starts} "
          f"seeded starts per trace; QoE_lin per session; the clairvoyant horizon-{args.horizon} expert scores "
          f"{expert.mean():.2f} and F (shipped, for scale) {shipped.mean():.2f} on them)\n"
          "| extra inputs | QoE per session, mean over seeds (range) | - (a)'s, paired by seed and session | "
          "table 2's bridge |\n| --- | --- | --- | --- |")
    first = played["(a) none"][0]
    for name, (qoe, bridge) in played.items():
        print(f"| {name} | {_spread(qoe.mean(axis=1))} | {_spread((qoe - first).mean(axis=1))} | {-bridge:+.2f} |")
    print(f"\nTable 4: {args.dagger_rounds} DAgger rounds after round 0 (the networks of tables 2 and 3), then "
          f"played as table 3; fit seeds 0..{args.dagger_seeds - 1} ({time.process_time():.0f} s CPU so far)\n"
          "| extra inputs | QoE per session, mean over seeds (range) | - (a)'s, paired by seed and session |\n"
          "| --- | --- | --- |")
    first = None
    for name in ("(a) none", "(b) oracle: next transfer, next window", "(c) MLP predictor, last 20"):
        keep = list(range(base)) + variants[name]
        qoe = np.asarray([play.qoe(dagger(video, fit, (fit_data.features, v_fit), keep, base, columns, args, seed), keep)
                          for seed in range(args.dagger_seeds)])
        first = qoe if first is None else first
        print(f"| {name} | {_spread(qoe.mean(axis=1))} | {_spread((qoe - first).mean(axis=1))} |", flush=True)
    print(f"\n{time.process_time():.0f} s CPU in all")


if __name__ == "__main__":
    main()
