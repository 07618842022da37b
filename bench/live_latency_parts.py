"""Where a live latency gap comes from: a session's latency split into its parts over time.

A live session's latency at session time t is t - A - p(t) (`LiveSession.latency_s`: A the channel's
start on the session clock, p the playhead). Nothing plays before the first frame, so from the first
frame on it changes only by (a) playing at a rate other than 1 (dL = (1 - rate) dt), (b) a stall
(dL = dt) and (c) a jump: a seek to live, or the schedule moved by a clock re-sync or a refresh
(A changes). So L(t) = L(first frame) + rate part + stall part + jumps, and the latency at the first
frame is the join's (the target, rounded to a chunk) plus the time from the join to the first frame.
`bench/live_segments.py` prints these parts for an emulated session and its twin at a few times
after the join, and their time-weighted means (the live report's `latency_mean_s`), so a gap shows
where it appears: once (the join, a jump) or accumulated (stalls, rate control).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

_LOGGED_S = 1e-4  # the event log's time resolution (player/client/eventlog.py rounds to 0.1 ms)


@dataclasses.dataclass(frozen=True, slots=True)
class LatencyParts:
    """One latency sample and its parts so far (session s; `t_s` from the join)."""

    t_s: float
    latency_s: float
    first_frame_s: float  # the latency at the first frame (the join's and the startup's)
    rate_s: float  # from playing at rates other than 1, so far
    stall_s: float  # from intervals with a stall in them, so far
    jump_s: float  # the rest: seeks to live, schedule moves


def stalled_spans(events: Sequence[dict[str, Any]]) -> list[tuple[float, float]]:
    """Each stall's (noticed, resumed) session times; an unresumed stall runs to the end."""
    spans: list[tuple[float, float]] = []
    start: float | None = None
    for e in events:
        if e["type"] == "stall" and start is None:
            start = e["t"]
        elif e["type"] == "resume" and start is not None:
            spans.append((start, e["t"]))
            start = None
    if start is not None:
        spans.append((start, float("inf")))
    return spans


def latency_parts(samples: Sequence[tuple[float, float, float]], events: Sequence[dict[str, Any]],
                  joined_at_s: float) -> list[LatencyParts]:
    """The parts of each latency sample. A sample's rate is the one in force up to it (the session
    samples before it changes the rate), so the interval ending at sample i+1 played at rate i+1's;
    an interval is stalled when its end falls in a stall's (noticed, resumed) span (a stall is noticed
    at the step that ran dry, and the step that resumes it advanced a stalled session; the emulated
    player's logged times are rounded to 0.1 ms, hence `_LOGGED_S`)."""
    if not samples:
        return []
    spans = stalled_spans(events)
    t0, first, _ = samples[0]
    rate = stall = jump = 0.0
    parts = [LatencyParts(t0 - joined_at_s, first, first, 0.0, 0.0, 0.0)]
    for (ta, la, _), (tb, lb, rb) in zip(samples, samples[1:]):
        played = (tb - ta) * (1.0 - rb)
        rest = (lb - la) - played
        if any(a - _LOGGED_S <= tb <= b + _LOGGED_S for a, b in spans):
            stall += (lb - la)
        else:
            rate += played
            jump += rest
        parts.append(LatencyParts(tb - joined_at_s, lb, first, rate, stall, jump))
    return parts


def at(parts: Sequence[LatencyParts], t_s: float) -> LatencyParts | None:
    """The last sample at or before `t_s` after the join."""
    before = [p for p in parts if p.t_s <= t_s]
    return before[-1] if before else None


def mean_parts(parts: Sequence[LatencyParts]) -> LatencyParts | None:
    """Time-weighted means (each interval with the sample at its end, as `LiveSession.stats`)."""
    if len(parts) < 2:
        return None
    weights = [b.t_s - a.t_s for a, b in zip(parts, parts[1:])]
    total = sum(weights) or 1.0

    def mean(name: str) -> float:
        return sum(getattr(p, name) * w for p, w in zip(parts[1:], weights)) / total

    return LatencyParts(parts[-1].t_s, mean("latency_s"), parts[0].first_frame_s, mean("rate_s"), mean("stall_s"),
                        mean("jump_s"))


def format_parts(emulated: Sequence[LatencyParts], twin: Sequence[LatencyParts],
                 checkpoints_s: Sequence[float] = (5.0, 10.0, 20.0, 30.0, 40.0, 50.0, 60.0)) -> str:
    """The parts of both sides at `checkpoints_s` after the join and their means, emulate / sim and
    the gap (ms), one line each."""
    lines = [f"{'latency parts':>14} {'latency s':>16} {'first frame s':>16} {'rate s':>16} {'stalls s':>16} "
             f"{'jumps s':>16}   (emulate/sim, gap ms)"]
    rows = [(f"{t:g} s", at(emulated, t), at(twin, t)) for t in checkpoints_s]
    rows.append(("mean", mean_parts(emulated), mean_parts(twin)))
    for label, e, s in rows:
        if e is None or s is None:
            continue
        cells = [f"{getattr(e, n):.3f}/{getattr(s, n):.3f} {1e3 * (getattr(e, n) - getattr(s, n)):+.0f}".rjust(16)
                 for n in ("latency_s", "first_frame_s", "rate_s", "stall_s", "jump_s")]
        lines.append(f"{label:>14} " + " ".join(cells))
    return "\n".join(lines)
