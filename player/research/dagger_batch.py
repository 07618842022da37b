"""DAgger on the lock-step batch engine: the instant-solver expert for B sessions at once.

`player.research.train` asks the expert (`expert.expert_values`) once per decision: six small
offline-optimum searches of about 2 ms each, mostly Python overhead. Here one search serves every
session of a lock-step batch (`player.research.sim.LockStep`) and every first choice at once: the
frontier holds states of all (session, first quality) roots, expands them with the simulator's own
`download_step`/`buffer_step`, and merges states only within the same root and quality, with the
offline optimum's own merge rule (`optimal._prune`, grouped by root). So each root's search is the
one `expert_values` runs (without the optimum's floor pruning, which changes only its speed), and
a round of DAgger over a few hundred sessions is a few array operations per segment.

`lockstep_rollouts` plays a DAgger round (expert with probability beta per decision, else the
policy) for many sessions in lock-step and records (features, expert values) of each decision;
`evaluate_lockstep` scores a policy the way `train.evaluate_policy` does (same sessions, same order,
same QoE: the batch engine's sessions are the session engine's).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from abr.algorithms.learned import Learned, PolicyModel
from abr.features import batch_observation_features
from abr.qoe import QoeModel
from netsim.link import LinkBatch
from netsim.trace import Trace
from player.research.optimal import OptimalConfig, _prune
from player.research.sim import LatencyLookup, LockStep, SimProfile, buffer_step, cap_sleep_s, download_step
from player.video import Video

_NO_STATE_LIMIT = 1 << 40  # `_prune` coarsens its grid past max_states; the roots are many, never coarsen


def batch_expert_values(state: LockStep, model: QoeModel, *, horizon_segments: int, grid_s: float,
                        beam_states: int = 8) -> np.ndarray:
    """(B, Q) for each session of `state` (about to choose segment `state.segment_index`) and each
    quality q: q's own QoE term plus the best QoE of the next `horizon_segments - 1` segments after
    it, knowing the future trace (the expert's Q-values, as `expert.expert_values` for one session).

    As the offline optimum does, a narrow search first (`beam_states` states per root and segment)
    finds a real session per root whose QoE is a floor; the full search then drops states that
    cannot beat it even at the top quality with no stall or switch, which keeps the result and
    cuts most of the work."""
    search = _Search(state, model, horizon_segments, grid_s)
    floor = search.run(floor=None, beam=beam_states)
    return np.maximum(search.run(floor=floor, beam=None), floor).reshape(-1, search.rungs)


class _Search:
    """The forward search from every (session, first quality) root of a lock-step state."""

    def __init__(self, state: LockStep, model: QoeModel, horizon_segments: int, grid_s: float) -> None:
        video = state.video
        self.state, self.model = state, model
        bitrates = np.asarray(video.ladder.bitrates_bps, dtype=np.float64)
        self.utility = model.utility(bitrates, bitrates)
        self.rungs = bitrates.size
        sessions = state.buffer_s.shape[0]
        self.which = np.arange(sessions) if state.which is None else np.asarray(state.which)
        self.sizes = video.sizes_bytes.astype(np.float64)
        self.segments = range(state.segment_index, min(video.segment_count, state.segment_index + horizon_segments))
        self.merge = OptimalConfig(grid_s=grid_s, max_states=_NO_STATE_LIMIT)
        self.roots = sessions * self.rungs
        # to_go[k]: the most QoE the horizon's segments after its k-th can still add.
        counted = np.array([m >= model.first_counted_segment for m in self.segments], dtype=np.float64)
        best = counted * float(np.max(self.utility))
        self.to_go = np.r_[np.cumsum(best[::-1])[::-1][1:], 0.0]

    def run(self, *, floor: np.ndarray | None, beam: int | None) -> np.ndarray:
        """(sessions x Q,) the best value found per root; with `floor`, only states that can beat
        their root's floor are searched; with `beam`, only the `beam` best states per root and
        segment are kept (a quick real session)."""
        state, model, utility, rungs = self.state, self.model, self.utility, self.rungs
        prof, seg_s = state.prof, state.video.ladder.segment_duration_s
        cfg = prof.session
        n = self.segments[0]
        counted = model.first_counted_segment
        sleep = cap_sleep_s(state.buffer_s, cfg, seg_s)  # 0 after LockStep's own sleep; kept for any caller
        root = np.arange(self.roots)
        session, quality = root // rungs, root % rungs
        start_buffer = (state.buffer_s - sleep)[session]
        finish, elapsed = download_step(state.links, state.latency, prof, (state.trace_time_s + sleep)[session],
                                        self.sizes[n, quality], self.which[session])
        stall, buffer = buffer_step(start_buffer, elapsed, seg_s, started=(n > 0) | (start_buffer > 0))
        value = np.zeros(root.size)
        stalled = np.zeros(root.size)
        if n >= counted:
            last = state.last_quality[session]
            previous = np.where(last >= 0, utility[np.maximum(last, 0)], utility[quality])
            value = utility[quality] - model.rebuffer_penalty * stall - \
                model.switch_penalty * np.abs(utility[quality] - previous)
            stalled = stall
        last_level = len(self.segments) - 1
        for k, m in enumerate(self.segments[1:], start=1):
            sleep = cap_sleep_s(buffer, cfg, seg_s)
            parent = np.repeat(np.arange(root.size), rungs)
            choice = np.tile(np.arange(rungs), root.size)
            finish, elapsed = download_step(state.links, state.latency, prof, (finish + sleep)[parent],
                                            self.sizes[m, choice], self.which[root[parent] // rungs])
            stall, new_buffer = buffer_step((buffer - sleep)[parent], elapsed, seg_s, started=True)
            new_value, new_stalled = value[parent], stalled[parent]
            if m >= counted:
                new_value = new_value + utility[choice] - model.rebuffer_penalty * stall - \
                    model.switch_penalty * np.abs(utility[choice] - utility[quality[parent]])
                new_stalled = new_stalled + stall
            new_root = root[parent]
            if k == last_level:  # nothing follows: only each root's best value matters
                root, value = new_root, new_value
                break
            if floor is not None:
                bar = floor[new_root]
                keep = np.flatnonzero(new_value + self.to_go[k] >= bar - 1e-9 * np.maximum(1.0, np.abs(bar)))
            else:
                keep = np.arange(new_root.size)
            # One search per root: states merge only within their root and quality (the optimum's rule).
            kept = _prune(new_root[keep] * rungs + choice[keep], finish[keep], new_stalled[keep], new_value[keep],
                          model.rebuffer_penalty, self.merge)
            keep = np.sort(keep[kept])
            if beam is not None:
                order = np.lexsort((-new_value[keep], new_root[keep]))
                ranked = new_root[keep][order]
                first = np.r_[0, np.flatnonzero(ranked[1:] != ranked[:-1]) + 1]
                rank = np.arange(order.size) - np.repeat(first, np.diff(np.r_[first, order.size]))
                keep = np.sort(keep[order[rank < beam]])
            root, quality = new_root[keep], choice[keep]
            finish, buffer, value, stalled = finish[keep], new_buffer[keep], new_value[keep], new_stalled[keep]
        out = np.full(self.roots, -np.inf)
        np.maximum.at(out, root, value)
        return out


@dataclass(frozen=True, kw_only=True, slots=True, eq=False)
class LockStepRollouts:
    """What `lockstep_rollouts` recorded: one row per labelled decision, and one QoE per session."""

    features: np.ndarray  # (n, F)
    values: np.ndarray  # (n, Q) the expert's value of each quality
    session: np.ndarray  # (n,) the session each row comes from
    qoe: np.ndarray  # (B,) each session's QoE under the played (mixture) policy
    agreed: int  # labelled decisions where the policy chose the expert's best quality
    policy_qoe: np.ndarray | None = None  # (B,) the policy teacher's own QoE on these sessions, without exploration


def start_sessions(video: Video, prof: SimProfile, traces: Sequence[Trace], offsets_s: Sequence[float],
                   which: Sequence[int]) -> LockStep:
    """Lock-step sessions j = 0..B-1 on `traces[which[j]]` from `offsets_s[j]`, before their first request."""
    return LockStep(video, prof, LinkBatch(traces, payload_factor=prof.payload_factor), LatencyLookup(traces, prof),
                    np.asarray(offsets_s, dtype=np.float64), which=np.asarray(which, dtype=np.int64))


def lockstep_rollouts(video: Video, prof: SimProfile, traces: Sequence[Trace], which: Sequence[int],
                      offsets_s: Sequence[float], *, policy: PolicyModel | None, beta: float, label_fraction: float,
                      rng: np.random.Generator, model: QoeModel, horizon_segments: int, grid_s: float,
                      extra_columns: Callable[[LockStep], np.ndarray] | None = None) -> LockStepRollouts:
    """One DAgger round for sessions j = 0..B-1 on `traces[which[j]]` from `offsets_s[j]`, in lock-step:
    at every decision the expert values each quality; the session plays the expert's best with
    probability `beta` (always without a `policy`), else the policy's choice; a decision is
    recorded when the expert played it or with probability `label_fraction`. Two draws per session
    and decision, whatever the expert says, so the random stream depends only on `rng`.
    `extra_columns(state)`, (B, k), is appended to each decision's features before the policy sees
    them (research on inputs the schema lacks, `bench/prediction_headroom.py`)."""
    state = start_sessions(video, prof, traces, offsets_s, which)
    sessions = len(offsets_s)
    rows_x, rows_v, rows_s = [], [], []
    agreed = 0
    while state.to_decision():
        x = batch_observation_features(state.observation())
        if extra_columns is not None:
            x = np.concatenate([x, extra_columns(state)], axis=1)
        values = batch_expert_values(state, model, horizon_segments=horizon_segments, grid_s=grid_s)
        best = np.argmax(values, axis=1)
        if policy is None:
            quality, labelled = best, np.ones(sessions, dtype=bool)
        else:
            draws = rng.random((2, sessions))
            use_expert = draws[0] < beta
            labelled = use_expert | (draws[1] < label_fraction)
            choice = policy.predict(x)
            agreed += int(np.sum((choice == best) & labelled))
            quality = np.where(use_expert, best, choice)
        rows_x.append(x[labelled])
        rows_v.append(values[labelled])
        rows_s.append(np.flatnonzero(labelled))
        state.step(quality.astype(np.int64))
    bitrates = np.asarray(video.ladder.bitrates_bps, dtype=np.float64)
    qoe = model.scores(bitrates[state.qualities], state.rebuffer_s, bitrates)
    return LockStepRollouts(features=np.concatenate(rows_x), values=np.concatenate(rows_v),
                            session=np.concatenate(rows_s), qoe=qoe, agreed=agreed)


def evaluate_lockstep(policy: PolicyModel, video: Video, prof: SimProfile, traces: Sequence[Trace], model: QoeModel, *,
                      offsets_s: Sequence[Sequence[float]] | None = None) -> np.ndarray:
    """`train.evaluate_policy` on the batch engine: QoE per session, each trace from offset 0 and then
    from each of its `offsets_s[j]`, in that order."""
    starts = [(j, o) for j in range(len(traces)) for o in (0.0, *(offsets_s[j] if offsets_s else ()))]
    state = start_sessions(video, prof, traces, [o for _, o in starts], [j for j, _ in starts])
    state.play_out(Learned(policy))
    bitrates = np.asarray(video.ladder.bitrates_bps, dtype=np.float64)
    return model.scores(bitrates[state.qualities], state.rebuffer_s, bitrates)
