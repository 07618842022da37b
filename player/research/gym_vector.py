"""The ABR environment vectorised over the batch engine: N sessions stepped at once with numpy.

`AbrVectorEnv` is a `gymnasium.vector.VectorEnv` whose sub-environments are the sessions of one
`player.research.sim.LockStep` (the state `run_batch` drives): one `step` downloads the next segment
of every session, so its cost is a few numpy calls whatever N is. Observations and rewards are those
of `AbrEnv` (the learned ABR's features, the QoE_lin term of the segment downloaded); with N = 1 a
fixed action sequence gives the single environment's trajectory (tested). All sessions play the same
video, so every episode ends at the same step and all sub-environments reset together.

`gymnasium.make_vec("abrkit/Abr-v0", num_envs=N)` builds it (the id's vector entry point).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space

from abr import features
from abr.qoe import qoe_model
from abr.types import BatchObservation
from netsim.link import LinkBatch
from netsim.trace import Trace
from player.research.gym_env import ENV_ID, env_inputs, env_spaces
from player.research.sim import LatencyLookup, LockStep, SimProfile, profile
from player.video import Video


class AbrVectorEnv(VectorEnv[np.ndarray, np.ndarray, np.ndarray]):
    """`num_envs` ABR sessions in lock-step (see the module docstring).

    Arguments are `AbrEnv`'s. `reset(seed=...)` draws each session's trace and (with `random_offset`)
    start offset from the environment's generator; `options={"trace_index": ..., "offset_s": ...}`
    fixes them (a number for all sessions or one per session). `autoreset_mode` is Gymnasium's:
    NEXT_STEP (the default: the step after the last segment resets every session and ignores the
    actions) or SAME_STEP (the last step returns the new episodes' observations and the final ones
    in `infos["final_obs"]`).
    """

    def __init__(self, num_envs: int = 1, video: Video | str | Path | None = None,
                 traces: Sequence[Trace] | str | Path | None = None, *, profile_name: str = "pensieve",
                 random_offset: bool = True, qoe: str = "lin", render_mode: str | None = None,
                 autoreset_mode: AutoresetMode | str = AutoresetMode.NEXT_STEP) -> None:
        if render_mode is not None:
            raise ValueError(f"{ENV_ID} has no render modes, got {render_mode!r}")
        if not isinstance(num_envs, (int, np.integer)) or num_envs < 1:
            raise ValueError(f"num_envs must be an integer >= 1, got {num_envs!r}")
        mode = AutoresetMode(autoreset_mode)
        if mode == AutoresetMode.DISABLED:
            raise ValueError("autoreset_mode must be NEXT_STEP or SAME_STEP: all sessions end together")
        self.metadata = {"render_modes": [], "autoreset_mode": mode}
        self.num_envs = int(num_envs)
        self.video, self.traces = env_inputs(video, traces)
        self.profile: SimProfile = profile(profile_name)
        cfg, seg_s = self.profile.session, self.video.ladder.segment_duration_s
        if self.video.audio is not None:
            raise ValueError(f"video {self.video.name!r} has audio: the lock-step engine plays video only "
                             "(use AbrEnv)")
        if cfg.startup_threshold_s > seg_s or cfg.rebuffer_resume_s > seg_s:
            raise ValueError(f"profile {profile_name!r} waits for more than one segment to (re)start playback, "
                             "which the lock-step engine does not model (use AbrEnv)")
        self.single_observation_space, self.single_action_space = env_spaces(self.video, self.profile)
        self.random_offset = random_offset
        self.qoe = qoe_model(qoe)
        self.observation_space = batch_space(self.single_observation_space, self.num_envs)
        self.action_space = batch_space(self.single_action_space, self.num_envs)
        self._links = LinkBatch(self.traces, payload_factor=self.profile.payload_factor)
        self._latency = LatencyLookup(self.traces, self.profile)
        self._durations_s = np.array([t.duration_s for t in self.traces])
        self._ladder_bps = np.asarray(self.video.ladder.bitrates_bps, dtype=np.float64)
        self._state: LockStep | None = None
        self._trace_index = np.zeros(self.num_envs, dtype=np.int64)
        self._needs_reset = False

    # -- gymnasium API ------------------------------------------------------------------------------------------

    def reset(self, *, seed: int | None = None,
              options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        return self._new_episodes(options or {}), self._reset_info()

    def step(self, actions: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        if self._state is None:
            raise RuntimeError("call reset() before step()")
        n = self.num_envs
        if self._needs_reset:  # NEXT_STEP: this step starts new episodes and ignores the actions
            obs = self._new_episodes({})
            return obs, np.zeros(n), np.zeros(n, dtype=bool), np.zeros(n, dtype=bool), self._reset_info()
        q = self._actions(actions)
        state = self._state
        i = state.segment_index
        state.step(q)
        reward = self._rewards(state, i)
        terminated = np.full(n, state.done)
        infos: dict[str, Any] = {"segment": np.full(n, i), "quality": q,
                                 "bitrate_bps": self._ladder_bps[q], "rebuffer_s": state.rebuffer_s[i].copy(),
                                 "buffer_s": state.buffer_after_s[i].copy()}
        obs = self._observe()
        if state.done:
            if self.metadata["autoreset_mode"] == AutoresetMode.SAME_STEP:
                infos = {"final_obs": obs, "final_info": infos, "_final_obs": terminated.copy(),
                         "_final_info": terminated.copy()}
                obs = self._new_episodes({})
                infos.update(self._reset_info())
            else:
                self._needs_reset = True
        return obs, reward, terminated, np.zeros(n, dtype=bool), infos

    def batch_observation(self) -> BatchObservation:
        """The sessions' `abr.types.BatchObservation`, so any vectorised abrkit algorithm (`decide_batch`)
        can act in the environment (a baseline, or a teacher)."""
        if self._state is None:
            raise RuntimeError("call reset() before batch_observation()")
        return self._state.observation()

    # -- internals ----------------------------------------------------------------------------------------------

    def _per_session(self, value: Any, name: str, dtype: type) -> np.ndarray:
        array = np.asarray(value, dtype=dtype)
        if array.ndim == 0:
            return np.full(self.num_envs, array, dtype=dtype)
        if array.shape != (self.num_envs,):
            raise ValueError(f"{name} must be one number or {self.num_envs} (one per session), got shape {array.shape}")
        return array

    def _new_episodes(self, options: dict[str, Any]) -> np.ndarray:
        rng, n = self.np_random, self.num_envs
        if "trace_index" in options:
            index = self._per_session(options["trace_index"], "trace_index", np.int64)
            if index.min() < 0 or index.max() >= len(self.traces):
                raise ValueError(f"trace_index outside 0..{len(self.traces) - 1}")
        else:
            index = rng.integers(len(self.traces), size=n)
        if "offset_s" in options:
            offsets = self._per_session(options["offset_s"], "offset_s", np.float64)
            if not np.all(np.isfinite(offsets)) or offsets.min() < 0:
                raise ValueError("offset_s must be finite and >= 0")
        elif self.random_offset:
            offsets = rng.uniform(0.0, self._durations_s[index])
        else:
            offsets = np.zeros(n)
        self._trace_index = index
        self._state = LockStep(self.video, self.profile, self._links, self._latency, offsets, which=index)
        self._state.to_decision()  # Pensieve's profile fetches segment 0 at a fixed quality
        self._needs_reset = False
        return self._observe()

    def _reset_info(self) -> dict[str, Any]:
        assert self._state is not None
        return {"trace_index": self._trace_index.copy(), "offset_s": self._state.start_offsets_s.copy()}

    def _actions(self, actions: Any) -> np.ndarray:
        q = np.asarray(actions)
        if q.shape != (self.num_envs,) or not np.issubdtype(q.dtype, np.integer):
            raise ValueError(f"actions must be {self.num_envs} integer qualities, got {actions!r}")
        if q.min() < 0 or q.max() >= self.single_action_space.n:
            raise ValueError(f"actions must be qualities in 0..{self.single_action_space.n - 1}, got {actions!r}")
        return q.astype(np.int64)

    def _rewards(self, state: LockStep, i: int) -> np.ndarray:
        """The QoE term of segment `i` in every session (`QoeModel.segment_values` of it and the one before)."""
        if i < self.qoe.first_counted_segment:
            return np.zeros(self.num_envs)
        lo = max(i - 1, 0)
        bitrates = self._ladder_bps[state.qualities[lo:i + 1]]
        return self.qoe.segment_values(bitrates, state.rebuffer_s[lo:i + 1], self._ladder_bps)[-1]

    def _observe(self) -> np.ndarray:
        assert self._state is not None
        return features.batch_observation_features(self._state.observation()).astype(np.float32)
