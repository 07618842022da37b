"""The vectorised Gymnasium environment: the single environment's trajectories, N at once."""

from __future__ import annotations

import numpy as np
import pytest

gymnasium = pytest.importorskip("gymnasium", reason="gymnasium is the optional 'rl' extra")

from abr import features  # noqa: E402
from abr.registry import make  # noqa: E402
from netsim import synthetic  # noqa: E402
from player.bundled import ENVIVIO_DIR  # noqa: E402
from player.research.gym_env import ENV_ID, AbrEnv  # noqa: E402
from player.research.gym_vector import AbrVectorEnv  # noqa: E402
from player.research.sim import PROFILES, run_batch  # noqa: E402
from player.video import load_video  # noqa: E402


@pytest.mark.parametrize("profile_name", ["pensieve", "default", "sabre"])
def test_one_session_follows_the_single_env_trajectory(profile_name: str) -> None:
    single, vector = AbrEnv(profile_name=profile_name), AbrVectorEnv(1, profile_name=profile_name)
    actions = np.random.default_rng(7).integers(6, size=60)
    for options in ({"trace_index": 2, "offset_s": 3.25}, {"trace_index": 0, "offset_s": 0.0}):
        obs, _ = single.reset(options=options)
        vobs, info = vector.reset(options=options)
        assert info["trace_index"].tolist() == [options["trace_index"]]
        np.testing.assert_allclose(vobs[0], obs, rtol=1e-6, atol=1e-6)
        steps = 0
        for action in actions:
            obs, reward, terminated, _, _ = single.step(np.int64(action))
            vobs, vreward, vterminated, vtruncated, vinfo = vector.step(np.array([action]))
            steps += 1
            assert vobs.dtype == np.float32 and vobs.shape == (1, single.observation_space.shape[0])
            np.testing.assert_allclose(vobs[0], obs, rtol=1e-6, atol=1e-6)
            assert vreward[0] == pytest.approx(reward, abs=1e-9)
            assert (bool(vterminated[0]), bool(vtruncated[0])) == (terminated, False)
            assert vinfo["quality"].tolist() == [action]
            if terminated:
                break
        assert terminated and steps == single.video.segment_count - (PROFILES[profile_name].session.initial_quality
                                                                     is not None)


def test_returns_are_the_batch_engine_session_qoe_for_many_sessions() -> None:
    env = AbrVectorEnv(8, random_offset=True)
    obs, info = env.reset(seed=3)
    agent = make("learned")
    traces = [env.traces[i] for i in info["trace_index"]]
    total = np.zeros(8)
    done = False
    while not done:
        obs, reward, terminated, _, _ = env.step(agent.decide_batch(env.batch_observation()))
        total += reward
        done = bool(terminated.all())
    expected = run_batch("learned", env.video, traces, PROFILES["pensieve"], offsets_s=info["offset_s"].tolist())
    np.testing.assert_allclose(total, [r.qoe_lin for r in expected], atol=1e-9)


def test_reset_is_seeded_and_options_fix_traces_and_offsets() -> None:
    env = AbrVectorEnv(5)
    first = env.reset(seed=11)
    other = env.reset(seed=12)
    again = env.reset(seed=11)
    np.testing.assert_array_equal(first[0], again[0])
    np.testing.assert_array_equal(first[1]["offset_s"], again[1]["offset_s"])
    assert not np.array_equal(first[1]["offset_s"], other[1]["offset_s"])
    _, info = env.reset(options={"trace_index": [0, 1, 2, 3, 0], "offset_s": 4.0})
    assert info["trace_index"].tolist() == [0, 1, 2, 3, 0] and info["offset_s"].tolist() == [4.0] * 5
    with pytest.raises(ValueError, match="trace_index outside"):
        env.reset(options={"trace_index": 9})
    with pytest.raises(ValueError, match="one per session"):
        env.reset(options={"offset_s": [1.0, 2.0]})
    with pytest.raises(ValueError, match="offset_s must be finite"):
        env.reset(options={"offset_s": -1.0})


@pytest.mark.parametrize("mode", ["NextStep", "SameStep"])
def test_autoreset_modes_start_new_episodes(mode: str) -> None:
    video = load_video(ENVIVIO_DIR).truncated(3)
    env = AbrVectorEnv(2, video=video, traces=[synthetic.constant(2e6, duration_s=50.0)], autoreset_mode=mode)
    env.reset(seed=0)
    env.step(np.array([1, 2]))
    obs, reward, terminated, _, info = env.step(np.array([0, 5]))
    assert terminated.tolist() == [True, True] and reward.shape == (2,)
    if mode == "SameStep":
        assert info["final_obs"].shape == obs.shape and info["_final_obs"].all()
        assert obs[0, features.schema(6).names.index("remaining_frac")] > 0  # a new episode's first decision
    else:
        obs, reward, terminated, _, _ = env.step(np.array([0, 0]))  # ignored: this step resets
        assert reward.tolist() == [0.0, 0.0] and not terminated.any()
    obs, reward, terminated, _, _ = env.step(np.array([0, 0]))
    assert not terminated.any()


def test_bad_actions_and_settings_are_refused() -> None:
    env = AbrVectorEnv(3)
    with pytest.raises(RuntimeError, match="reset"):
        env.step(np.zeros(3, dtype=np.int64))
    env.reset(seed=0)
    with pytest.raises(ValueError, match="3 integer qualities"):
        env.step(np.zeros(2, dtype=np.int64))
    with pytest.raises(ValueError, match="qualities in 0..5"):
        env.step(np.array([0, 6, 1]))
    with pytest.raises(ValueError, match="num_envs"):
        AbrVectorEnv(0)
    with pytest.raises(ValueError, match="NEXT_STEP or SAME_STEP"):
        AbrVectorEnv(2, autoreset_mode="Disabled")


def test_make_vec_builds_the_vectorised_env() -> None:
    env = gymnasium.make_vec(ENV_ID, num_envs=4)
    assert isinstance(env, AbrVectorEnv) and env.num_envs == 4
    assert env.action_space == gymnasium.spaces.MultiDiscrete([6] * 4)
    obs, _ = env.reset(seed=0)
    assert env.observation_space.contains(obs)
