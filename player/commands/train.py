"""`abrkit train`: train the `learned` ABR by imitating the offline optimum (Comyco + DAgger)."""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
import resource
import shlex
import sys
import time
from pathlib import Path

from abr.algorithms.learned import PolicyModel, encode_model, load_model
from netsim.sources import open_traces
from player.commands import load_plugins
from player.commands.trace import _range
from player.errors import CliError
from player.research.expert import ExpertConfig
from player.research.falling import FallingSpec, falling_copies
from player.research.folds import split_traces
from player.research.provenance import ProgressLines
from player.research.selection import SELECTION_RULES, Selection
from player.research.sim import PROFILES, profile
from player.research.train import TrainConfig, total_rollouts, train
from player.video import load_video


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    defaults = TrainConfig()
    parser = subparsers.add_parser(
        "train", help="train the learned ABR (imitation of the offline optimum with DAgger)",
        description="Train the `learned` ABR policy on TRAINING traces only: DAgger rounds of rollouts labelled by "
                    "the instant-solver offline optimum, an MLP refitted each round, the best round on held-out "
                    "training traces kept. Use it with --abr learned:MODEL. See docs/LEARNED.md.")
    parser.add_argument("--traces", required=True, nargs="+", metavar="DIR_OR_FILE",
                        help="training trace files or directories (never the traces you evaluate on)")
    parser.add_argument("--video", required=True, help="Pensieve video_size folder, Sabre JSON, or packaged title dir")
    parser.add_argument("--out", required=True, type=Path, help="model file to write (JSON)")
    parser.add_argument("--seed", type=int, default=defaults.seed,
                        help="seed of every random draw (default %(default)s)")
    parser.add_argument("--split-seed", type=int, default=None, metavar="S",
                        help="seed of the held-out split and the validation offsets instead of --seed: copies of a "
                             "recipe with other --seed values then validate on the same sessions (default: --seed)")
    parser.add_argument("--iterations", type=int, default=defaults.iterations,
                        help="DAgger rounds after the expert round (default %(default)s)")
    parser.add_argument("--workers", type=int, default=1, help="rollout worker processes (default 1; 0 = all cores)")
    parser.add_argument("--profile", default="pensieve", choices=sorted(PROFILES),
                        help="simulation profile the policy is trained for (default %(default)s)")
    parser.add_argument("--rollouts-per-trace", type=int, default=defaults.rollouts_per_trace,
                        help="rollouts per training trace and round, from random trace offsets (default %(default)s)")
    parser.add_argument("--horizon", type=int, default=defaults.expert.horizon_segments,
                        help="segments the instant-solver expert plans ahead (default %(default)s)")
    parser.add_argument("--expert-rebuffer-penalty", type=float, default=defaults.expert.rebuffer_penalty,
                        metavar="PER_S", help="stall penalty per second in the expert's values (default: the QoE "
                                              "model's, 4.3 for lin); higher makes the imitated policy hedge")
    parser.add_argument("--validation-fraction", type=float, default=defaults.validation_fraction,
                        help="share of the training traces held out to pick the best round (default %(default)s)")
    parser.add_argument("--validation-fold", type=int, default=0, metavar="I",
                        help="hold out the I-th share of --validation-fraction of a seeded shuffle of the traces "
                             "(0, the default, is the split of every earlier model; 1/fraction folds): one run "
                             "per fold cross-validates a recipe (player/research/folds.py)")
    parser.add_argument("--validation-offsets", type=int, default=defaults.validation_offsets, metavar="N",
                        help="seeded start offsets per held-out trace, besides offset 0, in the validation that picks "
                             "the round and the switch margin: more resolve smaller differences (default %(default)s)")
    parser.add_argument("--extra-traces", nargs="+", default=[], metavar="DIR_OR_FILE",
                        help="more traces to roll out and fit on (e.g. from `abrkit trace generate`); never used "
                             "for validation, which stays on held-out --traces")
    parser.add_argument("--falling-copies", type=int, default=0, metavar="K",
                        help="also roll out and fit on K copies of each fit trace with seeded bandwidth drops "
                             "(player/research/falling.py), so the policy meets collapses; validation stays on the "
                             "held-out real traces (default 0)")
    parser.add_argument("--falling-depth", default=None, metavar="LO:HI",
                        help="--falling-copies: the bandwidth during a drop, a fraction of the trace's own, drawn "
                             "per drop from LO:HI (default %s:%s)" % FallingSpec().factor)
    parser.add_argument("--falling-every", default=None, metavar="LO:HI",
                        help="--falling-copies: seconds of normal bandwidth between drops, drawn from LO:HI "
                             "(default %g:%g)" % FallingSpec().normal_s)
    parser.add_argument("--engine", choices=("batch", "session"), default="batch",
                        help="play rollouts in lock-step with the batched expert (batch, default) or one session "
                             "at a time in --workers processes (session)")
    parser.add_argument("--ensemble", type=int, default=defaults.ensemble,
                        help="networks averaged into the policy (default %(default)s)")
    parser.add_argument("--epochs", type=int, default=defaults.max_epochs,
                        help="training epochs of each network per round (default %(default)s)")
    parser.add_argument("--target", choices=("regret", "action"), default=defaults.target,
                        help="fit each quality's regret (cost-sensitive) or the expert's action (default %(default)s)")
    parser.add_argument("--teacher", choices=("expert", "policy"), default=defaults.teacher,
                        help="label decisions with the clairvoyant instant-solver expert (expert, default) or with "
                             "each quality's value under the previous round's policy, played to the end of the "
                             "session (policy: approximate policy iteration from --init-model; batch engine)")
    parser.add_argument("--init-model", type=Path, default=None, metavar="MODEL",
                        help="the policy the policy teacher starts from (e.g. abr/models/learned-default.json)")
    parser.add_argument("--explore", type=float, default=defaults.explore, metavar="P",
                        help="policy teacher: probability of a random quality per decision in rollouts "
                             "(default %(default)s)")
    parser.add_argument("--window-rounds", type=int, default=defaults.window_rounds, metavar="N",
                        help="policy teacher: each round fits on the data of its last N rounds (default %(default)s)")
    parser.add_argument("--warm-start", action="store_true",
                        help="fit each round's networks starting from the previous round's (round 0 from "
                             "--init-model) instead of a fresh draw; needs the regret target")
    parser.add_argument("--select", choices=SELECTION_RULES, default="mean",
                        help="pick the round and switch margin by the mean validation QoE (mean, default) or with "
                             "the worst --tail-share of the per-session differences from --init-model counted "
                             "--tail-weight times (tail; see docs/LEARNED.md)")
    parser.add_argument("--tail-share", type=float, default=Selection().share, metavar="F",
                        help="--select tail: share of the validation sessions that count extra (default %(default)s)")
    parser.add_argument("--tail-weight", type=float, default=Selection().weight, metavar="W",
                        help="--select tail: how many times they count (default %(default)s)")
    parser.add_argument("--safety-floors", default="0", metavar="S,S,...",
                        help="buffer floors (s) to choose from with the switch margin: below the chosen one the "
                             "policy steps down at least a rung (0 = none; default %(default)s, off)")
    parser.add_argument("--keep-rounds", type=Path, default=None, metavar="DIR",
                        help="also write every round's policy (switch margin 0) to DIR/round-<r>.json")
    parser.add_argument("--plugin", action="append", default=[], metavar="FILE_OR_MODULE",
                        help="import this Python file or module first (as sim, run and play do; repeatable)")
    progress = parser.add_mutually_exclusive_group()
    progress.add_argument("--progress", dest="progress", action="store_true", default=None,
                          help="show progress (the default: a bar on a terminal, a line every 10 s elsewhere)")
    progress.add_argument("--no-progress", dest="progress", action="store_false", help="never show progress")
    parser.set_defaults(func=run)


