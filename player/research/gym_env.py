"""A Gymnasium environment over the simulator: one episode is one session on one trace.

Observations are the learned ABR's features (`abr.features`, a Box), actions the ladder's qualities
(Discrete), and the reward of a step the QoE_lin term of the segment it downloaded (segment 0 counts
0, as in the QoE definition), so an episode's return is the session's QoE. The episode drives a
`PlaybackSession` with the simulator's own driver (`player.research.sim.SessionDriver`, which `run_session`
uses), so a policy sees exactly the sessions `abrkit sim` runs. Importing this module registers `abrkit/Abr-v0`
(`gymnasium.make_vec` builds its vectorised twin over the batch engine, `player.research.gym_vector`);
Gymnasium is the optional `rl` extra, and nothing else in abrkit imports this module.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import gymnasium
import numpy as np
from gymnasium import spaces

from abr import features
from abr.qoe import qoe_model
from abr.types import Decision, Observation
from netsim.sources import open_traces
from netsim.trace import Trace
from player.bundled import ENVIVIO_DIR, TRACES_DIR
from player.research.sim import SessionDriver, SimProfile, profile
from player.session import PlaybackSession
from player.video import Video, load_video

ENV_ID = "abrkit/Abr-v0"


def env_inputs(video: Video | str | Path | None,
               traces: Sequence[Trace] | str | Path | None) -> tuple[Video, list[Trace]]:
    """The video and traces an environment plays: the given ones, or the bundled Envivio video and
    Norway traces."""
    loaded = video if isinstance(video, Video) else load_video(video if video is not None else ENVIVIO_DIR)
    if traces is None or isinstance(traces, (str, Path)):
        trace_list = open_traces([str(traces if traces is not None else TRACES_DIR)])
    else:
        trace_list = list(traces)
    if not trace_list:
        raise ValueError("the environment needs at least one trace")
    return loaded, trace_list


def env_spaces(video: Video, prof: SimProfile) -> tuple[spaces.Box, spaces.Discrete]:
    """(observation, action) spaces of one session of `video`: the features and the ladder's qualities."""
    fixed = 1 if prof.session.initial_quality is not None else 0
    if video.segment_count <= fixed:
        raise ValueError(f"video {video.name!r} has {video.segment_count} segment(s) and profile "
                         f"{prof.name!r} fixes the first one's quality: no decision is left to the agent")
    low, high = features.bounds(len(video.ladder))
    return (spaces.Box(low=low.astype(np.float32), high=high.astype(np.float32), dtype=np.float32),
            spaces.Discrete(len(video.ladder)))


class _AwaitingAction(Exception):
    """Raised by `_AgentSlot.decide` when the session needs the agent's next quality."""


class _AgentSlot:
    """The ABR the session calls: it answers with the quality the agent gave `step`, once.

    With no quality pending it raises `_AwaitingAction`; `PlaybackSession.next_action` asks the ABR
    before changing any state, so the same call made again after `step` continues exactly there.
    """

    name = "agent"

    def __init__(self) -> None:
        self.pending: int | None = None

    def decide(self, obs: Observation) -> Decision:
        if self.pending is None:
            raise _AwaitingAction
        quality, self.pending = self.pending, None
        return Decision(quality=quality, reason="agent")


