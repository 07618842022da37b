"""A teacher the student can imitate: the value of each quality under the student's own policy.

The clairvoyant expert (`dagger_batch.batch_expert_values`) values a quality by the best QoE
reachable afterwards *knowing the coming bandwidth*; the student, who does not know it, learns an
average of choices it cannot tell apart (docs/LEARNED.md, "The 88 % target"). Here the value of
quality q in a session's state is Q^pi(s, q): the QoE of the rest of the session when the session
plays q now and then follows a policy pi that sees only what the player sees (Monte Carlo policy
evaluation on the session's own trace; Bertsekas' rollout algorithm, approximate policy iteration).
Every continuation is non-clairvoyant, so the argmax of E[Q^pi(s, .) | observation] is a policy
improvement over pi that the student can represent, and regressing the regrets of Q^pi is the
same cost-sensitive fit `train.fit_policy` already does.

The continuations run in lock-step: one clone of the batch per quality (`clone_sessions`), played
to the end of the video with pi's `decide_batch`.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from abr.features import batch_observation_features
from abr.qoe import QoeModel
from abr.types import BatchAbr
from netsim.trace import Trace
from player.research.dagger_batch import LockStepRollouts, start_sessions
from player.research.sim import LockStep, SimProfile
from player.video import Video

_PER_SESSION = ("trace_time_s", "start_offsets_s", "clock_s", "buffer_s", "last_quality", "startup_s", "stall_count")
_PER_SEGMENT = ("qualities", "rebuffer_s", "buffer_after_s", "buffer_before_s", "download_s", "request_s")


def clone_sessions(state: LockStep, index: np.ndarray) -> LockStep:
    """A new lock-step state whose session k is a copy of `state`'s session `index[k]` (same trace,
    clock, buffer and history), to be played on independently."""
    clone = object.__new__(LockStep)
    clone.video, clone.prof, clone.links, clone.latency = state.video, state.prof, state.links, state.latency
    sessions = state.buffer_s.shape[0]
    clone.which = (np.arange(sessions) if state.which is None else np.asarray(state.which))[index]
    clone.segment_index = state.segment_index
    for name in _PER_SESSION:
        setattr(clone, name, getattr(state, name)[index].copy())
    clone.hist_bytes, clone.hist_s = state.hist_bytes[index].copy(), state.hist_s[index].copy()
    for name in _PER_SEGMENT:
        setattr(clone, name, getattr(state, name)[:, index].copy())
    missing = set(vars(state)) - set(vars(clone))
    if missing:  # LockStep grew state this copy does not know how to split per session
        raise RuntimeError(f"clone_sessions does not copy LockStep's {', '.join(sorted(missing))}")
    return clone


def policy_values(state: LockStep, policy: BatchAbr, model: QoeModel) -> np.ndarray:
    """(B, Q) for each session of `state` (about to choose segment `state.segment_index`) and each
    quality q: the session's QoE when it plays q now and `policy` for every later segment. The part
    of the QoE already played is the same for every q, so differences between qualities are what
    the choice is worth."""
    rungs = len(state.video.ladder)
    sessions = state.buffer_s.shape[0]
    clone = clone_sessions(state, np.repeat(np.arange(sessions), rungs))
    clone.step(np.tile(np.arange(rungs), sessions))
    clone.play_out(policy)
    bitrates = np.asarray(state.video.ladder.bitrates_bps, dtype=np.float64)
    return model.scores(bitrates[clone.qualities], clone.rebuffer_s, bitrates).reshape(sessions, rungs)


def policy_rollouts(video: Video, prof: SimProfile, traces: Sequence[Trace], which: Sequence[int],
                    offsets_s: Sequence[float], *, policy: BatchAbr, model: QoeModel, explore: float,
                    rng: np.random.Generator) -> LockStepRollouts:
    """Sessions j = 0..B-1 on `traces[which[j]]` from `offsets_s[j]`, played in lock-step by `policy`
    (a uniformly random quality with probability `explore` per decision, so the data also holds the
    states a slightly different policy reaches); every decision is recorded with `policy_values`.
    `qoe` is what the sessions scored with the exploration; `policy_qoe` what `policy` alone scores on
    the same sessions: the first decision's value of the policy's own choice (nothing is played yet,
    and the continuation is the policy's), so it costs nothing more."""
    state = start_sessions(video, prof, traces, offsets_s, which)
    sessions = len(offsets_s)
    rungs = len(video.ladder)
    rows_x, rows_v = [], []
    agreed = 0
    own: np.ndarray | None = None
    while state.to_decision():
        obs = state.observation()
        values = policy_values(state, policy, model)
        choice = np.asarray(policy.decide_batch(obs), dtype=np.int64)
        agreed += int(np.sum(choice == np.argmax(values, axis=1)))
        if own is None:
            own = values[np.arange(sessions), choice]
        draws = rng.random(sessions)
        random_q = rng.integers(0, rungs, sessions)
        rows_x.append(batch_observation_features(obs))
        rows_v.append(values)
        state.step(np.where(draws < explore, random_q, choice))
    bitrates = np.asarray(video.ladder.bitrates_bps, dtype=np.float64)
    qoe = model.scores(bitrates[state.qualities], state.rebuffer_s, bitrates)
    steps = len(rows_x)
    return LockStepRollouts(features=np.concatenate(rows_x), values=np.concatenate(rows_v),
                            session=np.tile(np.arange(sessions), steps), qoe=qoe, agreed=agreed,
                            policy_qoe=own)
