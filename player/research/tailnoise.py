"""How far apart the tail rule puts policies that should tie: seed copies of one recipe, on one fold.

A candidate passes a fold (docs/LEARNED.md, rounds 9-11) when its tail score against the reference
(`selection.Selection`, rule "tail", as `abrkit train --select tail` and `foldscore` score it) beats the
reference's mean there. Call the difference the *gap*:

    gap(A | B) = score(A against B) - mean(B) = (sum(d) + (weight - 1) * sum(worst share of d)) / n,  d = A - B

It is 0 for B itself, and for any other policy it counts the worst tenth of the per-session
differences twice, so two policies that are equally good score a gap below 0 *both ways*. How far
below is the rule's noise for that recipe on that fold: a candidate is told apart from the reference
only by a gap outside the spread of gaps among seed copies of the reference's own recipe (`abrkit train
--seed S --split-seed 0`). This module scores each policy once on a fold's validation sessions (the
ones `foldscore` and `abrkit train` use) and gives every ordered pair's gap with a bootstrap 95 %
interval over the held-out traces (a trace's start offsets are resampled together: they are not
independent sessions):

    python -m player.research.tailnoise --traces ../shared/traces/pensieve/train \\
        --video ../shared/video/pensieve-envivio --folds 0,1,2,3,4 --models F.json Fs1.json Fs2.json \\
        [--candidates M1f4.json]

prints, per fold, the gap of every copy against every other copy, their range, and each candidate's
gap against each copy. It reads the training traces' held-out shares only, never a test set.
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from abr.algorithms.learned import PolicyModel, load_model
from player.research.foldscore import FoldPlan, fold_parser, fold_plan, fold_sessions
from player.research.selection import Selection
from player.research.sim import SimProfile, profile
from player.research.stats import Interval
from player.video import Video


def tail_gap(mine: np.ndarray, reference: np.ndarray, selection: Selection = Selection(rule="tail")) -> float:
    """`selection`'s score of `mine` against `reference` minus the reference's mean (0 for the reference)."""
    ref = np.asarray(reference, dtype=np.float64)
    return selection.score(np.asarray(mine, dtype=np.float64), ref) - float(np.mean(ref))


def tail_gap_ci(mine: np.ndarray, reference: np.ndarray, traces: int, selection: Selection = Selection(rule="tail"),
                *, resamples: int = 2000, seed: int = 0) -> Interval:
    """The gap with a percentile bootstrap 95 % interval that resamples whole traces: the sessions are
    `traces` equal runs, trace by trace (offset 0 first), as `fold_sessions` orders them."""
    d = np.asarray(mine, dtype=np.float64) - np.asarray(reference, dtype=np.float64)
    if traces < 1 or d.size % traces:
        raise ValueError(f"{d.size} sessions do not split into {traces} traces of equal runs")
    by_trace = d.reshape(traces, -1)
    rng = np.random.default_rng(seed)
    samples = by_trace[rng.integers(0, traces, size=(resamples, traces))].reshape(resamples, -1)
    k = max(1, math.ceil(selection.share * d.size))
    worst = np.sort(samples, axis=1)[:, :k].sum(axis=1)
    gaps = (samples.sum(axis=1) + (selection.weight - 1) * worst) / d.size
    low, high = np.percentile(gaps, [2.5, 97.5])
    return Interval(mean=tail_gap(mine, reference, selection), low=float(low), high=float(high), n=traces)


@dataclass(frozen=True, kw_only=True, slots=True)
class PairGap:
    """`policy`'s gap against `reference` on one fold, and its mean per-session difference."""

    fold: int
    policy: str
    reference: str
    gap: Interval
    mean_difference: float


def fold_gaps(sessions: Mapping[str, np.ndarray], plan: FoldPlan, pairs: Sequence[tuple[str, str]],
              selection: Selection = Selection(rule="tail")) -> list[PairGap]:
    """The gap of each (policy, reference) in `pairs`, from each policy's sessions on `plan`."""
    return [PairGap(fold=plan.fold, policy=a, reference=b,
                    gap=tail_gap_ci(sessions[a], sessions[b], len(plan.traces), selection),
                    mean_difference=float(np.mean(sessions[a] - sessions[b]))) for a, b in pairs]