def _cpu_s() -> float:
    """CPU time of this process and its finished children (the rollout workers)."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def _command_line(args: argparse.Namespace) -> str:
    """The command as it reproduces this model (recorded in the model file)."""
    parts = ["abrkit", "train", "--traces", *args.traces, "--video", args.video, "--out", str(args.out),
             "--seed", str(args.seed), *(("--split-seed", str(args.split_seed)) if args.split_seed is not None else ()),
             "--iterations", str(args.iterations), "--profile", args.profile,
             "--rollouts-per-trace", str(args.rollouts_per_trace), "--horizon", str(args.horizon),
             *(() if args.expert_rebuffer_penalty is None else
               ("--expert-rebuffer-penalty", str(args.expert_rebuffer_penalty))),
             "--validation-fraction", str(args.validation_fraction), "--target", args.target,
             "--engine", args.engine, "--ensemble", str(args.ensemble), "--epochs", str(args.epochs),
             *(("--extra-traces", *args.extra_traces) if args.extra_traces else ()),
             *(("--falling-copies", str(args.falling_copies)) if args.falling_copies else ()),
             *(("--falling-depth", args.falling_depth) if args.falling_copies and args.falling_depth else ()),
             *(("--falling-every", args.falling_every) if args.falling_copies and args.falling_every else ()),
             *(("--validation-fold", str(args.validation_fold)) if args.validation_fold else ()),
             "--validation-offsets", str(args.validation_offsets),
             *(("--teacher", "policy", "--init-model", str(args.init_model), "--explore", str(args.explore),
                "--window-rounds", str(args.window_rounds)) if args.teacher == "policy" else ()),
             *(("--warm-start",) if args.warm_start else ()),
             *(("--select", "tail", "--tail-share", str(args.tail_share), "--tail-weight", str(args.tail_weight))
               if args.select == "tail" else ()),
             *(("--safety-floors", args.safety_floors) if safety_floors(args) != (0.0,) else ())]
    return shlex.join(parts)


def safety_floors(args: argparse.Namespace) -> tuple[float, ...]:
    """`--safety-floors` as seconds (errors name the option)."""
    try:
        floors = tuple(float(f) for f in args.safety_floors.split(","))
    except ValueError:
        raise CliError(f"--safety-floors must be seconds separated by commas, got {args.safety_floors!r}") from None
    if any(not (f >= 0 and math.isfinite(f)) for f in floors):
        raise CliError(f"--safety-floors must be finite values >= 0 s, got {args.safety_floors!r}")
    return floors


def falling_spec(args: argparse.Namespace) -> FallingSpec:
    """The drops of `--falling-copies` from `--falling-depth` / `--falling-every` (errors name the option)."""
    if (args.falling_depth or args.falling_every) and not args.falling_copies:
        raise CliError("--falling-depth and --falling-every shape the drops of --falling-copies, which is 0")
    spec = FallingSpec()
    for option, field_name, text in (("--falling-depth", "factor", args.falling_depth),
                                     ("--falling-every", "normal_s", args.falling_every)):
        if text is None:
            continue
        try:
            spec = dataclasses.replace(spec, **{field_name: _range(text, option)})
        except ValueError as error:
            message = str(error).replace(f"FallingSpec.{field_name}", option)
            raise CliError(message) from None
    return spec


def run(args: argparse.Namespace) -> int:
    load_plugins(args)
    if args.workers < 0:
        raise CliError("--workers must be >= 0")
    workers = (os.cpu_count() or 1) if args.workers == 0 else args.workers
    try:
        selection = Selection(rule=args.select, share=args.tail_share, weight=args.tail_weight)
    except ValueError as error:
        raise CliError(f"--select: {error}") from None
    if args.select == "tail" and args.init_model is None:
        print("note: --select tail without --init-model weights the worst sessions' own QoE (no reference policy)",
              file=sys.stderr)
    if args.validation_fold < 0:
        raise CliError(f"--validation-fold must be >= 0, got {args.validation_fold}")
    config = TrainConfig(seed=args.seed, split_seed=args.split_seed, iterations=args.iterations,
                         rollouts_per_trace=args.rollouts_per_trace,
                         validation_fraction=args.validation_fraction, validation_fold=args.validation_fold,
                         validation_offsets=args.validation_offsets, target=args.target, workers=workers,
                         engine=args.engine, ensemble=args.ensemble, max_epochs=args.epochs,
                         teacher=args.teacher, explore=args.explore, window_rounds=args.window_rounds,
                         warm_start=args.warm_start, selection=selection, safety_floors_s=safety_floors(args),
                         expert=ExpertConfig(horizon_segments=args.horizon,
                                             rebuffer_penalty=args.expert_rebuffer_penalty))
    if (args.teacher == "policy") != (args.init_model is not None):
        raise CliError("--init-model goes with --teacher policy (the policy it starts from), and only with it")
    init = None
    if args.init_model is not None:
        try:
            init = load_model(args.init_model)
        except (OSError, ValueError) as error:
            raise CliError(f"--init-model: {error}") from None
    traces = open_traces(args.traces)
    if not traces:
        raise CliError(f"no traces found in {' '.join(args.traces)}")
    extra = open_traces(args.extra_traces) if args.extra_traces else []
    if args.extra_traces and not extra:
        raise CliError(f"no traces found in --extra-traces {' '.join(args.extra_traces)}")
    if args.falling_copies < 0:
        raise CliError("--falling-copies must be >= 0")
    spec = falling_spec(args)
    try:
        fit, _ = split_traces(traces, config.validation_fraction, config.held_out_seed, config.validation_fold)
    except ValueError as error:
        raise CliError(f"--validation-fold: {error}") from None
    if args.falling_copies:
        extra = [*extra, *falling_copies(fit, args.falling_copies, config.seed, spec)]
    video = load_video(args.video)
    for note in video.notes:
        print(f"note: {note}", file=sys.stderr)
    prof = profile(args.profile)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    keep = args.keep_rounds
    if keep is not None:
        keep.mkdir(parents=True, exist_ok=True)

    def write_round(r: int, policy: PolicyModel) -> None:
        if keep is not None:
            (keep / f"round-{r}.json").write_bytes(encode_model(policy))

    wall0, cpu0 = time.monotonic(), _cpu_s()
    # A bar on a terminal, elsewhere (a log file, CI) a line every 10 s, as `abrkit sim` does.
    with ProgressLines(total_rollouts(traces, config, extra), desc="training", unit="rollout",
                       enabled=args.progress is not False) as bar:
        result = train(video, traces, prof, config, extra_traces=extra, metadata={"command": _command_line(args)}, progress=bar.update,
                       log=bar.write, on_round=write_round, init_policy=init)
    data = encode_model(result.model)
    tmp = args.out.with_name(args.out.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, args.out)
    wall_s, cpu_s = time.monotonic() - wall0, _cpu_s() - cpu0
    best = result.rounds[result.best_round]
    held_out = set(result.validation_traces) - set(result.fit_traces)
    validation = f"{len(held_out)} held out for validation" if held_out else "too few to hold any out for validation"
    print(f"trained on {len(result.fit_traces)} traces ({validation}), {best.samples} decisions labelled by the "
          f"expert up to round {result.best_round}")
    margin = result.model.switch_margin  # the one `train` picked from `margin_scores`
    margin_qoe = dict(result.margin_scores)[margin]
    floor = result.model.safety_floor_s
    print(f"best round {result.best_round}: validation QoE {best.validation_qoe:.2f} per session, "
          f"{margin_qoe:.2f} with switch margin {margin:g}" + (f" and safety floor {floor:g} s" if floor else ""))
    print(f"wrote {args.out} ({len(data)} bytes) in {wall_s:.0f} s wall, {cpu_s:.0f} s CPU "
          f"({workers} worker{'s' if workers != 1 else ''})")
    return 0