class AbrEnv(gymnasium.Env[np.ndarray, np.int64]):
    """ABR as a Gymnasium environment.

    `video` and `traces` default to the bundled Envivio video and Norway traces; `profile` names a
    simulation profile (`pensieve` by default). `reset(seed=...)` draws a trace from the set and, with
    `random_offset`, a start time within it; `options={"trace_index": i, "offset_s": s}` picks them.
    `info["observation"]` is the session's `abr.types.Observation`, so any abrkit algorithm can act in
    the environment too (e.g. as a baseline or a behaviour-cloning teacher).
    """

    metadata: dict[str, Any] = {"render_modes": []}

    def __init__(self, video: Video | str | Path | None = None, traces: Sequence[Trace] | str | Path | None = None, *,
                 profile_name: str = "pensieve", random_offset: bool = True, qoe: str = "lin",
                 render_mode: str | None = None) -> None:
        if render_mode is not None:
            raise ValueError(f"{ENV_ID} has no render modes, got {render_mode!r}")
        self.video, self.traces = env_inputs(video, traces)
        self.profile: SimProfile = profile(profile_name)
        self.observation_space, self.action_space = env_spaces(self.video, self.profile)
        self.random_offset = random_offset
        self.qoe = qoe_model(qoe)
        self._slot = _AgentSlot()
        self._session: PlaybackSession | None = None
        self._trace: Trace = self.traces[0]
        self._driver: SessionDriver | None = None
        self._offset_s = 0.0

    # -- gymnasium API ------------------------------------------------------------------------------------------

    def reset(self, *, seed: int | None = None,
              options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        options = options or {}
        if "trace_index" in options:
            index = int(options["trace_index"])
        else:
            index = int(self.np_random.integers(len(self.traces)))
        if not 0 <= index < len(self.traces):
            raise ValueError(f"trace_index {index} outside 0..{len(self.traces) - 1}")
        self._trace = self.traces[index]
        if "offset_s" in options:
            self._offset_s = float(options["offset_s"])
        else:
            self._offset_s = float(self.np_random.uniform(0.0, self._trace.duration_s)) if self.random_offset else 0.0
        self._slot.pending = None
        self._session = PlaybackSession(self._slot, self.video, self.profile.session)
        self._driver = SessionDriver(self._session, self.video, self._trace, self.profile, trace_time_s=self._offset_s)
        self._drive()  # to the first decision (Pensieve's profile fetches segment 0 at a fixed quality)
        return self._observe(), {"trace": self._trace.name, "offset_s": self._offset_s,
                                 "observation": self._session.observation()}

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        session = self._session
        if session is None:
            raise RuntimeError("call reset() before step()")
        if session.finished:
            raise RuntimeError("the episode is over; call reset()")
        if not self.action_space.contains(action):
            raise ValueError(f"action {action!r} is not a quality in 0..{self.action_space.n - 1}")
        self._slot.pending = int(action)
        done_before = len(session.records)
        terminated = self._drive()
        new = session.records[done_before:]
        reward = float(sum(self._segment_qoe(r.segment_index) for r in new))
        last = new[-1]
        info = {"segment": last.segment_index, "quality": last.quality, "bitrate_bps": last.bitrate_bps,
                "rebuffer_s": last.rebuffer_s, "buffer_s": last.buffer_after_s, "trace": self._trace.name,
                "observation": session.observation()}
        return self._observe(), reward, terminated, False, info

    # -- driving the session ------------------------------------------------------------------------------------

    def _drive(self) -> bool:
        """Run the session until it needs the agent's quality (False) or every segment is in (True)."""
        assert self._driver is not None
        try:
            self._driver.drive()
        except _AwaitingAction:
            return False
        return True

    def _segment_qoe(self, index: int) -> float:
        """The QoE term of segment `index`: `abr.qoe.QoeModel.segment_values` of it and the one before."""
        if index < self.qoe.first_counted_segment:
            return 0.0
        assert self._session is not None
        pair = self._session.records[max(index - 1, 0):index + 1]
        values = self.qoe.segment_values([r.bitrate_bps for r in pair], [r.rebuffer_s for r in pair],
                                         self.video.ladder.bitrates_bps)
        return float(values[-1])

    def _observe(self) -> np.ndarray:
        assert self._session is not None
        row = features.observation_features(self._session.observation())[0]
        return row.astype(np.float32)


def _register() -> None:
    if ENV_ID not in gymnasium.registry:
        gymnasium.register(id=ENV_ID, entry_point="player.research.gym_env:AbrEnv",
                           vector_entry_point="player.research.gym_vector:AbrVectorEnv")


_register()