def copy_pairs(copies: Sequence[str], candidates: Sequence[str] = ()) -> list[tuple[str, str]]:
    """Every ordered pair of distinct copies, then every candidate against every copy."""
    return [(a, b) for a in copies for b in copies if a != b] + [(c, b) for c in candidates for b in copies]


def score_folds(models: Mapping[str, PolicyModel], candidates: Mapping[str, PolicyModel], video: Video,
                prof: SimProfile, plans: Sequence[FoldPlan],
                selection: Selection = Selection(rule="tail")) -> list[PairGap]:
    """`fold_gaps` on each plan: the copies against each other, the candidates against the copies."""
    out: list[PairGap] = []
    for plan in plans:
        sessions = {name: fold_sessions(m, video, prof, plan) for name, m in {**models, **candidates}.items()}
        out.extend(fold_gaps(sessions, plan, copy_pairs(list(models), list(candidates)), selection))
    return out


def _parser() -> argparse.ArgumentParser:
    parser = fold_parser("python -m player.research.tailnoise",
                         "The tail rule's noise on validation folds: every seed copy's gap (tail score minus the "
                         "reference's mean) against every other copy, and candidates' gaps against the copies.")
    parser.add_argument("--models", nargs="+", required=True, metavar="FILE",
                        help="two or more seed copies of one recipe (e.g. the shipped model and --seed S --split-seed 0 "
                             "re-runs of its command)")
    parser.add_argument("--candidates", nargs="*", default=[], metavar="FILE", help="policies to place in that spread")
    parser.add_argument("--folds", default="0", help="folds, separated by commas (default 0)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    from netsim.sources import open_traces
    from player.video import load_video

    args = _parser().parse_args(argv)
    try:
        selection = Selection(rule="tail", share=args.tail_share, weight=args.tail_weight)
        if len(args.models) < 2:
            raise ValueError("--models needs two or more copies: a gap is between two policies")
        if len(set(args.models + args.candidates)) != len(args.models) + len(args.candidates):
            raise ValueError("a file is given twice in --models and --candidates")
        try:
            folds = [int(f) for f in args.folds.split(",")]
        except ValueError:
            raise ValueError(f"--folds must be fold numbers separated by commas, got {args.folds!r}") from None
        loaded: dict[str, PolicyModel] = {}
        for path in args.models + args.candidates:
            try:
                loaded[path] = load_model(path)
            except (OSError, ValueError) as error:
                raise ValueError(f"{path}: {error}") from None
        traces = open_traces(args.traces)
        if not traces:
            raise ValueError(f"no traces found in {' '.join(args.traces)}")
        try:
            plans = [fold_plan(traces, fraction=args.validation_fraction, fold=f, seed=args.seed,
                               offsets=args.validation_offsets) for f in folds]
        except ValueError as error:
            raise ValueError(f"--folds: {error}") from None
        video = load_video(args.video)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    copies = {p: loaded[p] for p in args.models}
    candidates = {p: loaded[p] for p in args.candidates}
    print(f"{selection.describe().replace('initial policy', 'reference')}; gap = tail score - the reference's mean, "
          "with a 95 % bootstrap interval over held-out traces")
    gaps = score_folds(copies, candidates, video, profile(args.profile), plans, selection)
    for plan in plans:
        held = len(plan.traces)
        print(f"fold {plan.fold}: {held} held-out traces x {1 + args.validation_offsets} starts")
        mine = [g for g in gaps if g.fold == plan.fold]
        for g in mine:
            print(f"  {g.policy} against {g.reference}: gap {g.gap.mean:+.2f} [{g.gap.low:+.2f}, {g.gap.high:+.2f}], "
                  f"mean difference {g.mean_difference:+.2f}")
        among = [g.gap.mean for g in mine if g.policy in copies]
        print(f"  copies against each other: gap {min(among):+.2f} to {max(among):+.2f} (mean {np.mean(among):+.2f}, "
              f"{len(among)} ordered pairs)")
        for name in candidates:
            own = [g.gap.mean for g in mine if g.policy == name]
            print(f"  {name} against the copies: gap {min(own):+.2f} to {max(own):+.2f} (mean {np.mean(own):+.2f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
