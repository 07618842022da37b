"""Scoring policies on one validation fold the way `abrkit train` does, without training.

`abrkit train --validation-fold I --select tail` scores its rounds on fold I's held-out traces, each
from offset 0 and from `--validation-offsets` seeded offsets, against the initial policy (the shipped
model F). To cross-validate a recipe one compares a candidate's score with F's on every fold; this
module gives that score for any policy files on any fold (the same split, offsets and rule, so F's
tail score on a fold is its mean there), and names the sessions a candidate loses most on, which the
mean hides: the kind of trace where candidates lose on the test sets (docs/LEARNED.md, round 9).

    python -m player.research.foldscore --traces ../shared/traces/pensieve/train \\
        --video ../shared/video/pensieve-envivio --fold 1 --models cand.json rounds/

scores `cand.json` and every `round-*.json` in `rounds/` against F on fold 1. It never looks at a test
set: what it reads is the training traces' held-out share.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from abr.algorithms.learned import PolicyModel, load_model
from abr.qoe import QOE_MODELS
from netsim.trace import Trace
from player.research.folds import split_traces, validation_offsets
from player.research.selection import Selection, versus_init
from player.research.sim import PROFILES, SimProfile, profile
from player.video import Video


@dataclass(frozen=True, kw_only=True, slots=True)
class WorstSession:
    """One validation session where a policy loses most against the reference."""

    trace: str
    offset_s: float
    difference: float


@dataclass(frozen=True, kw_only=True, slots=True)
class FoldScore:
    """A policy on a fold: the selection score (`abrkit train`'s), its mean QoE per session, the
    reference's mean, the paired comparison by trace, and its `worst` sessions against the reference."""

    name: str
    score: float
    mean_qoe: float
    reference_mean_qoe: float
    versus: Mapping[str, object]
    worst: tuple[WorstSession, ...]


@dataclass(frozen=True, kw_only=True, slots=True)
class FoldPlan:
    """The held-out traces of a fold and their start offsets (s), besides 0, as `abrkit train` draws them."""

    fold: int
    traces: tuple[Trace, ...]
    offsets_s: tuple[tuple[float, ...], ...]


def fold_plan(traces: Sequence[Trace], *, fraction: float = 0.2, fold: int = 0, seed: int = 0,
              offsets: int = 40) -> FoldPlan:
    """Fold `fold`'s validation traces and offsets, exactly `abrkit train`'s for the same options."""
    if offsets < 0:
        raise ValueError(f"validation offsets must be >= 0, got {offsets}")
    _, held = split_traces(traces, fraction, seed, fold)
    return FoldPlan(fold=fold, traces=tuple(held),
                    offsets_s=tuple(tuple(o) for o in validation_offsets(held, seed, offsets)))


def fold_sessions(policy: PolicyModel, video: Video, prof: SimProfile, plan: FoldPlan, qoe: str = "lin") -> np.ndarray:
    """QoE per validation session, trace by trace, offset 0 first (the order `abrkit train` scores)."""
    from player.research.train import evaluate_policy

    video = video.folded()
    seg_s = video.ladder.segment_duration_s
    if max(prof.session.startup_threshold_s, prof.session.rebuffer_resume_s) <= seg_s:
        from player.research.dagger_batch import evaluate_lockstep

        return evaluate_lockstep(policy, video, prof, plan.traces, QOE_MODELS[qoe], offsets_s=plan.offsets_s)
    return evaluate_policy(policy, video, plan.traces, prof, qoe=qoe, offsets_s=plan.offsets_s)


def score_on_fold(models: Mapping[str, PolicyModel], reference: PolicyModel, video: Video, prof: SimProfile,
                  plan: FoldPlan, *, selection: Selection = Selection(rule="tail"), qoe: str = "lin",
                  worst: int = 5) -> list[FoldScore]:
    """Each of `models` scored on `plan` against `reference` by `selection`, as `abrkit train` ranks
    its rounds (with `reference` its --init-model)."""
    ref = fold_sessions(reference, video, prof, plan, qoe)
    names = [t.name for t in plan.traces]
    where = [(t.name, o) for t, offs in zip(plan.traces, plan.offsets_s) for o in (0.0, *offs)]
    scores = []
    for name, model in models.items():
        mine = fold_sessions(model, video, prof, plan, qoe)
        diff = mine - ref
        order = np.argsort(diff, kind="stable")[:max(0, worst)]
        scores.append(FoldScore(
            name=name, score=selection.score(mine, ref), mean_qoe=float(np.mean(mine)),
            reference_mean_qoe=float(np.mean(ref)), versus=versus_init(mine, ref, names, lambda line: None),
            worst=tuple(WorstSession(trace=where[i][0], offset_s=where[i][1], difference=float(diff[i]))
                        for i in order)))
    return scores


def _model_files(paths: Sequence[str]) -> list[Path]:
    files: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            found = sorted(path.glob("*.json"))
            if not found:
                raise ValueError(f"--models: no .json policy files in {path}")
            files.extend(found)
        elif path.is_file():
            files.append(path)
        else:
            raise ValueError(f"--models: no such file or directory: {path}")
    return files


def fold_parser(prog: str, description: str) -> argparse.ArgumentParser:
    """A command's parser with the options that say which sessions a fold holds and how the tail rule
    scores them, as `abrkit train`'s (shared with `player.research.tailnoise`)."""
    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument("--traces", nargs="+", required=True, metavar="DIR_OR_FILE",
                        help="the training traces (as given to abrkit train)")
    parser.add_argument("--video", required=True, help="the video abrkit train was given")
    parser.add_argument("--validation-fraction", type=float, default=0.2, help="as abrkit train's (default 0.2)")
    parser.add_argument("--validation-offsets", type=int, default=40, help="as abrkit train's (default 40)")
    parser.add_argument("--seed", type=int, default=0,
                        help="the split's seed: abrkit train's --split-seed, else its --seed (default 0)")
    parser.add_argument("--profile", default="pensieve", choices=sorted(PROFILES), help="(default pensieve)")
    parser.add_argument("--tail-share", type=float, default=0.1, help="as abrkit train's (default 0.1)")
    parser.add_argument("--tail-weight", type=float, default=2.0, help="as abrkit train's (default 2)")
    return parser


def _parser() -> argparse.ArgumentParser:
    parser = fold_parser("python -m player.research.foldscore",
                         "Score policy files on one validation fold of the training traces as `abrkit train --select "
                         "tail` ranks its rounds, against a reference (the shipped model by default).")
    parser.add_argument("--models", nargs="+", required=True, metavar="FILE_OR_DIR",
                        help="policy files, or directories of them (e.g. a --keep-rounds directory)")
    parser.add_argument("--reference", default=None, metavar="MODEL",
                        help="the policy the tail rule compares with (default: the shipped model)")
    parser.add_argument("--fold", type=int, default=0, help="validation fold (default 0)")
    parser.add_argument("--switch-margin", type=float, default=None,
                        help="score every model with this switch margin instead of its own")
    parser.add_argument("--safety-floor", type=float, default=None, metavar="S",
                        help="score every model with this safety floor (s of buffer) instead of its own")
    parser.add_argument("--worst", type=int, default=5, help="worst sessions named per model (default 5)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    import dataclasses

    from netsim.sources import open_traces
    from player.video import load_video

    args = _parser().parse_args(argv)
    try:
        selection = Selection(rule="tail", share=args.tail_share, weight=args.tail_weight)
        if args.switch_margin is not None and not args.switch_margin >= 0:
            raise ValueError(f"--switch-margin must be >= 0, got {args.switch_margin}")
        if args.safety_floor is not None and not args.safety_floor >= 0:
            raise ValueError(f"--safety-floor must be >= 0 s, got {args.safety_floor}")
        files = _model_files(args.models)
        models: dict[str, PolicyModel] = {}
        for path in files:
            try:
                model = load_model(path)
            except (OSError, ValueError) as error:
                raise ValueError(f"--models: {path}: {error}") from None
            if args.switch_margin is not None:
                model = dataclasses.replace(model, switch_margin=args.switch_margin)
            if args.safety_floor is not None:
                model = dataclasses.replace(model, safety_floor_s=args.safety_floor)
            models[str(path)] = model
        try:
            reference = load_model(args.reference)
        except (OSError, ValueError) as error:
            raise ValueError(f"--reference: {error}") from None
        traces = open_traces(args.traces)
        if not traces:
            raise ValueError(f"no traces found in {' '.join(args.traces)}")
        try:
            plan = fold_plan(traces, fraction=args.validation_fraction, fold=args.fold, seed=args.seed,
                             offsets=args.validation_offsets)
        except ValueError as error:
            raise ValueError(f"--fold: {error}") from None
        video = load_video(args.video)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    held = len(plan.traces)
    print(f"fold {plan.fold}: {held} held-out trace{'s' if held != 1 else ''} x {1 + args.validation_offsets} "
          f"start{'s' if args.validation_offsets else ''}; {selection.describe().replace('initial policy', 'reference')}")
    for s in score_on_fold(models, reference, video, profile(args.profile), plan, selection=selection,
                           worst=args.worst):
        v = s.versus
        low, high = v["ci95"]  # type: ignore[misc]
        print(f"{s.name}: score {s.score:.2f} (reference {s.reference_mean_qoe:.2f}, "
              f"{'beats' if s.score > s.reference_mean_qoe else 'does not beat'} it); mean {s.mean_qoe:.2f}; "
              f"by trace {v['difference']:+.2f} [{low:+.2f}, {high:+.2f}], better on {v['wins']} of {v['traces']}")
        if s.worst:
            print("  worst: " + ", ".join(f"{w.trace}@{w.offset_s:.0f}s {w.difference:+.1f}" for w in s.worst))
    return 0


if __name__ == "__main__":
    sys.exit(main())
