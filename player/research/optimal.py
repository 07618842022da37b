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

    def __post_init__(self) -> None:
        if not self.grid_s > 0:
            raise ValueError(f"grid must be > 0 s, got {self.grid_s}")
        if self.max_states < 1:
            raise ValueError("max_states must be >= 1")


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
    levels = ladder_bps.size
    cfg = prof.session
    seg_s = video.ladder.segment_duration_s
    links: LinkBatch | FaultedLinkBatch = LinkBatch([trace], payload_factor=prof.payload_factor)
    if faults:
        links = FaultedLinkBatch(links, [faults])
    latency = LatencyLookup([trace], prof)
    sizes = video.sizes_bytes.astype(np.float64)

    # Current frontier of states (one entry per surviving state).
    quality = np.array([-1 if start_quality is None else start_quality], dtype=np.int64)
    trace_time = np.array([start_trace_time_s])
    buffer = np.array([start_buffer_s])
    value = np.array([0.0])
    stalled = np.array([0.0])  # counted stall so far; value + penalty * stalled is the stall-free part
    started = start_segment > 0 or start_buffer_s > 0
    parents: list[np.ndarray] = []
    choices: list[np.ndarray] = []
    for n in range(start_segment, video.segment_count):
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
        finish, elapsed = download_step(links, latency, prof, start, sizes[n, choice],
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
        keep = _prune(choice, finish, new_stalled, new_value, model.rebuffer_penalty, config)
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
    return OptimalResult(trace=trace.name, qoe=float(value[best]), qualities=path,
                         states_kept=int(sum(c.size for c in choices)))


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
