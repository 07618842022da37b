"""Which training traces are fitted on and which pick the model: the seeded split and its folds.

`abrkit train` holds `validation_fraction` of the training traces out of fitting and picks the round
and switch margin on them. Those 25 of the 127 Pensieve training traces resolve about +-1.5-2.5 QoE
and hold 12 of its 68 HSDPA traces (docs/LEARNED.md, rounds 6-7), so one split can be decided by a
few traces. The held-out share is one fold of a seeded shuffle of the trace names: fold 0 is the split
every earlier model was trained with, and folds 1..k-1 (k = the number of whole held-out shares the
set holds; the last fold takes the remainder) hold out the other traces, so one training run per fold
is a k-fold cross-validation of a recipe, every training trace validated once.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import numpy as np

from netsim.trace import Trace


def fold_count(traces: int, fraction: float) -> int:
    """How many validation folds `traces` traces hold at `fraction` held out (1 when none can be)."""
    held = 0 if fraction == 0 else max(1, int(round(fraction * traces)))
    return 1 if held == 0 or held >= traces else traces // held


def split_traces(traces: Sequence[Trace], fraction: float, seed: int,
                 fold: int = 0) -> tuple[list[Trace], list[Trace]]:
    """(fit, validation) traces: a seeded shuffle of the names, `fraction` of them (>= 1 when > 0) held
    out, the `fold`-th such share (fold 0 the first; the last fold takes the remainder)."""
    folds = fold_count(len(traces), fraction)
    if not 0 <= fold < folds:
        raise ValueError(f"validation fold {fold} does not exist: {len(traces)} traces at a validation "
                         f"fraction of {fraction:g} make {folds} fold{'s' if folds != 1 else ''} (0..{folds - 1})")
    order = sorted(range(len(traces)), key=lambda i: traces[i].name)
    rng = np.random.default_rng([seed, 0x5EED])
    order = [order[i] for i in rng.permutation(len(order))]
    held = 0 if fraction == 0 else max(1, int(round(fraction * len(traces))))
    if held >= len(traces):
        held = 0  # too few traces to hold any out: validate on the fit traces
    end = len(order) if fold == folds - 1 and fold > 0 else (fold + 1) * held
    chosen = set(order[fold * held:end])
    validation = [traces[i] for i in sorted(chosen)]
    fit = [traces[i] for i in sorted(set(order) - chosen)]
    return fit, validation or fit


def validation_offsets(validation: Sequence[Trace], seed: int, count: int) -> list[list[float]]:
    """The `count` seeded start offsets (s) of each held-out trace, besides offset 0, on which `abrkit
    train` validates: trace j's come from a generator seeded by (seed, j), j its place in `validation`."""
    return [np.random.default_rng([seed, 0x0FF5E7, j]).uniform(0.0, t.duration_s, count).tolist()
            for j, t in enumerate(validation)]


def traces_digest(traces: Sequence[Trace]) -> str:
    """A short content hash of a trace set (names and arrays), recorded in the model's metadata."""
    digest = hashlib.sha256()
    for trace in sorted(traces, key=lambda t: t.name):
        digest.update(trace.name.encode() + b"\0" + trace.durations_s.tobytes() + trace.bandwidth_bps.tobytes())
    return digest.hexdigest()[:16]
