"""Offline optimal: the best QoE any policy could reach on a trace, knowing the whole future.

A forward dynamic program over segments. A state after segment n is (last quality, trace time,
buffer level) plus the QoE so far; each state branches on every quality of segment n+1 with the
simulator's own download and buffer rules (`player.research.sim.download_step`, `cap_sleep_s`,
`buffer_step`), so the optimum is over exactly the sessions the simulator can produce.

The state space is continuous, so states are merged on a grid (`grid_s`, default 20 ms, on both
trace time and buffer); in each cell the state with the highest QoE so far survives, exactly (its
time and buffer are not rounded). Every surviving path is a real session, so the result is
achievable (a lower bound of the true optimum); merging can only lose paths whose QoE-to-go
differs from the survivor's within a cell. `docs/OPTIMAL.md` reports how the result moves with the
grid; `tests/player/research/test_optimal.py` checks it is >= every algorithm on every trace.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from abr.qoe import QoeModel, qoe_config
from netsim.faults import FaultedLinkBatch, FaultWindow
from netsim.link import LinkBatch
from netsim.trace import Trace
from player.research.sim import LatencyLookup, SimProfile, buffer_step, cap_sleep_s, download_step
from player.video import Video


@dataclass(frozen=True, kw_only=True, slots=True, eq=False)
class OptimalResult:
    """The best session found: its QoE, its quality per segment, and how many states were kept."""

    trace: str
    qoe: float
    qualities: np.ndarray
    states_kept: int


@dataclass(frozen=True, kw_only=True, slots=True)
class OptimalConfig:
    grid_s: float = 0.02  # merge states closer than this in trace time and in buffer
    stall_cell_s: float = 0.25  # states whose stall differs by less are compared on time and utility
    max_states: int = 200_000  # safety bound per segment; the coarsest cells are merged first beyond it
    beam_states: int = 64  # states per segment of the quick first search whose QoE the full search must beat
    bound: bool = True  # drop states that cannot beat the quick search's session (False: the plain DP, slower)

    def __post_init__(self) -> None:
        if not self.grid_s > 0:
            raise ValueError(f"grid must be > 0 s, got {self.grid_s}")
        if self.max_states < 1:
            raise ValueError("max_states must be >= 1")
        if self.beam_states < 1:
            raise ValueError("beam_states must be >= 1")


def offline_optimal(video: Video, trace: Trace, prof: SimProfile, *, qoe: QoeModel | str = "lin",
                    config: OptimalConfig = OptimalConfig(), start_segment: int = 0,
                    start_trace_time_s: float = 0.0, start_buffer_s: float = 0.0,
                    start_quality: int | None = None, faults: Sequence[FaultWindow] = ()) -> OptimalResult:
    """Best QoE from segment `start_segment` on (default: the whole session) with full knowledge.

    The start state lets a caller ask what the optimum does from any point of a session (the
    imitation-learning expert needs that); QoE is counted from segment max(start, first counted).
    `faults` are on the trace clock (a whole session starting at trace time 0, as `simulate` runs it).
    A video with audio is solved on its one-pipeline view (`Video.folded`: each video segment
    downloaded with the audio under it), a close bound for the two-pipeline sessions `simulate` runs.
    `qoe` by name is the profile's QoE of that name on this video (`SimProfile.qoe_model`); a
    quality-aware model scores each segment's own quality, and a startup penalty charges the first
    download's time.
    """
    video = video.folded()
    if isinstance(qoe, str):
        model = prof.qoe_model(prof.qoe if qoe == prof.qoe.name else qoe_config(qoe), video)
    else:
        model = qoe
    ladder_bps = np.asarray(video.ladder.bitrates_bps, dtype=np.float64)
    if model.quality_metric is not None:  # (N, Q) per-segment utility
        if video.quality is None or video.quality_metric != model.quality_metric:
            raise ValueError(f"QoE {model.name!r} needs {model.quality_metric} scores the video does not carry")
        utilities = model.segment_utility(ladder_bps, ladder_bps, video.quality)
    else:
        utilities = np.broadcast_to(model.utility(ladder_bps, ladder_bps), (video.segment_count, ladder_bps.size))
    links: LinkBatch | FaultedLinkBatch = LinkBatch([trace], payload_factor=prof.payload_factor)
    if faults:
        links = FaultedLinkBatch(links, [faults])
    problem = _Problem(model=model, utilities=np.asarray(utilities, dtype=np.float64), links=links,
                       latency=LatencyLookup([trace], prof), prof=prof, seg_s=video.ladder.segment_duration_s,
                       sizes=video.sizes_bytes.astype(np.float64), start_segment=start_segment,
                       start_trace_time_s=start_trace_time_s, start_buffer_s=start_buffer_s, start_quality=start_quality)
    if config.bound and problem.bounded:
        # A narrow search first: its session is real, so its QoE is a floor the full search prunes against.
        quick = _search(problem, config, beam=config.beam_states)
        found = _search(problem, config, floor=quick.qoe)
        found = found if found.qoe >= quick.qoe else quick
    else:
        found = _search(problem, config)
    return OptimalResult(trace=trace.name, qoe=found.qoe, qualities=found.qualities, states_kept=found.states_kept)


@dataclass(frozen=True, kw_only=True, slots=True, eq=False)
class _Problem:
    """What one search needs: the QoE, per-segment utilities, the link and the start state."""

    model: QoeModel
    utilities: np.ndarray  # (N, Q)
    links: LinkBatch | FaultedLinkBatch
    latency: LatencyLookup
    prof: SimProfile
    seg_s: float
    sizes: np.ndarray  # (N, Q) bytes
    start_segment: int
    start_trace_time_s: float
    start_buffer_s: float
    start_quality: int | None

    @property
    def bounded(self) -> bool:
        """Whether `to_go` bounds the QoE still to earn (no penalty can ever pay)."""
        m = self.model
        return m.rebuffer_penalty >= 0 and m.switch_penalty >= 0 and m.startup_penalty >= 0

    def to_go(self) -> np.ndarray:
        """to_go[n]: the most QoE the segments after n can add (each at its best utility, no stall or switch)."""
        n = self.utilities.shape[0]
        best = self.utilities.max(axis=1)
        best[: max(self.model.first_counted_segment, 0)] = 0.0
        after = np.zeros(n)
        after[:-1] = np.cumsum(best[::-1])[::-1][1:]
        return after


@dataclass(frozen=True, kw_only=True, slots=True, eq=False)
class _Found:
    qoe: float
    qualities: np.ndarray
    states_kept: int


def _search(problem: _Problem, config: OptimalConfig, *, floor: float = -np.inf, beam: int | None = None) -> _Found:
    """The forward DP. States whose QoE so far plus the most the rest can add stays below `floor`
    cannot lead to a session better than one already found, so they are dropped; `beam` keeps only
    that many states (the highest QoE so far) per segment, for a quick first session."""
    model, utilities, prof = problem.model, problem.utilities, problem.prof
    cfg = prof.session
    seg_s = problem.seg_s
    levels = utilities.shape[1]
    segment_count = utilities.shape[0]
    to_go = problem.to_go() if np.isfinite(floor) else None
    # Current frontier of states (one entry per surviving state).
    quality = np.array([-1 if problem.start_quality is None else problem.start_quality], dtype=np.int64)
    trace_time = np.array([problem.start_trace_time_s])
    buffer = np.array([problem.start_buffer_s])
    value = np.array([0.0])
    stalled = np.array([0.0])  # counted stall so far; value + penalty * stalled is the stall-free part
    started = problem.start_segment > 0 or problem.start_buffer_s > 0
    parents: list[np.ndarray] = []
    choices: list[np.ndarray] = []
    for n in range(problem.start_segment, segment_count):
        sleep = cap_sleep_s(buffer, cfg, seg_s)
        base_time = trace_time + sleep
        base_buffer = buffer - sleep
        if n == 0 and cfg.initial_quality is not None:
            options = np.array([min(cfg.initial_quality, levels - 1)])
        else:
            options = np.arange(levels)
        k = options.size
        parent = np.repeat(np.arange(quality.size), k)
        choice = np.tile(options, quality.size)
        start = base_time[parent]
        finish, elapsed = download_step(problem.links, problem.latency, prof, start, problem.sizes[n, choice],
                                        np.zeros(parent.size, dtype=np.int64))
        stall, new_buffer = buffer_step(base_buffer[parent], elapsed, seg_s, started=started)
        gain = np.zeros(parent.size)
        utility = utilities[n]
        if n >= model.first_counted_segment:
            prev_q = quality[parent]
            prev_u = np.where(prev_q >= 0, utilities[max(n - 1, 0)][np.maximum(prev_q, 0)], utility[choice])
            gain = utility[choice] - model.rebuffer_penalty * stall - model.switch_penalty * np.abs(utility[choice] - prev_u)
        if n == 0 and model.startup_penalty:  # the first download's time is the startup delay
            gain = gain - model.startup_penalty * elapsed
        new_value = value[parent] + gain
        new_stalled = stalled[parent] + (stall if n >= model.first_counted_segment else 0.0)
        if to_go is not None:  # before the merge, which costs far more than this filter
            hopeful = np.flatnonzero(new_value + to_go[n] >= floor - 1e-9 * max(1.0, abs(floor)))
            if hopeful.size == 0:  # rounding left no state at the floor: keep the best one
                hopeful = np.array([int(np.argmax(new_value))])
            parent, choice, finish, new_buffer = parent[hopeful], choice[hopeful], finish[hopeful], new_buffer[hopeful]
            new_value, new_stalled = new_value[hopeful], new_stalled[hopeful]
        keep = _prune(choice, finish, new_stalled, new_value, model.rebuffer_penalty, config)
        if beam is not None and keep.size > beam:
            keep = keep[np.argpartition(-new_value[keep], beam)[:beam]]
        quality, trace_time, buffer = choice[keep], finish[keep], new_buffer[keep]
        value, stalled = new_value[keep], new_stalled[keep]
        parents.append(parent[keep])
        choices.append(choice[keep])
        started = True
    best = int(np.argmax(value))
    path = np.empty(len(choices), dtype=np.int64)
    index = best
    for step in range(len(choices) - 1, -1, -1):
        path[step] = choices[step][index]
        index = int(parents[step][index])
    return _Found(qoe=float(value[best]), qualities=path, states_kept=int(sum(c.size for c in choices)))


def _prune(quality: np.ndarray, trace_time: np.ndarray, stalled: np.ndarray, value: np.ndarray, penalty: float,
           config: OptimalConfig) -> np.ndarray:
    """Indices of the states worth keeping among those with one quality and trace time (within a cell).

    With the same quality and trace time, a state that stalled s seconds more has exactly s more
    buffer (each stalled second is a second of buffer the player did not drain), and extra buffer can
    save at most that much future stall. So B makes A redundant when B stalled no more and earned at
    least as much stall-free utility (W = value + penalty*stall), or when B stalled more and still
    has at least A's value. What remains is a frontier in (stall, W), usually a few states per cell.
    """
    grid = config.grid_s
    worth = value + penalty * stalled
    while True:
        cell = np.floor(trace_time / grid).astype(np.int64)
        # Sort by group (quality, time cell), then stall ascending, then W descending.
        order = np.lexsort((-worth, stalled, cell, quality))
        group = _group_ids(quality[order], cell[order])
        w_sorted = worth[order]
        # Pass 1: drop states whose W does not beat every state that stalled no more.
        keep1 = w_sorted > _prefix_max_exclusive(w_sorted, group)
        order, group = order[keep1], group[keep1]
        # Pass 2: drop states whose value is matched by a state that stalled more.
        v_rev = value[order][::-1]
        keep2 = (v_rev > _prefix_max_exclusive(v_rev, group[::-1]))[::-1]
        keep = order[keep2]
        # Pass 3: across time cells, a state that is later, stalled about as much (same stall cell)
        # and earned no more stall-free utility than an earlier one is redundant too.
        stall_cell = np.floor(stalled[keep] / config.stall_cell_s).astype(np.int64)
        order3 = np.lexsort((-worth[keep], trace_time[keep], stall_cell, quality[keep]))
        w3 = worth[keep][order3]
        keep3 = w3 > _prefix_max_exclusive(w3, _group_ids(quality[keep][order3], stall_cell[order3]))
        keep = keep[order3[keep3]]
        if keep.size <= config.max_states:
            return keep
        grid *= 2  # too many distinct states: coarser cells for this segment only


def _group_ids(*keys: np.ndarray) -> np.ndarray:
    """0, 0, 1, 1, 1, 2, ... for runs of equal keys in already-sorted arrays."""
    change = np.zeros(keys[0].size, dtype=bool)
    for key in keys:
        change[1:] |= key[1:] != key[:-1]
    return np.cumsum(change)


def _prefix_max_exclusive(values: np.ndarray, group: np.ndarray) -> np.ndarray:
    """For each element, the max of the earlier elements of its group (-inf for the first)."""
    if values.size == 0:
        return values
    first = np.ones(values.size, dtype=bool)
    first[1:] = group[1:] != group[:-1]
    runs = np.cumsum(first) - 1  # 0, 0, 1, 1, 1, 2, ... whatever order the group labels come in
    low = float(np.min(values))
    span = 2.0 * (float(np.max(values)) - low + 1.0)
    # Lifting each later run above all earlier ones keeps one running max from leaking across runs.
    running = np.maximum.accumulate((values - low) + runs * span)
    out = np.empty_like(values)
    out[1:] = running[:-1] - runs[1:] * span + low
    out[first] = -np.inf
    return out
