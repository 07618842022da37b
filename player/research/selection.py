"""How `abrkit train` picks its policy on the validation sessions: by the mean, or with the tail weighted.

The mean QoE over validation sessions is what the test sets report, but a candidate can win most
sessions by a little and lose a few by a lot (seconds of stall when the bandwidth collapses), and
25 held-out traces resolve about +-1.5-2.5 QoE (docs/LEARNED.md, round 6): the mean sees the many
small gains and not the rare large losses. The `tail` rule scores a candidate by its per-session QoE
difference from a reference (the initial policy when there is one, else zero), where the worst
`share` of those differences count `weight` times:

    score = mean(reference) + (sum(d) + (weight - 1) * sum(worst ceil(share * n) of d)) / n

in QoE units (the reference itself scores its mean), so a candidate that loses a few sessions badly
against the initial policy must win that back on the rest. It is a CVaR-weighted objective (the
mean plus `(weight - 1) * share` times the conditional value at risk of the difference at level
`share`), the risk-averse selection of Tamar, Glassner and Mannor ("Optimizing the CVaR via
Sampling", AAAI 2015) applied to model selection rather than to the policy's own objective.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

SELECTION_RULES = ("mean", "tail")


@dataclass(frozen=True, kw_only=True, slots=True)
class Selection:
    """`rule` "mean": the mean validation QoE (the default); "tail": the worst `share` of the
    per-session differences from the reference count `weight` times."""

    rule: str = "mean"
    share: float = 0.1
    weight: float = 2.0

    def __post_init__(self) -> None:
        if self.rule not in SELECTION_RULES:
            raise ValueError(f"selection rule must be one of {', '.join(SELECTION_RULES)}, got {self.rule!r}")
        if not 0 < self.share <= 1:
            raise ValueError(f"selection share must be in (0, 1], got {self.share}")
        if not (1 <= self.weight < math.inf):
            raise ValueError(f"selection weight must be >= 1 and finite, got {self.weight}")

    def score(self, sessions: np.ndarray, reference: np.ndarray | None = None) -> float:
        """The candidate's selection score from its validation QoE per session (and the reference's
        on the same sessions, in the same order)."""
        q = np.asarray(sessions, dtype=np.float64)
        if self.rule == "mean":
            return float(np.mean(q))
        ref = np.zeros_like(q) if reference is None else np.asarray(reference, dtype=np.float64)
        if ref.shape != q.shape:
            raise ValueError(f"reference has {ref.shape} sessions, the candidate {q.shape}")
        d = q - ref
        worst = np.sort(d)[:max(1, math.ceil(self.share * d.size))]
        return float(np.mean(ref) + (np.sum(d) + (self.weight - 1) * np.sum(worst)) / d.size)

    def describe(self) -> str:
        return "mean validation QoE" if self.rule == "mean" else (
            f"validation QoE with the worst {self.share:.0%} of per-session differences from the initial policy "
            f"counted {self.weight:g} times")

    def metadata(self) -> dict[str, Any]:
        return {"rule": self.rule} if self.rule == "mean" else {"rule": self.rule, "share": self.share,
                                                                 "weight": self.weight}


@dataclass(frozen=True, kw_only=True, slots=True)
class MarginChoice:
    """A policy's decision rule scored at each switch margin: the one with the best selection score
    (the smallest margin on a tie), and every margin's (margin, selection score, mean validation QoE)."""

    margin: float
    score: float
    mean_qoe: float
    scores: tuple[tuple[float, float, float], ...]


def best_margin(rank: Callable[[float], tuple[float, float]], margins: Sequence[float]) -> MarginChoice:
    """`rank(m)` gives (selection score, mean QoE) of the policy at switch margin m. A round is as good as
    its best margin: `abrkit train` ranks rounds by this, so a round that wins only with its margin wins."""
    scores = tuple((float(m), *rank(m)) for m in margins)
    margin, score, mean = max(scores, key=lambda t: (t[1], -t[0]))
    return MarginChoice(margin=margin, score=score, mean_qoe=mean, scores=scores)


def best_guard(rank: Callable[[float, float], tuple[float, float]], at_zero: MarginChoice,
               floors: Sequence[float]) -> tuple[float, MarginChoice, dict[float, MarginChoice]]:
    """The safety floor (s, `PolicyModel.safety_floor_s`) and switch margin chosen together for one policy:
    `rank(m, f)` scores it at margin m and floor f, `at_zero` is its margins already scored without a floor.
    The best selection score wins, the smallest floor (then margin) on a tie. Returns the floor, its
    margins, and every floor's."""
    margins = [m for m, _, _ in at_zero.scores]
    by_floor = {float(f): at_zero if f == 0 else best_margin(lambda m, f=f: rank(m, f), margins) for f in floors}
    floor = max(by_floor, key=lambda f: (by_floor[f].score, -f))
    return floor, by_floor[floor], by_floor


def versus_init(mine: np.ndarray, init: np.ndarray, names: Sequence[str],
                say: Callable[[str], None]) -> dict[str, Any]:
    """The trained policy against the initial one on the validation sessions, paired by trace (each
    trace's mean over its start offsets, as they are not independent), with a bootstrap 95 % interval;
    also the mean of the worst 10 % of per-session differences (the tail the mean hides)."""
    from player.research.stats import paired_comparison

    by_trace = [{f"{j}:{n}": float(q) for j, (n, q) in enumerate(zip(names, v.reshape(len(names), -1).mean(axis=1)))}
                for v in (mine, init)]
    versus = paired_comparison("trained", by_trace[0], "init", by_trace[1])
    d = versus.difference
    diff = np.sort(np.asarray(mine, dtype=np.float64) - np.asarray(init, dtype=np.float64))
    tail = float(np.mean(diff[:max(1, math.ceil(0.1 * diff.size))]))
    say(f"against the initial policy on validation, paired by trace: {d.mean:+.2f} [{d.low:+.2f}, {d.high:+.2f}] "
        f"per session (95 % bootstrap), better on {versus.wins} of {versus.pairs} traces; worst 10 % of "
        f"sessions {tail:+.2f}")
    return {"difference": round(d.mean, 4), "ci95": [round(d.low, 4), round(d.high, 4)], "traces": versus.pairs,
            "wins": versus.wins, "ties": versus.ties, "losses": versus.losses, "worst_tenth_sessions": round(tail, 4)}
